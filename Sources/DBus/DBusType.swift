/// A D-Bus type, as a signature spells it (`s`, `a{sv}`, `(ii)`).
public indirect enum DBusType: Hashable, Sendable, CustomStringConvertible {
    case byte, boolean, int16, uint16, int32, uint32, int64, uint64, double
    case string, objectPath, signature, unixFD, variant
    case array(DBusType)
    /// Only as an array's element: `a{KV}` is a dictionary.
    case dictEntry(key: DBusType, value: DBusType)
    case structure([DBusType])

    /// The signature of this one type.
    public var description: String {
        switch self {
        case .byte: "y"
        case .boolean: "b"
        case .int16: "n"
        case .uint16: "q"
        case .int32: "i"
        case .uint32: "u"
        case .int64: "x"
        case .uint64: "t"
        case .double: "d"
        case .string: "s"
        case .objectPath: "o"
        case .signature: "g"
        case .unixFD: "h"
        case .variant: "v"
        case .array(let element): "a" + element.description
        case .dictEntry(let key, let value): "{\(key)\(value)}"
        case .structure(let members): "(" + members.map(\.description).joined() + ")"
        }
    }

    /// The boundary a value of this type starts on in the wire format.
    var alignment: Int {
        switch self {
        case .byte, .signature, .variant: 1
        case .int16, .uint16: 2
        case .boolean, .int32, .uint32, .string, .objectPath, .unixFD, .array: 4
        case .int64, .uint64, .double, .dictEntry, .structure: 8
        }
    }

    var isBasic: Bool {
        switch self {
        case .variant, .array, .dictEntry, .structure: false
        default: true
        }
    }

    /// The complete types a signature lists, in order (a message body's signature may list
    /// several). Throws on anything the specification does not allow.
    public static func parse(_ signature: String) throws(DBusWireError) -> [DBusType] {
        let bytes = Array(signature.utf8)
        guard bytes.count <= 255 else { throw .invalidSignature(signature) }
        var parser = SignatureParser(bytes: bytes)
        var types: [DBusType] = []
        while !parser.atEnd {
            guard let type = parser.next(arrays: 0, structs: 0) else { throw .invalidSignature(signature) }
            types.append(type)
        }
        return types
    }
}

/// Reads one complete type at a time from a signature's bytes.
private struct SignatureParser {
    let bytes: [UInt8]
    var index = 0

    var atEnd: Bool { index == bytes.count }

    /// The next complete type, or nil when the signature is malformed here. `arrays` and
    /// `structs` count the enclosing containers (at most 32 of each).
    mutating func next(arrays: Int, structs: Int) -> DBusType? {
        guard index < bytes.count else { return nil }
        let code = bytes[index]
        index += 1
        switch code {
        case UInt8(ascii: "y"): return .byte
        case UInt8(ascii: "b"): return .boolean
        case UInt8(ascii: "n"): return .int16
        case UInt8(ascii: "q"): return .uint16
        case UInt8(ascii: "i"): return .int32
        case UInt8(ascii: "u"): return .uint32
        case UInt8(ascii: "x"): return .int64
        case UInt8(ascii: "t"): return .uint64
        case UInt8(ascii: "d"): return .double
        case UInt8(ascii: "s"): return .string
        case UInt8(ascii: "o"): return .objectPath
        case UInt8(ascii: "g"): return .signature
        case UInt8(ascii: "h"): return .unixFD
        case UInt8(ascii: "v"): return .variant
        case UInt8(ascii: "a"):
            guard arrays < 32 else { return nil }
            if index < bytes.count, bytes[index] == UInt8(ascii: "{") {
                index += 1
                guard let key = next(arrays: arrays + 1, structs: structs), key.isBasic,
                    let value = next(arrays: arrays + 1, structs: structs),
                    index < bytes.count, bytes[index] == UInt8(ascii: "}")
                else { return nil }
                index += 1
                return .array(.dictEntry(key: key, value: value))
            }
            return next(arrays: arrays + 1, structs: structs).map { .array($0) }
        case UInt8(ascii: "("):
            guard structs < 32 else { return nil }
            var members: [DBusType] = []
            while index < bytes.count, bytes[index] != UInt8(ascii: ")") {
                guard let member = next(arrays: arrays, structs: structs + 1) else { return nil }
                members.append(member)
            }
            guard index < bytes.count, !members.isEmpty else { return nil }
            index += 1
            return .structure(members)
        default:
            return nil
        }
    }
}
