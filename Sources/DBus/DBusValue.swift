/// A D-Bus value with its type: what a message body holds.
public indirect enum DBusValue: Hashable, Sendable {
    case byte(UInt8)
    case boolean(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(String)
    case signature(String)
    /// An index into the message's file descriptors (never sent by MeshBus; read for completeness).
    case unixFD(UInt32)
    case variant(DBusValue)
    /// The element type is kept so that an empty array still has a signature.
    case array(element: DBusType, [DBusValue])
    /// One entry of a dictionary (an array of them).
    case dictEntry(DBusValue, DBusValue)
    case structure([DBusValue])

    public var type: DBusType {
        switch self {
        case .byte: .byte
        case .boolean: .boolean
        case .int16: .int16
        case .uint16: .uint16
        case .int32: .int32
        case .uint32: .uint32
        case .int64: .int64
        case .uint64: .uint64
        case .double: .double
        case .string: .string
        case .objectPath: .objectPath
        case .signature: .signature
        case .unixFD: .unixFD
        case .variant: .variant
        case .array(let element, _): .array(element)
        case .dictEntry(let key, let value): .dictEntry(key: key.type, value: value.type)
        case .structure(let members): .structure(members.map(\.type))
        }
    }

    /// `ay`.
    public static func bytes(_ bytes: some Sequence<UInt8>) -> DBusValue {
        .array(element: .byte, bytes.map { .byte($0) })
    }

    /// `a{sv}`, the options and properties dictionary of most D-Bus APIs.
    public static func properties(_ entries: KeyValuePairs<String, DBusValue>) -> DBusValue {
        .array(element: .dictEntry(key: .string, value: .variant), entries.map { .dictEntry(.string($0.key), .variant($0.value)) })
    }

    /// `as`.
    public static func strings(_ strings: [String]) -> DBusValue {
        .array(element: .string, strings.map { .string($0) })
    }
}

extension DBusValue {
    /// A string, object path or signature's text.
    public var string: String? {
        switch self {
        case .string(let text), .objectPath(let text), .signature(let text): text
        case .variant(let inner): inner.string
        default: nil
        }
    }

    public var bool: Bool? {
        switch self {
        case .boolean(let value): value
        case .variant(let inner): inner.bool
        default: nil
        }
    }

    /// Any unsigned or non-negative integer.
    public var uint32: UInt32? {
        switch self {
        case .byte(let value): UInt32(value)
        case .uint16(let value): UInt32(value)
        case .uint32(let value): value
        case .int16(let value): UInt32(exactly: value)
        case .int32(let value): UInt32(exactly: value)
        case .variant(let inner): inner.uint32
        default: nil
        }
    }

    public var int: Int? {
        switch self {
        case .byte(let value): Int(value)
        case .int16(let value): Int(value)
        case .uint16(let value): Int(value)
        case .int32(let value): Int(value)
        case .uint32(let value): Int(value)
        case .int64(let value): Int(value)
        case .uint64(let value): Int(exactly: value)
        case .variant(let inner): inner.int
        default: nil
        }
    }

    /// The bytes of an `ay`.
    public var bytes: [UInt8]? {
        switch self {
        case .array(.byte, let elements): elements.compactMap { if case .byte(let byte) = $0 { byte } else { nil } }
        case .variant(let inner): inner.bytes
        default: nil
        }
    }

    /// The elements of any array.
    public var elements: [DBusValue]? {
        switch self {
        case .array(_, let elements): elements
        case .variant(let inner): inner.elements
        default: nil
        }
    }

    /// A dictionary with string (or object path) keys, values unwrapped from their variants:
    /// `a{sv}` properties, `a{oa{sa{sv}}}` managed objects one level at a time.
    public var dictionary: [String: DBusValue]? {
        guard let elements else { return nil }
        var result: [String: DBusValue] = [:]
        for element in elements {
            guard case .dictEntry(let key, let value) = element, let name = key.string else { return nil }
            if case .variant(let inner) = value { result[name] = inner } else { result[name] = value }
        }
        return result
    }
}
