/// One D-Bus message: a method call, its reply or error, or a signal.
///
/// ```
/// 0      1      2      3      4            8            12           16
/// +------+------+------+------+------------+------------+------------+-- - - -+-- - - -+
/// |endian| type |flags | ver 1| body length|   serial   | fields len | fields | body   |
/// +------+------+------+------+------------+------------+------------+-- - - -+-- - - -+
///  'l'/'B'                                               a(yv), padded to 8
/// ```
public struct DBusMessage: Sendable, Hashable {
    public enum Kind: UInt8, Sendable {
        case methodCall = 1
        case methodReturn = 2
        case error = 3
        case signal = 4
    }

    public var kind: Kind
    /// The sender's number for this message; the connection assigns it when sending.
    public var serial: UInt32 = 0
    /// The sender wants no reply (flag 0x1).
    public var noReplyExpected = false
    public var path: String?
    public var interface: String?
    public var member: String?
    public var errorName: String?
    public var replySerial: UInt32?
    public var destination: String?
    /// Filled in by the bus: the sender's unique name.
    public var sender: String?
    public var body: [DBusValue] = []

    public init(kind: Kind, path: String? = nil, interface: String? = nil, member: String? = nil, destination: String? = nil, body: [DBusValue] = []) {
        self.kind = kind
        self.path = path
        self.interface = interface
        self.member = member
        self.destination = destination
        self.body = body
    }

    public static func methodCall(destination: String?, path: String, interface: String?, member: String, body: [DBusValue] = []) -> DBusMessage {
        DBusMessage(kind: .methodCall, path: path, interface: interface, member: member, destination: destination, body: body)
    }

    /// The successful reply to `call`.
    public static func methodReturn(to call: DBusMessage, body: [DBusValue] = []) -> DBusMessage {
        var reply = DBusMessage(kind: .methodReturn, destination: call.sender, body: body)
        reply.replySerial = call.serial
        return reply
    }

    /// The error reply to `call`.
    public static func error(to call: DBusMessage, name: String, message: String) -> DBusMessage {
        var reply = DBusMessage(kind: .error, destination: call.sender, body: [.string(message)])
        reply.errorName = name
        reply.replySerial = call.serial
        return reply
    }

    /// The body's signature.
    public var signature: String { body.map(\.type.description).joined() }

    /// The largest message taken from the bus (the specification allows 128 MiB; nothing
    /// BlueZ sends comes near this).
    public static let maximumLength = 16 * 1024 * 1024

    // MARK: Encoding

    private enum Field: UInt8 {
        case path = 1, interface, member, errorName, replySerial, destination, sender, signature
    }

    /// The wire bytes, little-endian, with this serial.
    public func encoded() -> [UInt8] {
        var fields: [DBusValue] = []
        func add(_ field: Field, _ value: DBusValue?) {
            if let value { fields.append(.structure([.byte(field.rawValue), .variant(value)])) }
        }
        add(.path, path.map { .objectPath($0) })
        add(.interface, interface.map { .string($0) })
        add(.member, member.map { .string($0) })
        add(.errorName, errorName.map { .string($0) })
        add(.replySerial, replySerial.map { .uint32($0) })
        add(.destination, destination.map { .string($0) })
        add(.sender, sender.map { .string($0) })
        if !body.isEmpty { add(.signature, .signature(signature)) }

        var bodyWriter = DBusWriter()
        for value in body { bodyWriter.write(value) }

        var writer = DBusWriter()
        writer.write(UInt8(ascii: "l"))
        writer.write(kind.rawValue)
        writer.write(UInt8(noReplyExpected ? 0x1 : 0))
        writer.write(UInt8(1))
        writer.write(UInt32(bodyWriter.bytes.count))
        writer.write(serial)
        writer.write(.array(element: .structure([.byte, .variant]), fields))
        writer.pad(to: 8)
        return writer.bytes + bodyWriter.bytes
    }

