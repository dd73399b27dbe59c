import MQTTWire

/// Everything an ``MQTTClient`` remembers across connections, and the bookkeeping of the
/// current one. It lives under the client's mutex: every method is a short, non-blocking step,
/// and the writer is woken through the connection's `wake` continuation.
struct MQTTClientState {
    /// A message accepted by `publish`, stamped in acceptance order.
    struct Queued {
        var sequence: UInt64
        var message: MQTTMessage
    }

    /// The latest value given to `retain` for a topic; an empty payload is a clear not yet acknowledged.
    struct RetainedValue: Equatable {
        var payload: [UInt8]
        var version: UInt64
        /// The broker acknowledged this value since it was last published.
        var acknowledged = false
    }

    /// What a packet identifier that is not a queued message's waits for.
    enum Acknowledgement {
        case subscribe([String])
        case unsubscribe
        case retained(topic: String, version: UInt64)
    }

    /// One TCP connection, from connect until it closes.
    struct Connection {
        let id: Int
        /// The broker accepted the CONNECT.
        var isLive = false
        /// Packets the writer sends before any queued message: CONNECT, PUBACK, PINGREQ, the
        /// post-CONNACK sequence, SUBSCRIBE and retained state.
        var outbound: [MQTTPacket]
        var lastReceived: ContinuousClock.Instant
        let wake: AsyncStream<Void>.Continuation
    }

    /// What the reader does about a packet once the state has taken it in.
    enum Reaction: Equatable {
        case none
        case connected(sessionPresent: Bool)
        case deliver(MQTTMessage)
        case subscriptionsRefused([String])
        case close(reason: String)
    }

    /// QoS 1 messages awaiting PUBACK at once; the rest of the 65,535 identifiers stay free for
    /// SUBSCRIBE and retained state.
    static let maximumMessagesInFlight = 32_768

    let queueLimit: Int
    var statistics = MQTTStatistics()
    private(set) var connection: Connection?
    private(set) var subscriptions: [String: MQTTQoS] = [:]
    private(set) var retained: [String: RetainedValue] = [:]
    /// Accepted, not yet handed to a live connection; oldest first.
    private(set) var queue: [Queued] = []
    /// QoS 1 messages written and awaiting PUBACK, kept across connections.
    private(set) var inFlight: [UInt16: Queued] = [:]
    private var awaitingAcknowledgement: [UInt16: Acknowledgement] = [:]
    private var nextPacketID: UInt16 = 1
    private var nextSequence: UInt64 = 0
    /// Callers of `flush(within:)`, woken whenever the state may have become ``isFlushed``.
    private var flushWatchers: [Int: AsyncStream<Void>.Continuation] = [:]
    private var nextFlushWatcher = 0

    init(queueLimit: Int) {
        self.queueLimit = queueLimit
    }

    // MARK: Application requests

    /// Queues a message, dropping the oldest held ones past the limit; returns how many it dropped.
    mutating func enqueue(_ message: MQTTMessage) -> Int {
        queue.append(Queued(sequence: takeSequence(), message: message))
        var dropped = 0
        while queue.count + inFlight.count > queueLimit {
            if let index = queue.firstIndex(where: { $0.message.qos == .atMostOnce }) {
                queue.remove(at: index)
            } else if let oldest = inFlight.min(by: { $0.value.sequence < $1.value.sequence }) {
                inFlight[oldest.key] = nil
            } else {
                queue.removeFirst()
            }
            dropped += 1
        }
        statistics.dropped += dropped
        if connection?.isLive == true { connection?.wake.yield() }
        return dropped
    }

    /// Remembers `filter`, and subscribes now if connected.
    mutating func subscribe(_ filter: String, qos: MQTTQoS) {
        subscriptions[filter] = qos
        request(.subscribe([filter])) { .subscribe(packetID: $0, subscriptions: [MQTTSubscription(filter: filter, qos: qos)]) }
    }

