import MeshtasticProtocol
import SwiftProtobuf

/// The radio as its one real client sees it: what it said in its handshake (all but the
/// nodes, which the slot's node store holds once for everyone). Each virtual client's
/// handshake is built from this and the slot's nodes, in the firmware's order, so it gets
/// what the radio would tell it if it were the only client.
struct RadioMirror: Sendable {
    /// `want_config_id` nonces with a meaning to firmware (`PhoneAPI.h`).
    enum SpecialNonce {
        /// Everything but the other nodes.
        static let configOnly: UInt32 = 69420
        /// The node infos only (no my-info, no config): the second stage of a two-stage handshake.
        static let nodesOnly: UInt32 = 69421
    }

    /// What a message from the radio means for virtual clients.
    enum Disposition: Equatable, Sendable {
        /// Handshake material, kept for the next client's handshake.
        case kept
        /// Live traffic every connected client gets (packets, node updates, log records,
        /// notifications).
        case forward
        /// Concerns only the real link (the radio's queue status, `config_complete_id`,
        /// `rebooted`, MQTT proxy, XModem).
        case linkOnly
    }

    private(set) var myInfo: Meshtastic_MyNodeInfo?
    private var uiConfig: Meshtastic_DeviceUIConfig?
    private var metadata: Meshtastic_DeviceMetadata?
    private var channels: [Int32: Meshtastic_Channel] = [:]
    /// Config and module-config sections by field number, so each variant is held once.
    private var configs: [Int: Meshtastic_Config] = [:]
    private var moduleConfigs: [Int: Meshtastic_ModuleConfig] = [:]
    private var files: [Meshtastic_FileInfo] = []

    init() {}

    /// Takes in one message from the radio.
    mutating func absorb(_ message: Meshtastic_FromRadio) -> Disposition {
        switch message.payloadVariant {
        case .myInfo(let info):
            // A handshake starts: what the radio says now replaces what it said before.
            self = RadioMirror()
            myInfo = info
            return .kept
        case .deviceuiConfig(let config):
            uiConfig = config
            return .kept
        case .metadata(let value):
            metadata = value
            return .kept
        case .channel(let channel):
            channels[channel.index] = channel
            return .kept
        case .config(let config):
            if let key = Self.fieldNumber(of: config) { configs[key] = config }
            return .kept
        case .moduleConfig(let config):
            if let key = Self.fieldNumber(of: config) { moduleConfigs[key] = config }
            return .kept
        case .fileInfo(let file):
            files.append(file)
            return .kept
        case .nodeInfo, .packet, .logRecord, .clientNotification:
            return .forward
        default:
            return .linkOnly
        }
    }

    /// The burst a client gets for `want_config_id = nonce`, ending with `config_complete_id`;
    /// `nodes` is the slot's node DB in the order first heard of.
    func handshake(nonce: UInt32, nodes: [Meshtastic_NodeInfo]) -> [Meshtastic_FromRadio] {
        var burst: [Meshtastic_FromRadio] = []
        let own = myInfo.map(\.myNodeNum)
        let ownNode = nodes.first { $0.num == own }.map { node in
            var node = node
            node.isFavorite = true
            node.clearHopsAway()
            return node
        }
        let others = nodes.filter { $0.num != own }
        if nonce == SpecialNonce.nodesOnly {
            if let ownNode { burst.append(.with { $0.nodeInfo = ownNode }) }
            burst += others.map { node in .with { $0.nodeInfo = node } }
        } else {
            if let myInfo { burst.append(.with { $0.myInfo = myInfo }) }
            if let uiConfig { burst.append(.with { $0.deviceuiConfig = uiConfig }) }
            if let ownNode { burst.append(.with { $0.nodeInfo = ownNode }) }
            if let metadata { burst.append(.with { $0.metadata = metadata }) }
            burst += channels.keys.sorted().map { index in .with { $0.channel = channels[index]! } }
            burst += configs.keys.sorted().map { key in .with { $0.config = configs[key]! } }
            burst += moduleConfigs.keys.sorted().map { key in .with { $0.moduleConfig = moduleConfigs[key]! } }
            if nonce != SpecialNonce.configOnly { burst += others.map { node in .with { $0.nodeInfo = node } } }
            burst += files.map { file in .with { $0.fileInfo = file } }
        }
        burst.append(.with { $0.configCompleteID = nonce })
        return burst
    }

    /// The field number of a one-of message's set variant: the first key on the wire.
    static func fieldNumber(of message: some SwiftProtobuf.Message) -> Int? {
        guard let bytes: [UInt8] = try? message.serializedBytes() else { return nil }
        var key = 0
        var shift = 0
        for byte in bytes.prefix(5) {
            key |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return key >> 3 }
            shift += 7
        }
        return nil
    }
}
