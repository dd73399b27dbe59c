import MeshBusModel
import MeshtasticProtocol

/// A slot's node DB, held once, as the radio's own `NodeInfo` protobufs: merged from the
/// radio's handshake and from what every packet says about its sender. Its other forms are
/// rendered on demand: the JSON of `nodes`, `snapshot` and `meshtastic.node.updated`
/// (``PacketJSON/writeNode(_:to:)``) and the node list of a virtual client's handshake.
///
/// Compact: the nodes changed last (``hotCapacity``) are kept decoded, so a node heard often
/// is folded in place; every other node is kept as its encoded bytes, a tenth of the memory
/// of a decoded one (a radio's DB holds thousands of nodes, most of them quiet).
public struct NodeStore: Sendable {
    private struct HotNode: Sendable {
        var info: Meshtastic_NodeInfo
        /// When it was last changed, by the store's count of changes.
        var lastUse: UInt64
    }

    /// How many nodes are kept decoded.
    static let hotCapacity = 32

    private var hot: [UInt32: HotNode] = [:]
    private var cold: [UInt32: [UInt8]] = [:]
    /// Node numbers in the order they were first heard of.
    private var order: [UInt32] = []
    private var uses: UInt64 = 0

    public init() {}

    public var count: Int { order.count }

    public subscript(num: UInt32) -> Meshtastic_NodeInfo? {
        if let node = hot[num] { return node.info }
        return cold[num].map { Self.decode($0, num: num) }
    }

    /// Every node, in the order first heard of (the order a radio's handshake keeps).
    public var all: [Meshtastic_NodeInfo] { order.compactMap { self[$0] } }

    /// Takes in a `NodeInfo` from the radio's handshake: its flags and hops are the radio's
    /// word and replace those held; every other field it carries replaces the one held (those
    /// it leaves out, such as what packets told since, stay). True if that created or changed
    /// the node.
    public mutating func merge(_ info: Meshtastic_NodeInfo) -> Bool {
        change(info.num) { Self.merge(info, into: &$0) }
    }

    /// Folds what a packet says about its sender into the sender's entry, as the firmware's
    /// node DB does: when it was heard, its SNR and hops, and its user, position and device
    /// metrics where the packet carries them. True if that created or changed the node.
    public mutating func fold(_ packet: Meshtastic_MeshPacket) -> Bool {
        guard packet.from != 0, packet.from != NodeNumber.broadcast else { return false }
        return change(packet.from) { Self.fold(packet, into: &$0) }
    }

    /// Runs `body` on node `num` decoded (created if new), which stays decoded while it is
    /// among the last changed. True if the node was created or `body` changed it.
    private mutating func change(_ num: UInt32, _ body: (inout Meshtastic_NodeInfo) -> Bool) -> Bool {
        uses += 1
        if let index = hot.index(forKey: num) {
            hot.values[index].lastUse = uses
            // Changed in place: a node copied out of the dictionary and stored back would copy
            // its protobuf storage on every packet.
            return body(&hot.values[index].info)
        }
        var info: Meshtastic_NodeInfo
        var created = false
        if let bytes = cold.removeValue(forKey: num) {
            info = Self.decode(bytes, num: num)
        } else {
            info = .with { $0.num = num }
            order.append(num)
            created = true
        }
        let changed = body(&info)
        if hot.count >= Self.hotCapacity { coolLeastRecent() }
        hot[num] = HotNode(info: info, lastUse: uses)
        return changed || created
    }

    private mutating func coolLeastRecent() {
        guard let (num, node) = hot.min(by: { $0.value.lastUse < $1.value.lastUse }) else { return }
        hot[num] = nil
        cold[num] = (try? node.info.serializedBytes()) ?? []
    }

    /// The bytes were encoded by this store; a failure would leave the node its number only.
    private static func decode(_ bytes: [UInt8], num: UInt32) -> Meshtastic_NodeInfo {
        (try? Meshtastic_NodeInfo(serializedBytes: bytes)) ?? .with { $0.num = num }
    }

    private static func merge(_ info: Meshtastic_NodeInfo, into node: inout Meshtastic_NodeInfo) -> Bool {
        var changed = false
        if info.hasUser { set(held: node.hasUser, &node.user, info.user, &changed) }
        if info.hasPosition { set(held: node.hasPosition, &node.position, info.position, &changed) }
        if info.snr.bitPattern != 0 { set(&node.snr, info.snr, &changed) }
        if info.lastHeard != 0 { set(&node.lastHeard, info.lastHeard, &changed) }
        if info.hasDeviceMetrics { set(held: node.hasDeviceMetrics, &node.deviceMetrics, info.deviceMetrics, &changed) }
        if info.channel != 0 { set(&node.channel, info.channel, &changed) }
        if info.hasHopsAway {
            set(held: node.hasHopsAway, &node.hopsAway, info.hopsAway, &changed)
        } else if node.hasHopsAway {
            node.clearHopsAway()
            changed = true
        }
        set(&node.viaMqtt, info.viaMqtt, &changed)
        set(&node.isFavorite, info.isFavorite, &changed)
        set(&node.isIgnored, info.isIgnored, &changed)
        set(&node.isKeyManuallyVerified, info.isKeyManuallyVerified, &changed)
        set(&node.isMuted, info.isMuted, &changed)
        return changed
    }

    private static func fold(_ packet: Meshtastic_MeshPacket, into node: inout Meshtastic_NodeInfo) -> Bool {
        var changed = false
        if packet.rxTime != 0 { set(&node.lastHeard, packet.rxTime, &changed) }
        if packet.rxSnr != 0 { set(&node.snr, packet.rxSnr, &changed) }
        if packet.hopStart != 0, packet.hopStart >= packet.hopLimit {
            set(held: node.hasHopsAway, &node.hopsAway, packet.hopStart - packet.hopLimit, &changed)
        }
        set(&node.viaMqtt, packet.viaMqtt, &changed)
        guard case .decoded(let data) = packet.payloadVariant else { return changed }
        switch data.portnum {
        case .nodeinfoApp:
            if let user = try? Meshtastic_User(serializedBytes: data.payload) { set(held: node.hasUser, &node.user, user, &changed) }
        case .positionApp:
            if let position = try? Meshtastic_Position(serializedBytes: data.payload) {
                set(held: node.hasPosition, &node.position, position, &changed)
            }
        case .telemetryApp:
            if let telemetry = try? Meshtastic_Telemetry(serializedBytes: data.payload), case .deviceMetrics(let metrics) = telemetry.variant {
                set(held: node.hasDeviceMetrics, &node.deviceMetrics, metrics, &changed)
            }
        default:
            break
        }
        return changed
    }

    /// Writes `value` where it differs from the field (or the field is not `held` yet: an
    /// unset sub-message equals an empty one, but only a set one is written as JSON).
    private static func set<T: Equatable>(held: Bool = true, _ field: inout T, _ value: T, _ changed: inout Bool) {
        guard !held || field != value else { return }
        field = value
        changed = true
    }

    /// A float is compared by its bits, so that a NaN SNR is not news on every packet.
    private static func set(_ field: inout Float, _ value: Float, _ changed: inout Bool) {
        guard field.bitPattern != value.bitPattern else { return }
        field = value
        changed = true
    }

    /// The node DB keyed by node id (`!%08x`), like the Python library's `nodes`.
    public var table: JSONValue {
        .object(JSONObject(uniqueKeysWithValues: order.sorted().compactMap { num in self[num].map { (NodeNumber.id(num), PacketJSON.node($0)) } }))
    }
}
