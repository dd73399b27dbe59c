import Foundation
import MeshBusModel
import Synchronization
import ZeroMQ

/// A typed client of one MeshBus broker: its events as an `AsyncStream`, its commands as
/// async calls with typed results.
///
/// One thread owns both libzmq sockets (a SUB for events, a DEALER for commands), as libzmq
/// requires; everything else talks to it through a mailbox. Commands are matched to their
/// replies by an id of the client's own, so many can be in flight from many tasks at once.
/// Call ``close()`` when done.
public final class MeshBusClient: Sendable {
    /// How to reach and use a broker beyond its two endpoints.
    public struct Options: Sendable {
        /// Topic prefixes to subscribe to; `""` is everything.
        public var subscriptions: [String] = [""]
        /// A command without a reply in this time fails with ``MeshBusClientError/timeout(command:)``.
        public var commandTimeout: Duration = .seconds(10)
        /// Events held for a slow reader; past it new events are dropped, which shows as a
        /// `seq` gap that ``MeshBusFeed`` repairs.
        public var eventBuffer: Int = 100_000
        /// CURVE keys, for a broker that has `security.curve` set.
        public var curve: CurveKeys?

        public init() {}
    }

    /// The keys a client needs for a CURVE broker (Z85 text).
    public struct CurveKeys: Sendable {
        /// The broker's public key: the public half of its `security.curve` key pair, as `meshbus keygen` printed it.
        public var serverPublicKey: String
        /// This client's key pair (`meshbus keygen`); its public key must be listed by the broker.
        public var publicKey: String
        public var secretKey: String

        public init(serverPublicKey: String, publicKey: String, secretKey: String) {
            self.serverPublicKey = serverPublicKey
            self.publicKey = publicKey
            self.secretKey = secretKey
        }
    }

    /// Every event the subscriptions match, in the order the broker published them.
    public let events: AsyncStream<MeshBusEvent>

    private let context: ZMQContext
    private let thread: ZMQSocketThread
    private let outgoing: ZMQMailbox<(id: String, frame: [UInt8])>
    private let closed = Atomic(false)
    private let pending: PendingCalls
    private let timeout: Duration

    /// Connects to a broker's PUB (`events`) and ROUTER (`commands`) endpoints. libzmq connects
    /// in the background and reconnects by itself, so this succeeds before the broker is up.
    public init(events: String = "tcp://127.0.0.1:7710", commands: String = "tcp://127.0.0.1:7711", options: Options = Options()) throws {
        let context = try ZMQContext()
        let wakeup = try ZMQWakeup()
        let outgoing = ZMQMailbox<(id: String, frame: [UInt8])>(wakeup: wakeup)
        let pending = PendingCalls()
        let (stream, continuation) = AsyncStream.makeStream(of: MeshBusEvent.self, bufferingPolicy: .bufferingOldest(options.eventBuffer))
        do {
            (thread, _) = try ZMQSocketThread.start(name: "meshbus-client", wakeup: wakeup) { thread, ready in
                defer {
                    continuation.finish()
                    pending.close()
                }
                let sub = try ZMQSocket(context: context, type: .sub)
                let dealer = try ZMQSocket(context: context, type: .dealer)
                defer {
                    sub.close()
                    dealer.close()
                }
                for socket in [sub, dealer] {
                    try socket.setLinger(milliseconds: 0)
                    if let curve = options.curve {
                        try socket.setCurveClient(serverKey: Array(curve.serverPublicKey.utf8), publicKey: Array(curve.publicKey.utf8), secretKey: Array(curve.secretKey.utf8))
                    }
                }
                try sub.setReceiveHighWaterMark(100_000)
                // A command waits in this client (until its timeout) while no broker is
                // connected, never in a libzmq queue that would deliver it, stale, later.
                try dealer.setImmediate(true)
                for prefix in options.subscriptions { try sub.subscribe(prefix) }
                try sub.connect(events)
                try dealer.connect(commands)
                ready(())
                try Self.serve(thread: thread, sub: sub, dealer: dealer, outgoing: outgoing, pending: pending, events: continuation)
            }
        } catch {
            context.terminate()
            throw error
        }
        self.context = context
        self.outgoing = outgoing
        self.pending = pending
        self.events = stream
        self.timeout = options.commandTimeout
    }

