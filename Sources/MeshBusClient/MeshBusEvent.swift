import Foundation
import MeshBusModel

/// One event from MeshBus's PUB socket: its envelope, decoded by topic into ``Kind``.
///
/// ``json`` keeps the envelope exactly as published, so a consumer can decode fields this
/// library does not model, or pass the event on unchanged (as the MQTT bridge does).
public struct MeshBusEvent: Sendable {
    /// The ZeroMQ topic frame: `<topic>/<slot>`, or `<topic>/<slot>/<PORTNUM>` for packets.
    public let routingTopic: String
    /// The topic without slot and port, such as `meshtastic.receive`.
    public let topic: String
    /// The slot (radio) it came from.
    public let slot: String
    /// Per slot, +1 for every event; a jump means events were missed.
    public let seq: UInt64
    /// The broker process's id; a new value means the broker restarted.
    public let broker: String
    /// When the broker published it, ISO 8601 UTC.
    public let time: String
    /// What it says, decoded by topic.
    public let kind: Kind
    /// The envelope's JSON text, as published.
    public let json: Data
    /// The raw `MeshPacket` protobuf for `meshtastic.receive` and `meshtastic.sent`.
    public let packetBytes: [UInt8]?

    /// What happened, by topic.
    public enum Kind: Sendable, Equatable {
        /// A packet the radio heard; `backlog` while it flushes what it stored before this link.
        case received(MeshBus.Packet, backlog: Bool)
        /// A packet MeshBus wrote to the radio, with the id of the command that asked for it.
        case sent(MeshBus.Packet, requestId: String?)
        /// A node DB entry was created or changed; the node is the merged entry.
        case nodeUpdated(MeshBus.Node)
        /// A step in the life of a send (`queued`, `sent`, `acked`, …).
        case sendStatus(MeshBus.SendStatus)
        /// The slot finished its handshake and is ready.
        case linkEstablished(MeshBus.LinkEstablished)
        /// The slot's link was declared dead, with the reason (`probe_strikes`, `shutdown`, …).
        case linkLost(reason: MeshBus.LossReason)
        /// Any state change of the slot's connection manager.
        case linkState(MeshBus.LinkStateChange)
        /// A line of the radio's debug log.
        case log(line: String, level: String?)
        /// A topic this library does not model (queue status, notifications, newer topics).
        case other
    }

    /// Decodes one published message (two or three frames); nil if it is not a MeshBus event.
    public init?(frames: [[UInt8]]) {
        guard frames.count >= 2, let routingTopic = String(validating: frames[0], as: UTF8.self) else { return nil }
        self.init(routingTopic: routingTopic, json: Data(frames[1]), packetBytes: frames.count > 2 ? frames[2] : nil)
    }

    /// Decodes an event from its topic frame and envelope JSON (as `replay` returns them).
    public init?(routingTopic: String, json: Data, packetBytes: [UInt8]? = nil) {
        guard let header = try? JSONDecoder().decode(Header.self, from: json) else { return nil }
        self.routingTopic = routingTopic
        self.topic = header.topic
        self.slot = header.slot
        self.seq = header.seq
        self.broker = header.broker
        self.time = header.time
        self.json = json
        self.packetBytes = packetBytes
        self.kind = Self.kind(of: header.topic, json: json)
    }

    /// Decodes the envelope into a type of your own, for fields this library does not model.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: json)
    }

    private struct Header: Decodable {
        var broker: String
        var slot: String
        var topic: String
        var seq: UInt64
        var time: String
    }

    private static func kind(of topic: String, json: Data) -> Kind {
        let decoder = JSONDecoder()
        func fields<T: Decodable>(_ type: T.Type) -> T? { try? decoder.decode(type, from: json) }
        switch topic {
        case MeshBus.Topic.receive:
            struct Fields: Decodable { var packet: MeshBus.Packet; var backlog: Bool? }
            return fields(Fields.self).map { .received($0.packet, backlog: $0.backlog ?? false) } ?? .other
        case MeshBus.Topic.sent:
            struct Fields: Decodable { var packet: MeshBus.Packet; var requestId: String? }
            return fields(Fields.self).map { .sent($0.packet, requestId: $0.requestId) } ?? .other
        case MeshBus.Topic.nodeUpdated:
            struct Fields: Decodable { var node: MeshBus.Node }
            return fields(Fields.self).map { .nodeUpdated($0.node) } ?? .other
        case MeshBus.Topic.sendStatus:
            return fields(MeshBus.SendStatus.self).map(Kind.sendStatus) ?? .other
        case MeshBus.Topic.established:
            return fields(MeshBus.LinkEstablished.self).map(Kind.linkEstablished) ?? .other
        case MeshBus.Topic.lost:
            return fields(MeshBus.LinkLost.self).map { .linkLost(reason: $0.reason) } ?? .other
        case MeshBus.Topic.state:
            return fields(MeshBus.LinkStateChange.self).map(Kind.linkState) ?? .other
        case MeshBus.Topic.log:
            struct Fields: Decodable { var line: String; var level: String? }
            return fields(Fields.self).map { .log(line: $0.line, level: $0.level) } ?? .other
        default:
            return .other
        }
    }
}
