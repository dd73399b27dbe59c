import Foundation

/// Where the bridge publishes and listens: every MQTT topic name in one place.
///
/// Slot topics are at least three levels deep (`<base>/<slot>/<what>`), so `<base>/status`
/// can never clash with a slot (slot names have no `/`).
///
/// With a site, every topic sits under `<prefix>/<site>` and every Home Assistant id carries
/// the site, so several MeshBus hosts share one MQTT broker (or cluster) without clashes, even
/// with the same slot names and the same mesh nodes heard at two sites.
public struct BridgeTopics: Sendable, Equatable {
    /// First level of every MeshBus topic (`meshbus`).
    public var prefix: String
    /// This MeshBus host's name among several on one MQTT broker; nil for a single host.
    public var site: String?
    /// Home Assistant's discovery prefix (`homeassistant`); nil publishes no discovery.
    public var discoveryPrefix: String?

    public init(prefix: String = "meshbus", site: String? = nil, discoveryPrefix: String? = "homeassistant") {
        self.prefix = prefix
        self.site = site
        self.discoveryPrefix = discoveryPrefix
    }

    /// Where this host's topics start: `<prefix>` or `<prefix>/<site>`.
    var base: String { site.map { "\(prefix)/\($0)" } ?? prefix }

    /// The Home Assistant object id of a slot's device (`meshbus_<site>_<slot>`), the stem of
    /// every id the bridge announces.
    func objectID(slot: String) -> String { ["meshbus", site, slot].compactMap { $0 }.joined(separator: "_") }

    /// `online` while the bridge is connected, `offline` (its last will) otherwise; retained.
    public var status: String { "\(base)/status" }

    /// An event's MQTT topic: the ZeroMQ topic `<topic>/<slot>[/<PORTNUM>]` with the slot first,
    /// `<prefix>/<slot>/<topic>[/<PORTNUM>]`, so that `<prefix>/<slot>/#` is one slot.
    public func event(routingTopic: String) -> String? {
        let parts = routingTopic.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return ([base, String(parts[1]), String(parts[0])] + parts.dropFirst(2).map(String.init)).joined(separator: "/")
    }

    /// The slot's link state (retained).
    public func link(slot: String) -> String { "\(base)/\(slot)/link" }
    /// A node's state, flattened for dashboards (retained).
    public func node(slot: String, id: String) -> String { "\(base)/\(slot)/node/\(id)" }
    /// A node's position as a Home Assistant device tracker reads it (retained).
    public func position(slot: String, id: String) -> String { "\(base)/\(slot)/node/\(id)/position" }
    /// Where a text (plain, or a JSON `sendText` object) is sent to the slot's radio.
    public func send(slot: String) -> String { "\(base)/\(slot)/send" }
    /// Where the answer to a send goes.
    public func sendReply(slot: String) -> String { "\(base)/\(slot)/send/reply" }
    /// The filter that matches every slot's send topic.
    public var sendFilter: String { "\(base)/+/send" }

    /// The slot a send topic is for, or nil if `topic` is not one.
    public func slot(ofSend topic: String) -> String? {
        guard topic.hasPrefix(base + "/") else { return nil }
        let parts = topic.dropFirst(base.count + 1).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1] == "send", !parts[0].isEmpty else { return nil }
        return String(parts[0])
    }
}
