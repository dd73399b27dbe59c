import Foundation
import MeshtasticProtocol
import Testing

@testable import VirtualRadio

/// A radio's handshake burst, as the simulator's firmware-like radio sends it.
func radioHandshake(myNodeNum: UInt32 = 0x1000_0001, others: [UInt32] = [0x2000_0002, 0x3000_0003]) -> [Meshtastic_FromRadio] {
    var burst: [Meshtastic_FromRadio] = [.with { $0.myInfo = .with { $0.myNodeNum = myNodeNum } }]
    burst.append(.with { $0.nodeInfo = .with { $0.num = myNodeNum; $0.user.longName = "local" } })
    burst.append(.with { $0.metadata = .with { $0.firmwareVersion = "2.7.11" } })
    // Sent out of order: the mirror puts them in the firmware's order.
    burst.append(.with { $0.config = .with { $0.lora = .with { $0.hopLimit = 3 } } })
    burst.append(.with { $0.config = .with { $0.device = .with { $0.role = .client } } })
    burst += (0..<8).reversed().map { index in .with { $0.channel = .with { $0.index = Int32(index) } } }
    burst.append(.with { $0.moduleConfig = .with { $0.telemetry = .with { $0.deviceUpdateInterval = 900 } } })
    burst.append(.with { $0.moduleConfig = .with { $0.mqtt = .with { $0.enabled = false; $0.address = "x" } } })
    burst += others.map { num in .with { $0.nodeInfo = .with { $0.num = num; $0.hopsAway = 1 } } }
    burst.append(.with { $0.configCompleteID = 77 })
    return burst
}

func mirror(of burst: [Meshtastic_FromRadio]) -> RadioMirror {
    var mirror = RadioMirror()
    for message in burst { _ = mirror.absorb(message) }
    return mirror
}

/// The node infos of a burst, in order: the slot's node store after that handshake.
func nodes(of burst: [Meshtastic_FromRadio]) -> [Meshtastic_NodeInfo] {
    burst.compactMap { message in
        if case .nodeInfo(let node)? = message.payloadVariant { return node }
        return nil
    }
}

/// The handshake a client gets from a mirror of `burst` with the burst's nodes.
func handshake(after burst: [Meshtastic_FromRadio], nonce: UInt32) -> [Meshtastic_FromRadio] {
    mirror(of: burst).handshake(nonce: nonce, nodes: nodes(of: burst))
}

/// A short name per message, to compare handshakes by shape.
func shape(_ burst: [Meshtastic_FromRadio]) -> [String] {
    burst.map { message in
        switch message.payloadVariant {
        case .myInfo: "myInfo"
        case .deviceuiConfig: "ui"
        case .metadata: "metadata"
        case .channel(let channel): "channel\(channel.index)"
        case .config(let config): "config\(RadioMirror.fieldNumber(of: config) ?? -1)"
        case .moduleConfig(let config): "module\(RadioMirror.fieldNumber(of: config) ?? -1)"
        case .nodeInfo(let node): String(format: "node%08x", node.num)
        case .fileInfo: "file"
        case .configCompleteID(let nonce): "complete\(nonce)"
        default: "other"
        }
    }
}

@Suite struct RadioMirrorTests {
    @Test func handshakeFollowsTheFirmwareOrderAndEndsWithTheClientsNonce() {
        let burst = handshake(after: radioHandshake(), nonce: 4242)
        #expect(shape(burst) == [
            "myInfo", "node10000001", "metadata",
            "channel0", "channel1", "channel2", "channel3", "channel4", "channel5", "channel6", "channel7",
            "config1", "config6", "module1", "module6", "node20000002", "node30000003", "complete4242",
        ])
    }

    @Test func ownNodeIsAFavouriteWithoutHopsAway() throws {
        let burst = handshake(after: radioHandshake(), nonce: 1)
        let nodes = burst.compactMap { message -> Meshtastic_NodeInfo? in
            if case .nodeInfo(let node)? = message.payloadVariant, node.num == 0x1000_0001 { return node }
            return nil
        }
        let own = try #require(nodes.first)
        #expect(own.isFavorite)
        #expect(!own.hasHopsAway)
    }

    @Test func configOnlyNonceLeavesOutTheOtherNodes() {
        let burst = handshake(after: radioHandshake(), nonce: RadioMirror.SpecialNonce.configOnly)
        #expect(!shape(burst).contains("node20000002"))
        #expect(shape(burst).contains("node10000001"))
        #expect(shape(burst).last == "complete69420")
    }

    @Test func nodesOnlyNonceSendsNodeInfosAlone() {
        let burst = handshake(after: radioHandshake(), nonce: RadioMirror.SpecialNonce.nodesOnly)
        #expect(shape(burst) == ["node10000001", "node20000002", "node30000003", "complete69421"])
    }

    @Test func aNewHandshakeFromTheRadioReplacesTheOldConfig() {
        var mirror = mirror(of: radioHandshake())
        for message in radioHandshake(myNodeNum: 0x6000_0006) { _ = mirror.absorb(message) }
        let burst = mirror.handshake(nonce: 1, nodes: [])
        #expect(burst.first?.myInfo.myNodeNum == 0x6000_0006)
        #expect(shape(burst).filter { $0 == "myInfo" }.count == 1)
    }

    @Test func onlyLiveTrafficIsForwarded() {
        var mirror = RadioMirror()
        #expect(mirror.absorb(.with { $0.logRecord = .with { $0.message = "hi" } }) == .forward)
        #expect(mirror.absorb(.with { $0.clientNotification = .with { $0.message = "hi" } }) == .forward)
        #expect(mirror.absorb(.with { $0.nodeInfo = .with { $0.num = 5 } }) == .forward)
        #expect(mirror.absorb(.with { $0.queueStatus = .with { $0.free = 3 } }) == .linkOnly)
        #expect(mirror.absorb(.with { $0.configCompleteID = 5 }) == .linkOnly)
        #expect(mirror.absorb(.with { $0.rebooted = true }) == .linkOnly)
        #expect(mirror.absorb(.with { $0.channel = .with { $0.index = 1 } }) == .kept)
    }
}

