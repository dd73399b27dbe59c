import EventLoopTime
import Logging
import MQTTWire
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// What happened to the connection, for logs and tests.
public enum MQTTClientEvent: Sendable, Equatable {
    /// The broker accepted the connection (CONNACK 0).
    case connected(sessionPresent: Bool)
    /// A connection, or an attempt at one, ended; `reason` says why.
    case disconnected(reason: String)
}

/// Counters since the client was created.
public struct MQTTStatistics: Sendable, Equatable {
    /// Connections the broker accepted.
    public internal(set) var connects = 0
    /// PUBLISH packets handed to a connection, re-sends and retained state included.
    public internal(set) var messagesSent = 0
    /// PUBLISH packets received.
    public internal(set) var messagesReceived = 0
    /// Messages dropped because the queue was over its limit.
    public internal(set) var dropped = 0
    /// Messages, retained values and filters refused up front for an invalid topic.
    public internal(set) var rejected = 0
}

/// An MQTT 3.1.1 client that keeps one connection to a broker up for as long as ``run()``
/// runs: it reconnects with backoff, and restores subscriptions, retained state and
/// unacknowledged messages after every reconnect. Clean sessions, QoS 0 and 1.
public final class MQTTClient: Sendable {
    /// Inbound PUBLISH messages (QoS 1 ones are PUBACKed). One consumer; the newest 10,000 are buffered.
    public let messages: AsyncStream<MQTTMessage>
    /// Connection events. One consumer; the newest 1,000 are buffered.
    public let events: AsyncStream<MQTTClientEvent>

    private let configuration: MQTTConfiguration
    private let logger: Logger
    private let group: any EventLoopGroup
    private let tlsContext: NIOSSLContext?
    private let state: Mutex<MQTTClientState>
    private let started = Atomic(false)
    private let messageSink: AsyncStream<MQTTMessage>.Continuation
    private let eventSink: AsyncStream<MQTTClientEvent>.Continuation

    /// A client for `configuration`; nothing happens until ``run()``. Throws when its TLS
    /// files cannot be used.
    public init(
        configuration: MQTTConfiguration,
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        self.configuration = configuration
        self.tlsContext = try configuration.tls?.makeContext()
        var logger = logger
        logger[metadataKey: "mqtt.broker"] = "\(configuration.host):\(configuration.port)"
        logger[metadataKey: "mqtt.client"] = "\(configuration.clientID)"
        self.logger = logger
        self.group = eventLoopGroup
        self.state = Mutex(MQTTClientState(queueLimit: configuration.queueLimit))
        (messages, messageSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        (events, eventSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1_000))
    }

    /// Counters: connects, messagesSent, messagesReceived, dropped (queue overflow), rejected.
    public var statistics: MQTTStatistics { state.withLock { $0.statistics } }

    /// Queues a message: sent now if connected, else held (bounded) and sent after the next
    /// CONNACK, in order. QoS 1 messages are kept until PUBACK and re-sent with DUP after a reconnect.
    public func publish(_ message: MQTTMessage) {
        guard MQTTTopic.isValid(message) else {
            reject("message", message.topic)
            return
        }
        let dropped = state.withLock { $0.enqueue(message) }
        if dropped > 0 { logger.debug("queue full, dropped the oldest message", metadata: ["mqtt.dropped": "\(dropped)"]) }
    }

    /// Retained state: published now (QoS 1, retain) and again after every reconnect, so a broker
    /// that restarted without persistence gets it back. An empty payload clears the topic once and forgets it.
    public func retain(topic: String, payload: [UInt8]) {
        guard MQTTTopic.isValid(MQTTMessage(topic: topic, payload: payload)) else {
            reject("retained value", topic)
            return
        }
        state.withLock { $0.retain(topic: topic, payload: payload) }
    }

    /// Remembered and (re)subscribed on every connect (clean session).
    public func subscribe(_ filter: String, qos: MQTTQoS) {
        guard MQTTTopic.isValidFilter(filter) else {
            reject("topic filter", filter)
            return
        }
        state.withLock { $0.subscribe(filter, qos: qos) }
    }

    /// Forgets a filter given to ``subscribe(_:qos:)``, unsubscribing now if connected.
    public func unsubscribe(_ filter: String) {
        state.withLock { $0.unsubscribe(filter) }
    }