    /// Fails the commands still waiting, ends ``events`` and closes the sockets. Calling it
    /// again does nothing.
    public func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pending.close()
        await thread.stop()
        context.terminate()
    }

    // MARK: Commands

    /// Which broker answers; its id changes when the broker restarts.
    public func ping() async throws -> MeshBus.Ping {
        try await call(["cmd": "ping"], as: MeshBus.Ping.self)
    }

    /// Every slot's link and queue, by slot name.
    public func status() async throws -> [String: MeshBus.SlotStatus] {
        struct Result: Decodable { var slots: [String: MeshBus.SlotStatus] }
        return try await call(["cmd": "status"], as: Result.self).slots
    }

    /// A slot's node DB, by node id (`!hex`).
    public func nodes(slot: String) async throws -> [String: MeshBus.Node] {
        struct Result: Decodable { var nodes: [String: MeshBus.Node] }
        return try await call(["cmd": "nodes", "slot": slot], as: Result.self).nodes
    }

    /// A slot's node DB and radio with the `seq` they are current at: subscribe first, then
    /// snapshot, then apply events with a greater seq.
    public func snapshot(slot: String) async throws -> MeshBus.Snapshot {
        try await call(["cmd": "snapshot", "slot": slot], as: MeshBus.Snapshot.self)
    }

    /// The slot's events after `sinceSeq` that the broker still holds, one page of them
    /// (`complete` false: ask again from the last one's seq). Throws a ``MeshBusError`` with
    /// code `gap_too_old` when the broker no longer holds them all.
    public func replay(slot: String, sinceSeq: UInt64) async throws -> (events: [MeshBusEvent], complete: Bool) {
        let data = try await call(json: ["cmd": "replay", "slot": slot, "sinceSeq": sinceSeq])
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let events = object["events"] as? [[String: Any]]
        else { throw MeshBusClientError.malformedReply(command: "replay") }
        let parsed = try events.map { event in
            guard let topic = event["topic"] as? String, let envelope = event["envelope"],
                  let parsed = MeshBusEvent(
                      routingTopic: topic, json: try JSONSerialization.data(withJSONObject: envelope),
                      packetBytes: (event["raw"] as? String).flatMap { Data(base64Encoded: $0) }.map(Array.init)
                  )
            else { throw MeshBusClientError.malformedReply(command: "replay") }
            return parsed
        }
        return (parsed, object["complete"] as? Bool ?? true)
    }

    /// Queues a text for the slot's radio. `to` is `^all` (the default), `!hex` or a node number.
    public func sendText(
        _ text: String, slot: String, to: String? = nil, channel: Int? = nil, wantAck: Bool = false,
        replyId: UInt32? = nil, ttlSeconds: Double? = nil
    ) async throws -> MeshBus.SendReceipt {
        var request: [String: Any] = ["cmd": "sendText", "slot": slot, "text": text, "wantAck": wantAck]
        request["to"] = to
        request["channel"] = channel
        request["replyId"] = replyId
        request["ttlSeconds"] = ttlSeconds
        return try await call(request, as: MeshBus.SendReceipt.self)
    }

    /// Closes the slot's link and opens it again.
    public func reconnect(slot: String) async throws {
        _ = try await call(json: ["cmd": "reconnect", "slot": slot])
    }

    /// Any command, as a JSON object with `cmd`: returns the reply's `result` as JSON, or
    /// throws the broker's error as a ``MeshBusError``. The client sets the request's `id`.
    public func call(request: Data) async throws -> Data {
        guard let object = try? JSONSerialization.jsonObject(with: request) as? [String: Any] else {
            throw MeshBusError(code: "bad_request", message: "a request is a JSON object")
        }
        return try await call(json: object)
    }

    private func call<Result: Decodable>(_ request: [String: Any], as type: Result.Type) async throws -> Result {
        let data = try await call(json: request)
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw MeshBusClientError.malformedReply(command: request["cmd"] as? String ?? "?")
        }
    }

    private func call(json request: [String: Any]) async throws -> Data {
        let command = request["cmd"] as? String ?? "?"
        let id = pending.nextID()
        var request = request
        request["id"] = id
        let frame = Array(try JSONSerialization.data(withJSONObject: request))
        let deadline = ContinuousClock.now.advanced(by: timeout)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Data, any Error>) in
                if pending.register(id: id, command: command, deadline: deadline, continuation: continuation) {
                    outgoing.post((id, frame))
                }
            }
        } onCancel: {
            pending.fail(id: id, with: CancellationError())
        }
    }

    // MARK: The socket thread

    private static func serve(
        thread: ZMQSocketThread, sub: ZMQSocket, dealer: ZMQSocket, outgoing: ZMQMailbox<(id: String, frame: [UInt8])>,
        pending: PendingCalls, events: AsyncStream<MeshBusEvent>.Continuation
    ) throws {
        // Requests not yet taken by a connected broker, oldest first; sent once the dealer
        // can take them (it cannot while no broker is connected) or dropped when their
        // command gives up.
        var unsent: [(id: String, frame: [UInt8])] = []
        while !thread.isStopRequested {
            // Sleeps until a socket has something, the dealer can take a waiting request, async
            // code posts work, or the earliest command deadline passes: no periodic wakeups.
            var items: [ZMQPoller.Item] = [.socket(sub), .socket(dealer), .descriptor(thread.wakeup.descriptor)]
            if !unsent.isEmpty { items.append(.writable(dealer)) }
            let timeout = pending.nextDeadline.map { deadline in
                let (seconds, attoseconds) = ContinuousClock.now.duration(to: deadline).components
                return Int(max(0, min(seconds, 86_400) * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
            } ?? -1
            let readable = try ZMQPoller(items).poll(timeoutMilliseconds: timeout)
            if readable[2] { thread.wakeup.drain() }
            unsent += outgoing.takeAll()
            unsent.removeAll { !pending.isWaiting($0.id) }
            while let next = unsent.first, try dealer.send(next.frame, dontWait: true) {
                unsent.removeFirst()
            }
            while let frames = try sub.receiveMultipart(dontWait: true) {
                if let event = MeshBusEvent(frames: frames) { events.yield(event) }
            }
            while let frames = try dealer.receiveMultipart(dontWait: true) {
                if let reply = frames.last { pending.resolve(reply: reply) }
            }
            pending.expire(now: .now)
        }
    }
}

/// Commands waiting for their replies, matched by the client's own request id.
private final class PendingCalls: Sendable {
    private struct Waiter {
        var command: String
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Data, any Error>
    }

    private let state = Mutex<(nextID: UInt64, waiting: [String: Waiter], closed: Bool)>((1, [:], false))

    func nextID() -> String {
        state.withLock { state in
            defer { state.nextID += 1 }
            return "mbc-\(state.nextID)"
        }
    }

    /// Holds the continuation until its reply; false (and resumed with `closed`) once closed.
    func register(id: String, command: String, deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Data, any Error>) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.waiting[id] = Waiter(command: command, deadline: deadline, continuation: continuation)
            return true
        }
        guard accepted else {
            continuation.resume(throwing: MeshBusClientError.closed)
            return false
        }
        // A cancellation handler that ran before the insert found nothing to fail.
        if Task.isCancelled {
            fail(id: id, with: CancellationError())
            return false
        }
        return true
    }

    /// The soonest deadline of a command still waiting, nil if none waits.
    var nextDeadline: ContinuousClock.Instant? {
        state.withLock { $0.waiting.values.lazy.map(\.deadline).min() }
    }

    func isWaiting(_ id: String) -> Bool {
        state.withLock { $0.waiting[id] != nil }
    }

    func fail(id: String, with error: any Error) {
        state.withLock { $0.waiting.removeValue(forKey: id) }?.continuation.resume(throwing: error)
    }

    /// Resumes the command a reply frame answers; replies to nobody (timed out) are ignored.
    func resolve(reply: [UInt8]) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
              let id = object["id"] as? String,
              let waiter = state.withLock({ $0.waiting.removeValue(forKey: id) })
        else { return }
        guard object["ok"] as? Bool == true else {
            let error = object["error"] as? [String: Any]
            let code = error?["code"] as? String ?? "internal"
            waiter.continuation.resume(throwing: MeshBusError(code: code, message: error?["message"] as? String ?? ""))
            return
        }
        let result = object["result"] ?? [String: Any]()
        if let data = try? JSONSerialization.data(withJSONObject: result, options: .fragmentsAllowed) {
            waiter.continuation.resume(returning: data)
        } else {
            waiter.continuation.resume(throwing: MeshBusClientError.malformedReply(command: waiter.command))
        }
    }

    func expire(now: ContinuousClock.Instant) {
        let expired = state.withLock { state -> [Waiter] in
            let ids = state.waiting.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { state.waiting.removeValue(forKey: $0) }
        }
        for waiter in expired { waiter.continuation.resume(throwing: MeshBusClientError.timeout(command: waiter.command)) }
    }

    /// Refuses new commands and fails the waiting ones.
    func close() {
        let waiters = state.withLock { state -> [Waiter] in
            state.closed = true
            defer { state.waiting = [:] }
            return Array(state.waiting.values)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: MeshBusClientError.closed) }
    }
}

/// An error the broker answered with: its code (`unknown_slot`, `gap_too_old`, …) and message.
public struct MeshBusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One of the contract's codes: `bad_request`, `unknown_slot`, `text_too_long`, `queue_full`, …
    public let code: String
    /// What went wrong, for a human.
    public let message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// A command that got no usable answer from the broker.
public enum MeshBusClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No reply within ``MeshBusClient/Options/commandTimeout``: the broker is down or stalled.
    case timeout(command: String)
    /// A reply that does not have the shape the command's result has.
    case malformedReply(command: String)
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case .timeout(let command): "no reply to \(command) in time (is the broker running?)"
        case .malformedReply(let command): "the reply to \(command) is not what MeshBus sends"
        case .closed: "the client is closed"
        }
    }
}