    /// Forgets `filter`, and unsubscribes now if connected.
    mutating func unsubscribe(_ filter: String) {
        guard subscriptions.removeValue(forKey: filter) != nil else { return }
        request(.unsubscribe) { .unsubscribe(packetID: $0, filters: [filter]) }
    }

    /// Records the topic's value (an empty payload: a clear) and publishes it now if connected.
    mutating func retain(topic: String, payload: [UInt8]) {
        let value = RetainedValue(payload: payload, version: takeSequence())
        retained[topic] = value
        publishRetained(topic: topic, value: value)
    }

    /// Nothing accepted is waiting any more: the queue is handed over, and every QoS 1 message
    /// and retained value is acknowledged.
    var isFlushed: Bool {
        queue.isEmpty && inFlight.isEmpty && retained.values.allSatisfy(\.acknowledged)
    }

    /// Registers a watcher woken on progress (and once now); returns its id for removal.
    mutating func addFlushWatcher(_ watcher: AsyncStream<Void>.Continuation) -> Int {
        defer { nextFlushWatcher += 1 }
        flushWatchers[nextFlushWatcher] = watcher
        watcher.yield()
        return nextFlushWatcher
    }

    mutating func removeFlushWatcher(_ id: Int) {
        flushWatchers.removeValue(forKey: id)?.finish()
    }

    // MARK: Connection lifecycle

    /// A TCP connection is up: CONNECT is the first thing its writer sends.
    mutating func connectionStarted(id: Int, connect: MQTTPacket, wake: AsyncStream<Void>.Continuation, now: ContinuousClock.Instant) {
        connection = Connection(id: id, outbound: [connect], lastReceived: now, wake: wake)
        wake.yield()
    }

    /// Forgets connection `id` and what only it was waiting for; returns whether the broker had accepted it.
    mutating func connectionEnded(id: Int) -> Bool {
        guard let ended = connection, ended.id == id else { return false }
        ended.wake.finish()
        connection = nil
        awaitingAcknowledgement = [:]
        return ended.isLive
    }

    func isLive(connection id: Int) -> Bool {
        connection?.id == id && connection?.isLive == true
    }

    /// Everything connection `id` should write now: its outbound packets, then (when live) the
    /// queue in order, as far as packet identifiers allow.
    mutating func takeOutbound(connection id: Int) -> [MQTTPacket] {
        guard let current = connection, current.id == id else { return [] }
        var packets = current.outbound
        connection?.outbound = []
        if current.isLive {
            var taken = 0
            for queued in queue {
                if queued.message.qos == .atMostOnce {
                    packets.append(.publish(queued.message, packetID: nil, dup: false))
                } else {
                    guard inFlight.count < Self.maximumMessagesInFlight, let packetID = allocatePacketID() else { break }
                    inFlight[packetID] = queued
                    packets.append(.publish(queued.message, packetID: packetID, dup: false))
                }
                taken += 1
            }
            queue.removeFirst(taken)
        }
        statistics.messagesSent += packets.count { $0.kind == .publish }
        notifyFlushWatchers()
        return packets
    }

    /// Takes in a packet read on connection `id`.
    mutating func receive(_ packet: MQTTPacket, connection id: Int, now: ContinuousClock.Instant) -> Reaction {
        guard let current = connection, current.id == id else { return .none }
        connection?.lastReceived = now
        switch packet {
        case .connack(let sessionPresent, let returnCode):
            guard !current.isLive else { return .close(reason: "unexpected second CONNACK") }
            guard returnCode == 0 else {
                return .close(reason: "connection refused: \(MQTTPacket.connectReturnCodeDescription(returnCode))")
            }
            accepted()
            return .connected(sessionPresent: sessionPresent)
        case _ where !current.isLive:
            return .close(reason: "expected CONNACK, received \(packet.kind)")
        case .publish(let message, let packetID, _):
            statistics.messagesReceived += 1
            if let packetID {
                connection?.outbound.append(.puback(packetID: packetID))
                current.wake.yield()
            }
            return .deliver(message)
        case .puback(let packetID):
            if inFlight.removeValue(forKey: packetID) != nil {
                if !queue.isEmpty { current.wake.yield() }
            } else if case .retained(let topic, let version) = awaitingAcknowledgement[packetID] {
                awaitingAcknowledgement[packetID] = nil
                if let value = retained[topic], value.version == version {
                    retained[topic]?.acknowledged = true
                    if value.payload.isEmpty { retained[topic] = nil }
                }
            }
            notifyFlushWatchers()
            return .none
        case .suback(let packetID, let returnCodes):
            guard case .subscribe(let filters) = awaitingAcknowledgement[packetID] else { return .none }
            awaitingAcknowledgement[packetID] = nil
            let refused = zip(filters, returnCodes).filter { $0.1 == 0x80 }.map(\.0)
            return refused.isEmpty ? .none : .subscriptionsRefused(refused)
        case .unsuback(let packetID):
            if case .unsubscribe = awaitingAcknowledgement[packetID] { awaitingAcknowledgement[packetID] = nil }
            return .none
        case .pingresp:
            return .none
        case .connect, .subscribe, .unsubscribe, .pingreq, .disconnect:
            return .close(reason: "unexpected \(packet.kind) from the broker")
        }
    }

