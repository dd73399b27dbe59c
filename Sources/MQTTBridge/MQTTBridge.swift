import EventLoopTime
import Foundation
import Logging
import MQTT
import MQTTWire
import MeshBusClient
import MeshBusModel
import Synchronization

/// Republishes one MeshBus broker on an MQTT broker, with Home Assistant discovery, and sends
/// texts that arrive on MQTT.
///
/// It is an ordinary MeshBus consumer (``MeshBusFeed``: snapshot, then gap-free events) in its
/// own process, so an MQTT broker that is down or slow never reaches the radios: the MQTT side
/// queues (bounded) and reconnects by itself, and republishes all retained state after every
/// reconnect, so a broker restarted without persistence gets it back.
public final class MQTTBridge: Sendable {
    /// What the bridge reports to its runner (the CLI prints these).
    public enum Report: Sendable, Equatable {
        /// The MQTT broker accepted the session.
        case mqttConnected
        /// The MQTT session ended or could not be opened.
        case mqttLost(reason: String)
        /// A slot was taken from a snapshot at this seq and is followed from there.
        case following(slot: String, seq: UInt64)
    }

    private let meshbus: MeshBusClient
    private let mqtt: MQTTClient
    private let topics: BridgeTopics
    private let discovery: HomeAssistantDiscovery?
    private let logger: Logger
    private let report: @Sendable (Report) -> Void
    private let published = Mutex<[String: [UInt8]]>([:])
    /// Each slot's link as last heard, and whether the broker answers at all: while it does
    /// not, every link shows as down (`broker_unreachable`) rather than as it last was.
    private let links = Mutex<(brokerReachable: Bool, bySlot: [String: SlotView.Link])>((true, [:]))

    /// A bridge between `meshbus` and `mqtt`. Configure `mqtt` with ``lastWill(_:)`` so that
    /// subscribers see `offline` when the bridge dies.
    public init(
        meshbus: MeshBusClient, mqtt: MQTTClient, topics: BridgeTopics = BridgeTopics(), version: String,
        logger: Logger, report: @escaping @Sendable (Report) -> Void = { _ in }
    ) {
        self.meshbus = meshbus
        self.mqtt = mqtt
        self.topics = topics
        self.discovery = topics.discoveryPrefix.map { HomeAssistantDiscovery(topics: topics, discoveryPrefix: $0, version: version) }
        self.logger = logger
        self.report = report
    }