    /// Waits, at most `timeout`, until everything handed in so far is with the broker (QoS 1
    /// messages and retained state acknowledged, QoS 0 ones handed to the connection); e.g. before
    /// stopping. True if it is.
    @discardableResult
    public func flush(within timeout: Duration) async -> Bool {
        let (progress, watcher) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { $0.addFlushWatcher(watcher) }
        defer { state.withLock { $0.removeFlushWatcher(id) } }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in progress where self.state.withLock({ $0.isFlushed }) { return true }
                return false
            }
            group.addTask {
                try? await EventLoopClock(eventLoop: self.group.any()).sleep(for: timeout)
                return false
            }
            let flushed = await group.next() ?? false
            group.cancelAll()
            return flushed
        }
    }

    /// Connects and keeps reconnecting (backoff with jitter) until the calling task is cancelled;
    /// then sends DISCONNECT (if the broker acknowledged everything; see ``flush(within:)``) and
    /// returns. Nothing a connection does can end this loop. Call once.
    public func run() async {
        await run(clock: EventLoopClock(eventLoop: group.any()), generator: SystemRandomNumberGenerator())
    }

    /// ``run()`` with the waits between attempts on `clock` and their jitter from `generator`
    /// (a mock clock and a seeded generator in tests). An ``MQTTReconnectMachine`` decides;
    /// this carries its actions out.
    func run<C: Clock, G: RandomNumberGenerator & Sendable>(clock: C, generator: G) async where C.Duration == Duration {
        precondition(!started.exchange(true, ordering: .relaxed), "MQTTClient.run() called twice")
        if configuration.password != nil && configuration.username == nil {
            logger.warning("a password without a user name is not allowed by MQTT 3.1.1; not sending it")
        }
        var machine = MQTTReconnectMachine<C.Instant, G>(
            initialDelay: configuration.initialReconnectDelay, maximumDelay: configuration.maximumReconnectDelay, generator: generator
        )
        var actions = machine.handle(.start)
        loop: while let action = actions.first, !Task.isCancelled {
            switch action {
            case .connect(let attempt):
                let (reason, wasLive) = await connection(attempt: attempt)
                eventSink.yield(.disconnected(reason: reason))
                actions = machine.handle(.connectionEnded(attempt: attempt, reason: reason, wasLive: wasLive, now: clock.now))
            case .retry(let reason, let wasLive, let delay, let retryAt):
                logger.warning(wasLive ? "connection lost" : "connect failed", metadata: ["mqtt.reason": "\(reason)", "mqtt.retryIn": "\(delay)"])
                guard (try? await clock.sleep(until: retryAt, tolerance: nil)) != nil else { break loop }
                actions = machine.handle(.retryDue(now: clock.now))
            case .wait(let retryAt):
                guard (try? await clock.sleep(until: retryAt, tolerance: nil)) != nil else { break loop }
                actions = machine.handle(.retryDue(now: clock.now))
            }
        }
        logger.info("stopped")
        messageSink.finish()
        eventSink.finish()
    }

    // MARK: One connection

    /// Runs one connection to its end: connect, then a reader, a writer, the CONNACK deadline
    /// and keep alive as children; the first child to give a reason ends it. Never throws.
    private func connection(attempt: Int) async -> (reason: String, wasLive: Bool) {
        let deadline = ContinuousClock.now + configuration.connectTimeout
        let channel: NIOAsyncChannel<MQTTPacket, MQTTPacket>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: configuration.host, port: configuration.port) {
                    [maximumPacketSize = configuration.maximumPacketSize, tls = configuration.tls, tlsContext, host = configuration.host] channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls, let tlsContext {
                            try channel.pipeline.syncOperations.addHandler(try tls.handler(context: tlsContext, host: host))
                        }
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(MQTTDecoder(maximumPacketSize: maximumPacketSize)),
                            MessageToByteHandler(MQTTEncoder())
                        )
                        return try NIOAsyncChannel<MQTTPacket, MQTTPacket>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            return ("connect failed: \(MQTTTLS.describe(error) ?? "\(error)")", false)
        }
        let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let connect = MQTTPacket.connect(
            MQTTConnect(
                clientID: configuration.clientID,
                cleanSession: true,
                keepAliveSeconds: configuration.keepAliveSeconds,
                username: configuration.username,
                password: configuration.username == nil ? nil : configuration.password.map { Array($0.utf8) },
                will: configuration.will
            )
        )
        state.withLock { $0.connectionStarted(id: attempt, connect: connect, wake: wake, now: .now) }
        var reason: String
        do {
            reason = try await channel.executeThenClose { inbound, outbound in
                let reason = await withTaskGroup(of: String?.self) { group in
                    group.addTask { await self.read(inbound, connection: attempt) }
                    group.addTask { await self.write(outbound, wakeups: wakeups, connection: attempt) }
                    group.addTask { await self.awaitConnack(until: deadline, connection: attempt) }
                    group.addTask { await self.keepAlive(connection: attempt) }
                    var reason = "connection ended"
                    while let result = await group.next() {
                        if let result {
                            reason = result
                            break
                        }
                    }
                    group.cancelAll()
                    return reason
                }
                // A clean DISCONNECT cancels the will, so it is sent only when the broker has
                // acknowledged everything; otherwise the connection just closes and the will stands.
                if Task.isCancelled && state.withLock({ $0.isLive(connection: attempt) && $0.isFlushed }) {
                    await Self.sendDisconnect(on: channel.channel)
                }
                return reason
            }
        } catch {
            reason = "\(error)"
        }
        if Task.isCancelled { reason = "client stopped" }
        return (reason, state.withLock { $0.connectionEnded(id: attempt) })
    }

    /// Reads until the connection ends; returns why it ended.
    private func read(_ inbound: NIOAsyncChannelInboundStream<MQTTPacket>, connection: Int) async -> String {
        do {
            for try await packet in inbound {
                switch state.withLock({ $0.receive(packet, connection: connection, now: .now) }) {
                case .none:
                    break
                case .connected(let sessionPresent):
                    logger.info("connected", metadata: ["mqtt.sessionPresent": "\(sessionPresent)"])
                    eventSink.yield(.connected(sessionPresent: sessionPresent))
                case .deliver(let message):
                    messageSink.yield(message)
                case .subscriptionsRefused(let filters):
                    logger.error("the broker refused subscriptions", metadata: ["mqtt.filters": "\(filters)"])
                case .close(let reason):
                    return reason
                }
            }
            return "connection closed by the broker"
        } catch {
            return MQTTTLS.describe(error) ?? "\(error)"
        }
    }

    /// Writes whatever the state has for this connection each time it is woken; returns a
    /// reason only if a write fails.
    private func write(_ outbound: NIOAsyncChannelOutboundWriter<MQTTPacket>, wakeups: AsyncStream<Void>, connection: Int) async -> String? {
        for await _ in wakeups {
            let packets = state.withLock { $0.takeOutbound(connection: connection) }
            guard !packets.isEmpty else { continue }
            do {
                try await outbound.write(contentsOf: packets)
            } catch {
                return "write failed: \(error)"
            }
        }
        return nil
    }

    /// Ends the connection if the broker has not accepted it by `deadline`.
    private func awaitConnack(until deadline: ContinuousClock.Instant, connection: Int) async -> String? {
        do {
            try await EventLoopClock(eventLoop: group.any()).sleep(until: deadline)
        } catch {
            return nil
        }
        return state.withLock { $0.isLive(connection: connection) } ? nil : "no CONNACK within \(configuration.connectTimeout)"
    }

    /// Pings every half keep alive; ends the connection once the broker was silent for 1.5 keep alives.
    private func keepAlive(connection: Int) async -> String? {
        let interval = configuration.keepAlive / 2
        guard interval > .zero else { return nil }
        let limit = configuration.keepAlive * 1.5
        let clock = EventLoopClock(eventLoop: group.any())
        while true {
            do {
                try await clock.sleep(for: interval)
            } catch {
                return nil
            }
            guard let silence = state.withLock({ $0.keepAliveTick(connection: connection, now: .now) }) else { return nil }
            if silence > limit { return "keep alive timeout: nothing received for \(silence)" }
        }
    }

    /// Sends DISCONNECT on a cancelled connection: through the channel itself, since writes of a
    /// cancelled task fail, and bounded by a second so a stalled broker cannot hold ``run()``.
    private static func sendDisconnect(on channel: any Channel) async {
        let bound = channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        try? await channel.writeAndFlush(MQTTPacket.disconnect)
        bound.cancel()
    }

    private func reject(_ what: String, _ topic: String) {
        logger.error("invalid topic, \(what) not accepted", metadata: ["mqtt.topic": "\(topic)"])
        state.withLock { $0.statistics.rejected += 1 }
    }
}

extension TimeAmount {
    fileprivate init(_ duration: Duration) {
        self = .nanoseconds(Int64((duration / .nanoseconds(1)).rounded()))
    }
}
