import MeshtasticProtocol

import struct Foundation.Data
import struct Foundation.Date

/// The simulated world behind the virtual radio: the local node, its neighbours, and the
/// traffic they send. Pure value logic; the server around it does the I/O.
public struct VirtualMesh: Sendable {
    /// A virtual node: number, names, and where it is.
    public struct Node: Sendable, Equatable {
        public var num: UInt32
        public var longName: String
        public var shortName: String
        public var latitudeI: Int32
        public var longitudeI: Int32
        public var batteryLevel: UInt32
    }

    public let localNode: Node
    public private(set) var nodes: [Node]
    private var generator: SeededGenerator
    private var textCounter = 0

    /// `nodeCount` remote nodes plus the local one. Node numbers come from `seed`, so two
    /// simulators with one seed share node numbers and packet ids.
    public init(nodeCount: Int, seed: UInt64) {
        var generator = SeededGenerator(seed: seed)
        func makeNode(_ index: Int) -> Node {
            let num = UInt32.random(in: 0x1000_0000...0xEFFF_FFFF, using: &generator)
            let suffix = String(String(num, radix: 16).suffix(4))
            return Node(
                num: num,
                longName: index == 0 ? "MeshBus Sim \(suffix)" : "Sim Node \(index) \(suffix)",
                shortName: String(suffix.prefix(4)),
                latitudeI: Int32.random(in: 474_000_000...476_000_000, using: &generator),
                longitudeI: Int32.random(in: 84_000_000...86_000_000, using: &generator),
                batteryLevel: UInt32.random(in: 20...100, using: &generator)
            )
        }
        localNode = makeNode(0)
        nodes = (1...max(1, nodeCount)).map(makeNode)
        self.generator = generator
    }

    public static let firmwareVersion = "2.7.11.sim"

    /// Every node the radio knows, the local node first.
    public var allNodes: [Node] { [localNode] + nodes }

    public mutating func packetID() -> UInt32 { UInt32.random(in: 1...UInt32.max, using: &generator) }

    // MARK: Handshake

    /// The handshake burst answering `want_config_id = nonce`, ending in `config_complete_id`.
    /// Nonce 69420 asks for config only (no node DB), as on firmware.
    public func handshake(nonce: UInt32, now: UInt32) -> [Meshtastic_FromRadio] {
        var burst: [Meshtastic_FromRadio] = []
        var myInfo = Meshtastic_MyNodeInfo()
        myInfo.myNodeNum = localNode.num
        myInfo.minAppVersion = 30200
        myInfo.nodedbCount = UInt32(allNodes.count)
        myInfo.pioEnv = "native"
        burst.append(.with { $0.myInfo = myInfo })
        burst.append(.with { $0.metadata = Self.metadata })
        if nonce != 69420 {
            for node in allNodes { burst.append(.with { $0.nodeInfo = nodeInfo(node, now: now) }) }
        }
        for index in 0..<8 {
            var channel = Meshtastic_Channel()
            channel.index = Int32(index)
            if index == 0 {
                channel.role = .primary
                channel.settings.psk = Data([1])
            }
            burst.append(.with { $0.channel = channel })
        }
        for config in Self.configs { burst.append(.with { $0.config = config }) }
        for module in Self.moduleConfigs { burst.append(.with { $0.moduleConfig = module }) }
        burst.append(.with { $0.configCompleteID = nonce })
        return burst
    }

    static var metadata: Meshtastic_DeviceMetadata {
        var metadata = Meshtastic_DeviceMetadata()
        metadata.firmwareVersion = firmwareVersion
        metadata.deviceStateVersion = 24
        metadata.hasWifi_p = true
        metadata.hasPkc_p = true
        metadata.hwModel = .portduino
        return metadata
    }

    static var configs: [Meshtastic_Config] {
        [
            .with { $0.device = .with { $0.role = .client; $0.nodeInfoBroadcastSecs = 10800 } },
            .with { $0.position = .with { $0.positionBroadcastSecs = 900; $0.positionBroadcastSmartEnabled = true } },
            .with { $0.power = .with { $0.lsSecs = 300 } },
            .with { $0.network = .with { $0.ntpServer = "meshtastic.pool.ntp.org" } },
            .with { $0.display = .with { $0.screenOnSecs = 600 } },
            .with {
                $0.lora = .with {
                    $0.usePreset = true
                    $0.region = .us
                    $0.hopLimit = 3
                    $0.txEnabled = true
                    $0.txPower = 30
                }
            },
            .with { $0.bluetooth = .with { $0.enabled = false; $0.mode = .randomPin } },
            .with { $0.security = .with { $0.serialEnabled = true } },
        ]
    }

    static var moduleConfigs: [Meshtastic_ModuleConfig] {
        [
            .with { $0.mqtt = .with { $0.root = "msh" } },
            .with { $0.telemetry = .with { $0.deviceUpdateInterval = 1800 } },
            .with { $0.neighborInfo = .with { $0.updateInterval = 14400 } },
        ]
    }

    func user(_ node: Node) -> Meshtastic_User {
        var user = Meshtastic_User()
        user.id = NodeNumber.id(node.num)
        user.longName = node.longName
        user.shortName = node.shortName
        user.hwModel = .portduino
        return user
    }