    /// The last will that marks the bridge offline: retained, so late subscribers see it too.
    public static func lastWill(_ topics: BridgeTopics) -> MQTTMessage {
        MQTTMessage(topic: topics.status, payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
    }

    /// Runs until cancelled: the MQTT session, the MeshBus feed, the broker watch and the send
    /// handler, as one task group. Throws ``MQTTBridgeError/meshbusClientEnded`` if the MeshBus
    /// client stops on its own, so that the process exits and its supervisor restarts it.
    public func run() async throws {
        mqtt.retain(topic: topics.status, payload: Array("online".utf8))
        mqtt.subscribe(topics.sendFilter, qos: .atLeastOnce)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await self.mqtt.run() }
            group.addTask { await self.watchSession() }
            group.addTask { await self.serveSends() }
            group.addTask { await self.watchBroker() }
            group.addTask {
                await self.follow()
                guard Task.isCancelled else { throw MQTTBridgeError.meshbusClientEnded }
            }
        }
    }

    /// Publishes `offline` in place of `online` and waits (up to 2 s) until the MQTT broker has
    /// it; the runner calls it before cancelling ``run()``, whose clean DISCONNECT suppresses the will.
    public func stop() async {
        mqtt.retain(topic: topics.status, payload: Array("offline".utf8))
        _ = await mqtt.flush(within: .seconds(2))
    }

    private func watchSession() async {
        var dropped = 0
        for await event in mqtt.events {
            switch event {
            case .connected:
                let total = mqtt.statistics.dropped
                if total > dropped {
                    logger.warning("events dropped while MQTT was unreachable (queue full)", metadata: ["dropped": "\(total - dropped)"])
                    dropped = total
                }
                report(.mqttConnected)
            case .disconnected(let reason): report(.mqttLost(reason: reason))
            }
        }
    }

    // MARK: MeshBus → MQTT

    private func follow() async {
        var slots: [String: SlotView] = [:]
        for await update in MeshBusFeed(client: meshbus) {
            switch update {
            case .snapshot(let slot, let snapshot):
                let first = slots[slot] == nil
                var view = SlotView(snapshot: snapshot)
                if let previous = slots[slot] { view.keepSignals(of: previous) }
                slots[slot] = view
                if first, let discovery {
                    for (topic, payload) in discovery.configs(slot: slot) { retainJSON(topic, payload) }
                }
                publishLink(slot, view)
                for node in view.nodes.values { publishNode(slot, node) }
                report(.following(slot: slot, seq: snapshot.seq))
            case .event(let event):
                if let topic = topics.event(routingTopic: event.routingTopic) {
                    mqtt.publish(MQTTMessage(topic: topic, payload: Array(event.json)))
                }
                guard var view = slots[event.slot] else { continue }
                if let changed = view.apply(event) {
                    slots[event.slot] = view
                    switch changed {
                    case .link: publishLink(event.slot, view)
                    case .node(let num): if let node = view.nodes[num] { publishNode(event.slot, node) }
                    }
                }
            case .gap(let slot, let seq, let after):
                logger.info("missed events, replaying", metadata: ["slot": "\(slot)", "seq": "\(seq)", "after": "\(after)"])
            case .repaired(let slot, let seq):
                logger.info("replayed missed events", metadata: ["slot": "\(slot)", "seq": "\(seq)"])
            case .resync(let slot, let reason):
                logger.notice("taking the slot from a new snapshot", metadata: ["slot": "\(slot)", "reason": "\(reason)"])
            }
        }
    }

    private func publishLink(_ slot: String, _ view: SlotView) {
        links.withLock { links in
            links.bySlot[slot] = view.link
            if links.brokerReachable { retainJSON(topics.link(slot: slot), view.link.json(slot: slot)) }
        }
    }

    /// Pings the broker every 5 s. A broker that stops answering takes every slot's link down
    /// on MQTT (its radios may be fine, but nothing reaches MQTT from them); the links come
    /// back as they are when it answers again.
    private func watchBroker() async {
        let clock = EventLoopClock()
        while !Task.isCancelled {
            let reachable = (try? await meshbus.ping()) != nil
            // Published under the lock, so a concurrent link update cannot be overwritten by
            // a stale copy.
            let changed = links.withLock { links -> Bool in
                guard links.brokerReachable != reachable else { return false }
                links.brokerReachable = reachable
                for (slot, link) in links.bySlot {
                    var shown = link
                    if !reachable {
                        shown.state = .unknown("unknown")
                        shown.ready = false
                        shown.reason = "broker_unreachable"
                        shown.time = Date().formatted(.iso8601)
                    }
                    retainJSON(topics.link(slot: slot), shown.json(slot: slot))
                }
                return true
            }
            if changed && !reachable { logger.warning("the MeshBus broker does not answer; links show as down") }
            try? await clock.sleep(for: .seconds(5))
        }
    }

    private func publishNode(_ slot: String, _ node: NodeView) {
        retainJSON(topics.node(slot: slot, id: node.id), node.state)
        if let position = node.position { retainJSON(topics.position(slot: slot, id: node.id), position) }
        if let discovery {
            for (topic, payload) in discovery.configs(slot: slot, node: node) { retainJSON(topic, payload) }
        }
    }

    /// Retains `payload` unless the topic already holds exactly it (a node heard again with
    /// nothing new does not re-send its discovery configs).
    private func retainJSON(_ topic: String, _ payload: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        let bytes = Array(data)
        let changed = published.withLock { published in
            guard published[topic] != bytes else { return false }
            published[topic] = bytes
            return true
        }
        if changed { mqtt.retain(topic: topic, payload: bytes) }
    }

    // MARK: MQTT → MeshBus

    /// One send at a time, in the order they arrived, so two texts keep their order.
    private func serveSends() async {
        for await message in mqtt.messages {
            guard let slot = topics.slot(ofSend: message.topic) else { continue }
            // A retained send would go out again on every (re)subscribe: refuse it.
            guard !message.retain else {
                logger.warning("ignoring a retained message on a send topic", metadata: ["topic": "\(message.topic)"])
                continue
            }
            await send(message.payload, slot: slot)
        }
    }

    /// A send topic takes plain text (a broadcast on channel 0) or a JSON object with the
    /// `sendText` arguments and an `id` of the sender's own, which comes back in the reply.
    private func send(_ payload: [UInt8], slot: String) async {
        var id: Any = NSNull()
        var request: [String: Any]
        if let object = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] {
            id = object["id"] ?? NSNull()
            request = object.filter { $0.key != "id" }
        } else if let text = String(validating: payload, as: UTF8.self) {
            request = ["text": text]
        } else {
            publishReply(slot, ["id": id, "ok": false, "error": ["code": "bad_request", "message": "a send is UTF-8 text or a JSON object"]])
            return
        }
        request["cmd"] = "sendText"
        request["slot"] = slot
        var reply: [String: Any] = ["id": id]
        do {
            let data = try await meshbus.call(request: JSONSerialization.data(withJSONObject: request))
            reply["ok"] = true
            reply["result"] = try JSONSerialization.jsonObject(with: data)
        } catch let error as MeshBusError {
            reply["ok"] = false
            reply["error"] = ["code": error.code, "message": error.message]
        } catch {
            reply["ok"] = false
            reply["error"] = ["code": "broker_unreachable", "message": "\(error)"]
        }
        publishReply(slot, reply)
    }

    private func publishReply(_ slot: String, _ reply: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys]) else { return }
        mqtt.publish(MQTTMessage(topic: topics.sendReply(slot: slot), payload: Array(data), qos: .atLeastOnce))
    }
}