@Suite struct AdminPolicyTests {
    func adminPacket(_ build: (inout Meshtastic_AdminMessage) -> Void) -> Meshtastic_MeshPacket {
        var admin = Meshtastic_AdminMessage()
        build(&admin)
        return .with {
            $0.to = 0x1000_0001
            $0.decoded.portnum = .adminApp
            $0.decoded.payload = try! admin.serializedData()
        }
    }

    @Test func requestsThatOnlyReadPass() {
        #expect(AdminPolicy.refusal(of: adminPacket { $0.getDeviceMetadataRequest = true }) == nil)
        #expect(AdminPolicy.refusal(of: adminPacket { $0.getConfigRequest = .loraConfig }) == nil)
        #expect(AdminPolicy.refusal(of: adminPacket { $0.getChannelRequest = 2 }) == nil)
        #expect(AdminPolicy.refusal(of: adminPacket { $0.getOwnerRequest = true }) == nil)
    }

    @Test func requestsThatChangeARadioAreRefusedByName() {
        #expect(AdminPolicy.refusal(of: adminPacket { $0.setOwner = .with { $0.longName = "x" } }) == "admin request 'set_owner'")
        #expect(AdminPolicy.refusal(of: adminPacket { $0.setConfig = .with { $0.lora = .init() } }) == "admin request 'set_config'")
        #expect(AdminPolicy.refusal(of: adminPacket { $0.rebootSeconds = 5 }) == "admin request 'reboot_seconds'")
        #expect(AdminPolicy.refusal(of: adminPacket { $0.factoryResetDevice = 1 }) == "admin request 'factory_reset_device'")
        #expect(AdminPolicy.refusal(of: adminPacket { $0.nodedbReset = true }) == "admin request 'nodedb_reset'")
        #expect(AdminPolicy.refusal(of: adminPacket { $0.beginEditSettings = true }) == "admin request 'begin_edit_settings'")
    }

    @Test func unreadableOrEmptyAdminIsRefused() {
        var garbage = adminPacket { _ in }
        garbage.decoded.payload = Data([0xFF, 0xFF, 0xFF])
        #expect(AdminPolicy.refusal(of: garbage) == "an admin payload it cannot read")
        #expect(AdminPolicy.refusal(of: adminPacket { _ in }) == "an admin message with no request it knows")
    }

    @Test func otherPortsAreNotAdmin() {
        let text = Meshtastic_MeshPacket.with {
            $0.decoded.portnum = .textMessageApp
            $0.decoded.payload = Data("reboot".utf8)
        }
        #expect(AdminPolicy.refusal(of: text) == nil)
    }
}

@Suite struct ReplyRoutesTests {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        static func at(_ seconds: Int64) -> Instant { Instant(offset: .seconds(seconds)) }
    }

    @Test func aReplyFindsTheClientAndTheIDItChose() {
        var routes = ReplyRoutes<Instant>(lifetime: .seconds(600))
        routes.add(radioPacketID: 900, client: 1, clientPacketID: 42, now: .at(0))
        routes.add(radioPacketID: 901, client: 2, clientPacketID: 42, now: .at(0))
        #expect(routes.route(requestID: 900, now: .at(5))?.client == 1)
        #expect(routes.route(requestID: 901, now: .at(5)) == .init(client: 2, clientPacketID: 42, expires: .at(600)))
        #expect(routes.route(requestID: 902, now: .at(5)) == nil)
    }

    @Test func routesExpireAndAreForgotten() {
        var routes = ReplyRoutes<Instant>(lifetime: .seconds(10))
        routes.add(radioPacketID: 1, client: 1, clientPacketID: 1, now: .at(0))
        #expect(routes.route(requestID: 1, now: .at(10)) == nil)
        routes.add(radioPacketID: 2, client: 1, clientPacketID: 2, now: .at(11))
        #expect(routes.count == 1)
    }

    @Test func theOldestRouteGoesWhenFull() {
        var routes = ReplyRoutes<Instant>(capacity: 2, lifetime: .seconds(600))
        for id: UInt32 in 1...3 { routes.add(radioPacketID: id, client: 1, clientPacketID: id, now: .at(0)) }
        #expect(routes.count == 2)
        #expect(routes.route(requestID: 1, now: .at(1)) == nil)
        #expect(routes.route(requestID: 3, now: .at(1)) != nil)
    }
}