    func nodeInfo(_ node: Node, now: UInt32) -> Meshtastic_NodeInfo {
        var info = Meshtastic_NodeInfo()
        info.num = node.num
        info.user = user(node)
        info.position.latitudeI = node.latitudeI
        info.position.longitudeI = node.longitudeI
        info.position.time = now
        info.lastHeard = now
        info.deviceMetrics.batteryLevel = node.batteryLevel
        info.deviceMetrics.voltage = 3.7
        if node.num != localNode.num {
            info.snr = 6.25
            info.hopsAway = 0
        }
        return info
    }

    // MARK: Traffic

    /// The kinds of traffic the virtual nodes send.
    public enum TrafficKind: CaseIterable, Sendable {
        case text, position, telemetry, nodeInfo
    }

    /// One packet a random remote node broadcasts now; a text packet says `text` if given.
    public mutating func trafficPacket(now: UInt32, kind: TrafficKind? = nil, text: String? = nil) -> Meshtastic_MeshPacket {
        let node = nodes[Int.random(in: 0..<nodes.count, using: &generator)]
        let kind = kind ?? TrafficKind.allCases.randomElement(using: &generator)!
        var data = Meshtastic_Data()
        switch kind {
        case .text:
            textCounter += 1
            data.portnum = .textMessageApp
            data.payload = Data((text ?? "hello from \(node.shortName) #\(textCounter)").utf8)
        case .position:
            data.portnum = .positionApp
            var position = Meshtastic_Position()
            position.latitudeI = node.latitudeI
            position.longitudeI = node.longitudeI
            position.altitude = Int32.random(in: 300...600, using: &generator)
            position.time = now
            position.locationSource = .locInternal
            position.precisionBits = 32
            data.payload = (try? position.serializedBytes()) ?? Data()
        case .telemetry:
            data.portnum = .telemetryApp
            var telemetry = Meshtastic_Telemetry()
            telemetry.time = now
            telemetry.deviceMetrics.batteryLevel = node.batteryLevel
            telemetry.deviceMetrics.voltage = 3.5 + Float(node.batteryLevel) / 200
            telemetry.deviceMetrics.channelUtilization = Float(Int.random(in: 0...400, using: &generator)) / 16
            telemetry.deviceMetrics.airUtilTx = Float(Int.random(in: 0...80, using: &generator)) / 16
            telemetry.deviceMetrics.uptimeSeconds = now % 100_000
            data.payload = (try? telemetry.serializedBytes()) ?? Data()
        case .nodeInfo:
            data.portnum = .nodeinfoApp
            data.payload = (try? user(node).serializedBytes()) ?? Data()
        }
        var packet = Meshtastic_MeshPacket()
        packet.from = node.num
        packet.to = NodeNumber.broadcast
        packet.decoded = data
        packet.id = packetID()
        packet.rxTime = now
        packet.rxSnr = Float(Int.random(in: -40...40, using: &generator)) / 4
        packet.rxRssi = Int32.random(in: -120 ... -40, using: &generator)
        packet.hopLimit = 3
        packet.hopStart = 3
        return packet
    }

    /// Whether a packet to `destination` can be delivered: broadcast, or a node of the mesh.
    public func canReach(_ destination: UInt32) -> Bool {
        destination == NodeNumber.broadcast || destination == 0 || allNodes.contains { $0.num == destination }
    }

    /// The Routing reply the local radio gives to a packet sent with `want_ack`: an ACK
    /// (`error` NONE) or a NAK with the error.
    public mutating func ack(for packet: Meshtastic_MeshPacket, error: Meshtastic_Routing.Error = .none, now: UInt32) -> Meshtastic_MeshPacket {
        var routing = Meshtastic_Routing()
        routing.errorReason = error
        var reply = Meshtastic_MeshPacket()
        reply.from = localNode.num
        reply.to = localNode.num
        reply.id = packetID()
        reply.rxTime = now
        reply.priority = .ack
        reply.decoded.portnum = .routingApp
        reply.decoded.payload = (try? routing.serializedBytes()) ?? Data()
        reply.decoded.requestID = packet.id
        return reply
    }

    /// The answer to an admin packet for the local node, if it is one the radio answers:
    /// `get_device_metadata_request` gets the metadata, with `request_id` = the packet's id.
    public mutating func adminReply(to packet: Meshtastic_MeshPacket, now: UInt32) -> Meshtastic_MeshPacket? {
        guard packet.to == localNode.num || packet.to == 0, case .decoded(let data)? = packet.payloadVariant, data.portnum == .adminApp,
            let request = try? Meshtastic_AdminMessage(serializedBytes: data.payload), request.getDeviceMetadataRequest
        else { return nil }
        var response = Meshtastic_AdminMessage()
        response.getDeviceMetadataResponse = Self.metadata
        var reply = Meshtastic_MeshPacket()
        reply.from = localNode.num
        reply.to = localNode.num
        reply.id = packetID()
        reply.rxTime = now
        reply.decoded.portnum = .adminApp
        reply.decoded.payload = (try? response.serializedBytes()) ?? Data()
        reply.decoded.requestID = packet.id
        return reply
    }
}

extension VirtualMesh {
    /// Seconds since 1970, as the radio stamps packets.
    public static func unixNow() -> UInt32 { UInt32(Date().timeIntervalSince1970) }
}