    /// Queues a PINGREQ on a live connection `id`; returns how long the broker has been silent
    /// (nil once the connection is gone).
    mutating func keepAliveTick(connection id: Int, now: ContinuousClock.Instant) -> Duration? {
        guard let current = connection, current.id == id else { return nil }
        if current.isLive {
            connection?.outbound.append(.pingreq)
            current.wake.yield()
        }
        return current.lastReceived.duration(to: now)
    }

    // MARK: Internals

    /// CONNACK 0: subscriptions, then retained state, then QoS 1 messages still unacknowledged
    /// (as duplicates); the queue follows in ``takeOutbound(connection:)``.
    private mutating func accepted() {
        connection?.isLive = true
        statistics.connects += 1
        let all = subscriptions.sorted { $0.key < $1.key }.map { MQTTSubscription(filter: $0.key, qos: $0.value) }
        if !all.isEmpty {
            request(.subscribe(all.map(\.filter))) { .subscribe(packetID: $0, subscriptions: all) }
        }
        for (topic, value) in retained.sorted(by: { $0.key < $1.key }) {
            retained[topic]?.acknowledged = false
            publishRetained(topic: topic, value: value)
        }
        for (packetID, queued) in inFlight.sorted(by: { $0.value.sequence < $1.value.sequence }) {
            connection?.outbound.append(.publish(queued.message, packetID: packetID, dup: true))
        }
        connection?.wake.yield()
    }

    private mutating func publishRetained(topic: String, value: RetainedValue) {
        let message = MQTTMessage(topic: topic, payload: value.payload, qos: .atLeastOnce, retain: true)
        request(.retained(topic: topic, version: value.version)) { .publish(message, packetID: $0, dup: false) }
    }

    /// Sends a packet that needs an identifier, if the connection is live; otherwise the next
    /// CONNACK covers it.
    private mutating func request(_ acknowledgement: Acknowledgement, _ packet: (UInt16) -> MQTTPacket) {
        guard let current = connection, current.isLive, let packetID = allocatePacketID() else { return }
        awaitingAcknowledgement[packetID] = acknowledgement
        connection?.outbound.append(packet(packetID))
        current.wake.yield()
    }

    /// The next identifier in 1...65535, wrapping, that nothing is waiting on.
    private mutating func allocatePacketID() -> UInt16? {
        guard inFlight.count + awaitingAcknowledgement.count < Int(UInt16.max) else { return nil }
        while true {
            let packetID = nextPacketID
            nextPacketID = packetID == .max ? 1 : packetID + 1
            if inFlight[packetID] == nil && awaitingAcknowledgement[packetID] == nil { return packetID }
        }
    }

    private func notifyFlushWatchers() {
        guard !flushWatchers.isEmpty, isFlushed else { return }
        for watcher in flushWatchers.values { watcher.yield() }
    }

    private mutating func takeSequence() -> UInt64 {
        defer { nextSequence += 1 }
        return nextSequence
    }
}
