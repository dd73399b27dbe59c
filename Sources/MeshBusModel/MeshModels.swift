extension MeshBus {
    /// A mesh packet in the JSON form MeshBus publishes (the Python `meshtastic` library's
    /// keys). The broker writes it from the protobuf (`PacketJSON`); this is the reading side.
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

        public init(from: UInt32? = nil, to: UInt32? = nil, fromId: String? = nil, toId: String? = nil, id: UInt32? = nil, decoded: Decoded? = nil) {
            self.from = from
            self.to = to
            self.fromId = fromId
            self.toId = toId
            self.id = id
            self.decoded = decoded
        }

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

            public init(portnum: String? = nil, payload: String? = nil, text: String? = nil) {
                self.portnum = portnum
                self.payload = payload
                self.text = text
            }
        }
    }

    /// A node's user record: who it is.
    public struct User: Codable, Sendable, Equatable {
        public var id: String?
        public var longName: String?
        public var shortName: String?
        public var hwModel: String?
        public var role: String?

        public init(id: String? = nil, longName: String? = nil, shortName: String? = nil, hwModel: String? = nil, role: String? = nil) {
            self.id = id
            self.longName = longName
            self.shortName = shortName
            self.hwModel = hwModel
            self.role = role
        }
    }

    /// A position as the radio reports it: degrees × 10⁷ and metres.
    public struct Position: Codable, Sendable, Equatable {
        public var latitudeI: Int?
        public var longitudeI: Int?
        public var altitude: Int?
        public var time: Int?

        public init(latitudeI: Int? = nil, longitudeI: Int? = nil, altitude: Int? = nil, time: Int? = nil) {
            self.latitudeI = latitudeI
            self.longitudeI = longitudeI
            self.altitude = altitude
            self.time = time
        }

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

        public init(batteryLevel: Int? = nil, voltage: Double? = nil, channelUtilization: Double? = nil, airUtilTx: Double? = nil, uptimeSeconds: Int? = nil) {
            self.batteryLevel = batteryLevel
            self.voltage = voltage
            self.channelUtilization = channelUtilization
            self.airUtilTx = airUtilTx
            self.uptimeSeconds = uptimeSeconds
        }
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

        public init(num: UInt32, user: User? = nil, position: Position? = nil, snr: Double? = nil, lastHeard: Int? = nil, deviceMetrics: DeviceMetrics? = nil, hopsAway: Int? = nil, viaMqtt: Bool? = nil) {
            self.num = num
            self.user = user
            self.position = position
            self.snr = snr
            self.lastHeard = lastHeard
            self.deviceMetrics = deviceMetrics
            self.hopsAway = hopsAway
            self.viaMqtt = viaMqtt
        }

        /// The node id in Meshtastic's `!hex` form.
        public var id: String { NodeID.format(num) }
    }

    /// The `snapshot` result: a slot's node DB and radio, current at `seq`.
    public struct Snapshot: Codable, Sendable, Equatable {
        public var seq: UInt64
        public var state: LinkState?
        public var myInfo: MyInfo?
        public var metadata: Metadata?
        /// Keyed by node id (`!hex`).
        public var nodes: [String: Node]

        public init(seq: UInt64, state: LinkState? = nil, myInfo: MyInfo? = nil, metadata: Metadata? = nil, nodes: [String: Node]) {
            self.seq = seq
            self.state = state
            self.myInfo = myInfo
            self.metadata = metadata
            self.nodes = nodes
        }

        /// The radio's own node number.
        public struct MyInfo: Codable, Sendable, Equatable {
            public var myNodeNum: UInt32

            public init(myNodeNum: UInt32) {
                self.myNodeNum = myNodeNum
            }
        }

        /// What the radio says about its firmware and hardware.
        public struct Metadata: Codable, Sendable, Equatable {
            public var firmwareVersion: String?
            public var hwModel: String?

            public init(firmwareVersion: String? = nil, hwModel: String? = nil) {
                self.firmwareVersion = firmwareVersion
                self.hwModel = hwModel
            }
        }
    }
}

/// Node numbers in the text form Meshtastic clients use.
public enum NodeID {
    /// The broadcast address, `^all` in text.
    public static let broadcast: UInt32 = 0xFFFF_FFFF
    public static let broadcastText = "^all"

    /// `!` and eight lower-case hex digits, e.g. `!a1b2c3d4`; `^all` for broadcast.
    public static func format(_ number: UInt32) -> String {
        if number == broadcast { return broadcastText }
        let hex = String(number, radix: 16)
        return "!" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// Appends ``format(_:)``'s text as a JSON string, without making the `String`.
    public static func writeJSON(_ number: UInt32, to out: inout [UInt8]) {
        if number == broadcast {
            out.append(contentsOf: "\"^all\"".utf8)
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 11) { text in
            text[0] = UInt8(ascii: "\"")
            text[1] = UInt8(ascii: "!")
            for position in 0..<8 {
                let digit = UInt8(truncatingIfNeeded: number >> UInt32(28 - 4 * position) & 0xF)
                text[2 + position] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10
            }
            text[10] = UInt8(ascii: "\"")
            out.append(contentsOf: UnsafeBufferPointer(text))
        }
    }
}
