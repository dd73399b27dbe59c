/// Why bytes from the bus are not a D-Bus message (or a value cannot be sent as one).
public struct DBusWireError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case truncated
        case invalidSignature(String)
        case invalidValue(String)
        case tooLarge(Int)
        case tooDeep
        case unsupportedVersion(UInt8)
        case invalidHeader(String)
    }
    private let code: Code

    static let truncated = DBusWireError(code: .truncated)
    static let tooDeep = DBusWireError(code: .tooDeep)
    static func invalidSignature(_ signature: String) -> DBusWireError { DBusWireError(code: .invalidSignature(signature)) }
    static func invalidValue(_ what: String) -> DBusWireError { DBusWireError(code: .invalidValue(what)) }
    static func tooLarge(_ length: Int) -> DBusWireError { DBusWireError(code: .tooLarge(length)) }
    static func unsupportedVersion(_ version: UInt8) -> DBusWireError { DBusWireError(code: .unsupportedVersion(version)) }
    static func invalidHeader(_ what: String) -> DBusWireError { DBusWireError(code: .invalidHeader(what)) }

    public var description: String {
        switch code {
        case .truncated: "message ends before its values do"
        case .invalidSignature(let signature): "invalid signature \"\(signature)\""
        case .invalidValue(let what): "invalid value: \(what)"
        case .tooLarge(let length): "message of \(length) bytes is over the limit"
        case .tooDeep: "values nested deeper than 64 containers"
        case .unsupportedVersion(let version): "protocol version \(version) (only 1 is spoken)"
        case .invalidHeader(let what): "invalid header: \(what)"
        }
    }
}

/// Writes values in the D-Bus wire format, little-endian, aligned from the start of what it writes
/// (a message body starts on an 8-byte boundary, so body offsets align as message offsets do).
struct DBusWriter {
    private(set) var bytes: [UInt8] = []

    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    mutating func write<T: FixedWidthInteger>(_ value: T) {
        pad(to: MemoryLayout<T>.size)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func write(_ value: DBusValue) {
        switch value {
        case .byte(let byte): bytes.append(byte)
        case .boolean(let flag): write(UInt32(flag ? 1 : 0))
        case .int16(let number): write(number)
        case .uint16(let number): write(number)
        case .int32(let number): write(number)
        case .uint32(let number), .unixFD(let number): write(number)
        case .int64(let number): write(number)
        case .uint64(let number): write(number)
        case .double(let number): write(number.bitPattern)
        case .string(let text), .objectPath(let text):
            let utf8 = Array(text.utf8)
            write(UInt32(utf8.count))
            bytes += utf8
            bytes.append(0)
        case .signature(let text):
            let utf8 = Array(text.utf8)
            bytes.append(UInt8(truncatingIfNeeded: utf8.count))
            bytes += utf8
            bytes.append(0)
        case .variant(let inner):
            write(.signature(inner.type.description))
            write(inner)
        case .array(let element, let elements):
            write(UInt32(0))
            let lengthAt = bytes.count - 4
            pad(to: element.alignment)
            let start = bytes.count
            for element in elements { write(element) }
            let length = UInt32(bytes.count - start)
            withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(lengthAt..<lengthAt + 4, with: $0) }
        case .dictEntry(let key, let value):
            pad(to: 8)
            write(key)
            write(value)
        case .structure(let members):
            pad(to: 8)
            for member in members { write(member) }
        }
    }
}

/// Reads values in the D-Bus wire format from a whole message's bytes, either byte order.
/// Checks what the specification requires: zero padding, booleans 0 or 1, valid UTF-8 without
/// NUL, valid object paths and signatures, array lengths within bounds and the limits on
/// size and nesting.
struct DBusReader {
    let bytes: [UInt8]
    let bigEndian: Bool
    var offset: Int
    /// Where reading must stop (the end of the body or header being read).
    var end: Int
    private var depth = 0

    static let maximumArrayLength = 64 * 1024 * 1024

    init(bytes: [UInt8], bigEndian: Bool, offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.bigEndian = bigEndian
        self.offset = offset
        self.end = end ?? bytes.count
    }

