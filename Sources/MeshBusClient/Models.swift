import Foundation

/// A mesh packet in the JSON form MeshBus publishes (the Python `meshtastic` library's keys).
public struct Packet: Codable, Sendable, Equatable {
    public var from: UInt32?
    public var to: UInt32?
    public var fromId: String?
    public var toId: String?
    public var id: UInt32?
    public var channel: Int?
    public var rxTime: Int?
    public var rxSnr: Double?
    public var rxRssi: Int?
    public var hopLimit: Int?
    public var hopStart: Int?
    public var wantAck: Bool?
    public var viaMqtt: Bool?
    public var decoded: Decoded?
    /// Base64 of the encrypted payload, for packets the radio could not decrypt.
    public var encrypted: String?

    /// The decoded part of a packet: its port and, where MeshBus knows the port, its contents.
    public struct Decoded: Codable, Sendable, Equatable {
        /// The port's enum name, such as `TEXT_MESSAGE_APP`.
        public var portnum: String?
        /// Base64 of the raw payload.
        public var payload: String?
        public var text: String?
        public var requestId: UInt32?
        public var replyId: UInt32?
        public var user: User?
        public var position: Position?
    }
}

/// A node's user record: who it is.
public struct User: Codable, Sendable, Equatable {
    public var id: String?
    public var longName: String?
    public var shortName: String?
    public var hwModel: String?
    public var role: String?
}

/// A position as the radio reports it: degrees × 10⁷ and metres.
public struct Position: Codable, Sendable, Equatable {
    public var latitudeI: Int?
    public var longitudeI: Int?
    public var altitude: Int?
    public var time: Int?

    /// Latitude in degrees, if known.
    public var latitude: Double? { latitudeI.map { Double($0) * 1e-7 } }
    /// Longitude in degrees, if known.
    public var longitude: Double? { longitudeI.map { Double($0) * 1e-7 } }
}

/// Battery and airtime figures a node reports about itself.
public struct DeviceMetrics: Codable, Sendable, Equatable {
    public var batteryLevel: Int?
    public var voltage: Double?
    public var channelUtilization: Double?
    public var airUtilTx: Double?
    public var uptimeSeconds: Int?
}

/// One entry of a slot's node DB, merged from everything heard about the node.
public struct Node: Codable, Sendable, Equatable {
    public var num: UInt32
    public var user: User?
    public var position: Position?
    public var snr: Double?
    /// Unix seconds when the node was last heard.
    public var lastHeard: Int?
    public var deviceMetrics: DeviceMetrics?
    public var hopsAway: Int?
    public var viaMqtt: Bool?

    /// The node id in Meshtastic's `!hex` form.
    public var id: String { String(format: "!%08x", num) }
}

/// One step in the life of a send (`meshtastic.send.status`).
public struct SendStatus: Codable, Sendable, Equatable {
    public var packetId: UInt32
    /// The command's id, or `virtualRadio:…` for a packet from a virtual-radio client; nil if none.
    public var requestId: String?
    /// `queued`, `sent`, `acked`, `nak`, `expired` or `failed`.
    public var status: String
    public var error: String?
}

/// `meshtastic.connection.established`: the slot finished its handshake and is ready.
public struct LinkEstablished: Codable, Sendable, Equatable {
    public var myNodeNum: UInt32
    public var firmware: String?
    public var nodeCount: Int
    public var attempt: Int
}

/// `meshtastic.connection.state`: any change of a slot's connection manager.
public struct LinkState: Codable, Sendable, Equatable {
    public var state: String
    public var previous: String?
    public var strikes: Int?
    public var attempt: Int?
    public var retryInSeconds: Double?
}

/// The `ping` result: which broker answered, and for how long it has run.
public struct Ping: Codable, Sendable, Equatable {
    /// Fixed for the life of the broker process; a new value means it restarted.
    public var broker: String
    public var version: String
    public var uptimeSeconds: Double
}

/// One slot in the `status` result.
public struct SlotStatus: Codable, Sendable, Equatable {
    public var state: String
    public var ready: Bool
    public var strikes: Int
    public var reconnects: Int
    public var transport: String
    public var myNodeNum: UInt32?
    public var queueDepth: Int
    public var lastSeq: UInt64
    public var nodeCount: Int?
}

/// The `snapshot` result: a slot's node DB and radio, current at `seq`.
public struct Snapshot: Codable, Sendable, Equatable {
    public var seq: UInt64
    public var state: String?
    public var myInfo: MyInfo?
    public var metadata: Metadata?
    /// Keyed by node id (`!hex`).
    public var nodes: [String: Node]

    /// The radio's own node number.
    public struct MyInfo: Codable, Sendable, Equatable {
        public var myNodeNum: UInt32
    }

    /// What the radio says about its firmware and hardware.
    public struct Metadata: Codable, Sendable, Equatable {
        public var firmwareVersion: String?
        public var hwModel: String?
    }
}

/// The answer to a send: the packet id MeshBus gave it and its status (`queued`).
public struct SendReceipt: Codable, Sendable, Equatable {
    public var packetId: UInt32
    public var status: String
}
