import MeshBusModel
import MeshtasticProtocol

/// A slot's node DB, held once, as the radio's own `NodeInfo` protobufs: merged from the
/// radio's handshake and from what every packet says about its sender. Its other forms are
/// rendered on demand: the JSON of `nodes`, `snapshot` and `meshtastic.node.updated`
/// (``PacketJSON/writeNode(_:to:)``) and the node list of a virtual client's handshake.
public struct NodeStore: Sendable {
    private var nodes: [UInt32: Meshtastic_NodeInfo] = [:]
    /// Node numbers in the order they were first heard of.
    private var order: [UInt32] = []

    public init() {}

    public var count: Int { nodes.count }

    public subscript(num: UInt32) -> Meshtastic_NodeInfo? { nodes[num] }

    /// Every node, in the order first heard of (the order a radio's handshake keeps).
    public var all: [Meshtastic_NodeInfo] { order.compactMap { nodes[$0] } }

    /// Takes in a `NodeInfo` from the radio's handshake: its flags and hops are the radio's
    /// word and replace those held; every other field it carries replaces the one held (those
    /// it leaves out, such as what packets told since, stay). True if that created or changed
    /// the node.
    public mutating func merge(_ info: Meshtastic_NodeInfo) -> Bool {
        let created = create(info.num)
        return Self.merge(info, into: &nodes[info.num]!) || created
    }

    /// Folds what a packet says about its sender into the sender's entry, as the firmware's
    /// node DB does: when it was heard, its SNR and hops, and its user, position and device
    /// metrics where the packet carries them. True if that created or changed the node.
    public mutating func fold(_ packet: Meshtastic_MeshPacket) -> Bool {
        guard packet.from != 0, packet.from != NodeNumber.broadcast else { return false }
        let created = create(packet.from)
        // Changed in place: a node copied out of the dictionary and stored back would copy
        // its protobuf storage on every packet.
        return Self.fold(packet, into: &nodes[packet.from]!) || created
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
        .object(JSONObject(uniqueKeysWithValues: nodes.keys.sorted().map { (NodeNumber.id($0), PacketJSON.node(nodes[$0]!)) }))
    }

    private mutating func create(_ num: UInt32) -> Bool {
        guard nodes[num] == nil else { return false }
        nodes[num] = .with { $0.num = num }
        order.append(num)
        return true
    }
}