    mutating func skipPadding(to alignment: Int) throws(DBusWireError) {
        let aligned = (offset + alignment - 1) / alignment * alignment
        guard aligned <= end else { throw .truncated }
        for index in offset..<aligned where bytes[index] != 0 { throw .invalidValue("non-zero padding") }
        offset = aligned
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(DBusWireError) -> T {
        let size = MemoryLayout<T>.size
        try skipPadding(to: size)
        guard offset + size <= end else { throw .truncated }
        var value = T.zero
        for index in 0..<size {
            let byte = T(bytes[offset + (bigEndian ? size - 1 - index : index)])
            value |= byte << (8 * index)
        }
        offset += size
        return value
    }

    private mutating func readText(length: Int) throws(DBusWireError) -> String {
        guard length >= 0, offset + length < end else { throw .truncated }
        let utf8 = bytes[offset..<offset + length]
        guard bytes[offset + length] == 0 else { throw .invalidValue("string without its NUL") }
        guard !utf8.contains(0) else { throw .invalidValue("NUL inside a string") }
        guard let text = String(validating: utf8, as: UTF8.self) else { throw .invalidValue("string that is not UTF-8") }
        offset += length + 1
        return text
    }

    mutating func read(_ type: DBusType) throws(DBusWireError) -> DBusValue {
        switch type {
        case .byte:
            guard offset < end else { throw .truncated }
            defer { offset += 1 }
            return .byte(bytes[offset])
        case .boolean:
            switch try read(UInt32.self) {
            case 0: return .boolean(false)
            case 1: return .boolean(true)
            default: throw .invalidValue("boolean other than 0 or 1")
            }
        case .int16: return .int16(try read(Int16.self))
        case .uint16: return .uint16(try read(UInt16.self))
        case .int32: return .int32(try read(Int32.self))
        case .uint32: return .uint32(try read(UInt32.self))
        case .unixFD: return .unixFD(try read(UInt32.self))
        case .int64: return .int64(try read(Int64.self))
        case .uint64: return .uint64(try read(UInt64.self))
        case .double: return .double(Double(bitPattern: try read(UInt64.self)))
        case .string:
            return .string(try readText(length: Int(try read(UInt32.self))))
        case .objectPath:
            let path = try readText(length: Int(try read(UInt32.self)))
            guard DBusObjectPath.isValid(path) else { throw .invalidValue("object path \"\(path)\"") }
            return .objectPath(path)
        case .signature:
            return .signature(try readSignature())
        case .variant:
            let signature = try readSignature()
            let types = try DBusType.parse(signature)
            guard types.count == 1 else { throw .invalidSignature(signature) }
            return .variant(try nested { (reader) throws(DBusWireError) in try reader.read(types[0]) })
        case .array(let element):
            let length = Int(try read(UInt32.self))
            guard length <= Self.maximumArrayLength else { throw .tooLarge(length) }
            try skipPadding(to: element.alignment)
            let stop = offset + length
            guard stop <= end else { throw .truncated }
            let elements = try nested { (reader) throws(DBusWireError) -> [DBusValue] in
                var elements: [DBusValue] = []
                while reader.offset < stop { elements.append(try reader.read(element)) }
                return elements
            }
            guard offset == stop else { throw .invalidValue("array elements overrun its length") }
            return .array(element: element, elements)
        case .dictEntry(let key, let value):
            try skipPadding(to: 8)
            return try nested { (reader) throws(DBusWireError) in .dictEntry(try reader.read(key), try reader.read(value)) }
        case .structure(let members):
            try skipPadding(to: 8)
            return try nested { (reader) throws(DBusWireError) in
                var values: [DBusValue] = []
                for member in members { values.append(try reader.read(member)) }
                return .structure(values)
            }
        }
    }

    private mutating func readSignature() throws(DBusWireError) -> String {
        guard offset < end else { throw .truncated }
        let length = Int(bytes[offset])
        offset += 1
        let text = try readText(length: length)
        _ = try DBusType.parse(text)
        return text
    }

    /// Reads inside one more container, refusing values nested deeper than 64.
    private mutating func nested<R>(_ body: (inout DBusReader) throws(DBusWireError) -> R) throws(DBusWireError) -> R {
        guard depth < 64 else { throw .tooDeep }
        depth += 1
        defer { depth -= 1 }
        return try body(&self)
    }
}

/// Object path syntax: `/`, or `/` followed by `/`-separated non-empty runs of `[A-Za-z0-9_]`.
public enum DBusObjectPath {
    public static func isValid(_ path: String) -> Bool {
        let bytes = Array(path.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return false }
        if bytes.count == 1 { return true }
        guard bytes.last != UInt8(ascii: "/") else { return false }
        var previousSlash = false
        for byte in bytes {
            if byte == UInt8(ascii: "/") {
                if previousSlash { return false }
                previousSlash = true
            } else {
                previousSlash = false
                let allowed = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
                if !allowed { return false }
            }
        }
        return true
    }
}
