/// The names and shapes of MeshBus's wire contract (design.md §3–§4), shared by the broker,
/// its clients and its bridges, so that neither side can drift from the other.
///
/// Types live in this namespace (`MeshBus.Node`, `MeshBus.SlotStatus`) so that they cannot
/// clash with a consumer's own `Node` or `Packet`. The broker writes their JSON through
/// ``JSONValueConvertible``; clients read it with `Codable`.
public enum MeshBus {}

extension MeshBus {
    /// Topic names of design.md §3; the first frame of an event is `topic/slot` (receive:
    /// `topic/slot/PORTNUM`).
    public enum Topic {
        public static let receive = "meshtastic.receive"
        public static let sent = "meshtastic.sent"
        public static let sendStatus = "meshtastic.send.status"
        public static let established = "meshtastic.connection.established"
        public static let lost = "meshtastic.connection.lost"
        public static let state = "meshtastic.connection.state"
        public static let nodeUpdated = "meshtastic.node.updated"
        public static let log = "meshtastic.log"
        public static let queueStatus = "meshtastic.queue.status"
        public static let clientNotification = "meshtastic.client.notification"

        /// The first frame's bytes: `topic/slot`, or `topic/slot/PORTNUM` for received packets.
        /// Put together as bytes, without a `String` in between: it is built for every event.
        public static func frame(_ topic: String, slot: String, port: String? = nil) -> [UInt8] {
            var frame: [UInt8] = []
            frame.reserveCapacity(topic.utf8.count + slot.utf8.count + (port.map { $0.utf8.count + 2 } ?? 1))
            frame.append(contentsOf: topic.utf8)
            frame.append(UInt8(ascii: "/"))
            frame.append(contentsOf: slot.utf8)
            if let port {
                frame.append(UInt8(ascii: "/"))
                frame.append(contentsOf: port.utf8)
            }
            return frame
        }
    }
}

/// A model whose JSON the broker writes: the one place its wire form is spelled out. The
/// keys match the `Codable` property names the clients decode with.
public protocol JSONValueConvertible {
    var jsonValue: JSONValue { get }
}

extension JSONValueConvertible {
    /// The members of the model's JSON object, in order (empty for a non-object).
    public var jsonMembers: JSONObject { jsonValue.objectValue ?? JSONObject() }
}

/// A string enum of the wire contract that keeps values it does not know (a newer broker's),
/// so a client decodes them instead of failing.
public protocol OpenStringEnum: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible where RawValue == String {
    init(rawValue: String)
}

extension OpenStringEnum {
    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
}

extension JSONValue {
    /// An optional as its value or `null`.
    static func optional<T>(_ value: T?, _ convert: (T) -> JSONValue) -> JSONValue {
        value.map(convert) ?? .null
    }
}