    // MARK: Decoding

    /// The whole length of the message whose first bytes are `prefix`, once 16 are there
    /// (nil before); throws when that length is over ``maximumLength`` or the prefix is no
    /// D-Bus header.
    public static func length(ofMessageStartingWith prefix: some Collection<UInt8>) throws(DBusWireError) -> Int? {
        guard prefix.count >= 16 else { return nil }
        let head = Array(prefix.prefix(16))
        let bigEndian: Bool
        switch head[0] {
        case UInt8(ascii: "l"): bigEndian = false
        case UInt8(ascii: "B"): bigEndian = true
        default: throw .invalidHeader("byte order mark \(head[0])")
        }
        guard head[3] == 1 else { throw .unsupportedVersion(head[3]) }
        var reader = DBusReader(bytes: head, bigEndian: bigEndian, offset: 4)
        let bodyLength = Int(try reader.read(UInt32.self))
        _ = try reader.read(UInt32.self)
        let fieldsLength = Int(try reader.read(UInt32.self))
        guard bodyLength <= maximumLength, fieldsLength <= maximumLength else { throw .tooLarge(max(bodyLength, fieldsLength)) }
        let total = (16 + fieldsLength + 7) / 8 * 8 + bodyLength
        guard total <= maximumLength else { throw .tooLarge(total) }
        return total
    }

    /// Decodes exactly one whole message.
    public init(decoding bytes: [UInt8]) throws(DBusWireError) {
        guard let length = try Self.length(ofMessageStartingWith: bytes) else { throw .truncated }
        guard bytes.count == length else { throw length > bytes.count ? .truncated : .invalidHeader("bytes after the message") }
        let bigEndian = bytes[0] == UInt8(ascii: "B")
        guard let kind = Kind(rawValue: bytes[1]) else { throw .invalidHeader("message type \(bytes[1])") }
        self.init(kind: kind)
        noReplyExpected = bytes[2] & 0x1 != 0
        var reader = DBusReader(bytes: bytes, bigEndian: bigEndian, offset: 4)
        let bodyLength = Int(try reader.read(UInt32.self))
        serial = try reader.read(UInt32.self)
        guard serial != 0 else { throw .invalidHeader("serial 0") }
        let fields = try reader.read(.array(.structure([.byte, .variant])))
        var bodySignature = ""
        for field in fields.elements ?? [] {
            guard case .structure(let members) = field, case .byte(let code) = members[0], case .variant(let value) = members[1] else {
                throw .invalidHeader("header field")
            }
            switch (Field(rawValue: code), value) {
            case (.path, .objectPath(let text)): path = text
            case (.interface, .string(let text)): interface = text
            case (.member, .string(let text)): member = text
            case (.errorName, .string(let text)): errorName = text
            case (.replySerial, .uint32(let number)): replySerial = number
            case (.destination, .string(let text)): destination = text
            case (.sender, .string(let text)): sender = text
            case (.signature, .signature(let text)): bodySignature = text
            case (nil, _): continue  // fields of later versions are skipped, as the specification asks
            default: throw .invalidHeader("field \(code) of type \(value.type)")
            }
        }
        switch kind {
        case .methodCall where path == nil || member == nil: throw .invalidHeader("method call without path or member")
        case .signal where path == nil || interface == nil || member == nil: throw .invalidHeader("signal without path, interface or member")
        case .error where errorName == nil || replySerial == nil: throw .invalidHeader("error without name or reply serial")
        case .methodReturn where replySerial == nil: throw .invalidHeader("reply without reply serial")
        default: break
        }
        try reader.skipPadding(to: 8)
        guard reader.offset + bodyLength == bytes.count else { throw .invalidHeader("body length") }
        for type in try DBusType.parse(bodySignature) { body.append(try reader.read(type)) }
        guard reader.offset == bytes.count else { throw .invalidValue("body longer than its signature") }
    }
}
