/// Why bytes could not be decoded as, or a packet could not be encoded to, MQTT 3.1.1.
/// Every decoding error is fatal to the connection, as the specification requires.
package enum MQTTProtocolError: Error, Hashable, CustomStringConvertible {
    /// The remaining length still had its continuation bit set on the 4th byte.
    case malformedRemainingLength
    /// A packet (fixed header included) is larger than the configured maximum.
    case packetTooLarge(size: Int, maximum: Int)
    /// Packet type 0 or 15, reserved by the specification.
    case unknownPacketType(UInt8)
    /// PUBREC, PUBREL or PUBCOMP: the QoS 2 flow, which this client does not speak.
    case unsupportedPacketType(UInt8)
    /// The low nibble of the fixed header does not match what the packet type requires.
    case invalidFlags(packetType: UInt8, flags: UInt8)
    /// QoS 2 (unsupported) or 3 (invalid) in a PUBLISH, a will or a subscription.
    case unsupportedQoS(UInt8)
    /// A field runs past the end of the packet.
    case truncated
    /// Bytes left over after the last field of the packet.
    case trailingBytes(Int)
    /// A string that is not well-formed UTF-8 or contains U+0000.
    case invalidUTF8
    /// A CONNECT for another protocol name or level than "MQTT" level 4.
    case unsupportedProtocol(name: String, level: UInt8)
    /// Contents that break a rule of the specification (described in the associated value).
    case invalidContents(String)
    /// A string or binary field longer than the 65,535 bytes its length prefix can express.
    case fieldTooLong(Int)

    package var description: String {
        switch self {
        case .malformedRemainingLength: "malformed remaining length (more than 4 bytes)"
        case .packetTooLarge(let size, let maximum): "packet of \(size) bytes exceeds the maximum of \(maximum)"
        case .unknownPacketType(let type): "unknown packet type \(type)"
        case .unsupportedPacketType(let type): "unsupported packet type \(type) (QoS 2 flow)"
        case .invalidFlags(let type, let flags): "invalid fixed header flags \(flags) for packet type \(type)"
        case .unsupportedQoS(let qos): "unsupported QoS \(qos)"
        case .truncated: "truncated packet"
        case .trailingBytes(let count): "\(count) unexpected bytes after the packet's contents"
        case .invalidUTF8: "invalid UTF-8 string"
        case .unsupportedProtocol(let name, let level): "unsupported protocol \(name) level \(level)"
        case .invalidContents(let reason): "invalid packet: \(reason)"
        case .fieldTooLong(let length): "field of \(length) bytes exceeds 65535"
        }
    }
}