/// Why ``MQTTBridge/run()`` ended on its own.
public enum MQTTBridgeError: Error, CustomStringConvertible {
    /// The MeshBus client's socket thread ended (a libzmq error): nothing more can arrive.
    case meshbusClientEnded

    public var description: String { "the MeshBus client stopped; restart the bridge" }
}

/// What the bridge holds for one slot: its link and its nodes.
struct SlotView {
    var link: Link
    var nodes: [UInt32: NodeView]

    /// The slot's link as the retained link topic shows it.
    struct Link: Equatable {
        var state: MeshBus.LinkState
        var ready: Bool
        var myNodeNum: UInt32?
        /// The broker's loss reason, or the bridge's own (`broker_unreachable`).
        var reason: String?
        var time: String

        func json(slot: String) -> [String: Any] {
            ["slot": slot, "state": state.rawValue, "ready": ready, "myNodeNum": myNodeNum ?? NSNull(), "reason": reason ?? NSNull(), "time": time]
        }

    }

    enum Change {
        case link
        case node(UInt32)
    }

    init(snapshot: MeshBus.Snapshot) {
        let state = snapshot.state ?? .unknown("unknown")
        link = Link(state: state, ready: state.isUp, myNodeNum: snapshot.myInfo?.myNodeNum, reason: nil, time: Date().formatted(.iso8601))
        nodes = Dictionary(snapshot.nodes.values.map { ($0.num, NodeView(node: $0)) }, uniquingKeysWith: { first, _ in first })
    }

    /// Takes over what a snapshot does not hold from the view it replaces: the reason of the
    /// last loss while the link is still down, and the signal of each node's last packet (an
    /// RSSI sensor once announced must keep a value).
    mutating func keepSignals(of previous: SlotView) {
        if !link.ready { link.reason = previous.link.reason }
        for (num, old) in previous.nodes where nodes[num] != nil {
            nodes[num]!.rssi = old.rssi
            nodes[num]!.packetSnr = old.packetSnr
        }
    }

    /// Applies an event; says what changed, if anything the bridge publishes did.
    mutating func apply(_ event: MeshBusEvent) -> Change? {
        switch event.kind {
        case .nodeUpdated(let node):
            var view = nodes[node.num] ?? NodeView(node: node)
            view.node = node
            return update(view)
        case .received(let packet, _):
            guard let from = packet.from, var view = nodes[from] else { return nil }
            if let rssi = packet.rxRssi { view.rssi = rssi }
            if let snr = packet.rxSnr { view.packetSnr = snr }
            return update(view)
        case .linkEstablished(let established):
            return setLink(Link(state: .ready, ready: true, myNodeNum: established.myNodeNum, reason: nil, time: event.time))
        case .linkLost(let reason):
            return setLink(Link(state: link.state, ready: false, myNodeNum: link.myNodeNum, reason: reason.rawValue, time: event.time))
        case .linkState(let state):
            let ready = state.state.isUp
            return setLink(Link(state: state.state, ready: ready, myNodeNum: link.myNodeNum, reason: ready ? nil : link.reason, time: event.time))
        default:
            return nil
        }
    }

    private mutating func update(_ view: NodeView) -> Change? {
        guard nodes[view.node.num] != view else { return nil }
        nodes[view.node.num] = view
        return .node(view.node.num)
    }

    private mutating func setLink(_ newer: Link) -> Change? {
        var comparable = newer
        comparable.time = link.time
        guard comparable != link else { return nil }
        link = newer
        return .link
    }
}
