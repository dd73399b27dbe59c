import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A client connection to a message bus (the system bus, for BlueZ): method calls with typed
/// error replies, signals as async sequences, and objects exported for the bus to call (a
/// pairing agent).
///
/// One event loop owns the socket: replies, signals and calls to exported objects are
/// dispatched there, under one lock around the connection's tables, and never while it is held.
public final class DBusConnection: Sendable {
    /// The unique name the bus gave this connection (`:1.42`).
    public let uniqueName: String
    private let channel: any Channel
    private let dispatch: Dispatch

    private init(uniqueName: String, channel: any Channel, dispatch: Dispatch) {
        self.uniqueName = uniqueName
        self.channel = channel
        self.dispatch = dispatch
    }

    /// Connects and authenticates (SASL EXTERNAL, the process's uid), runs `body`, and closes
    /// the connection however `body` ends.
    public static func withConnection<Result: Sendable>(
        to address: DBusAddress,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (DBusConnection) async throws -> Result
    ) async throws -> Result {
        let connection = try await connect(to: address, group: group)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    private static func connect(to address: DBusAddress, group: any EventLoopGroup) async throws -> DBusConnection {
        let dispatch = Dispatch()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(DBusFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(DBusChannelHandler(dispatch: dispatch))
                    }
                }
                .connect(unixDomainSocketPath: address.socketPath)
                .get()
        } catch {
            throw DBusError(name: DBusError.disconnected, message: "cannot connect to \(address): \(error)")
        }
        do {
            // SASL: a NUL byte, then EXTERNAL with the uid in hex-encoded decimal digits.
            let uid = String(getuid()).utf8.map { byte in String(byte, radix: 16) }.joined()
            let reply = try await dispatch.authenticate(timeout: .seconds(10), on: channel) {
                channel.writeAndFlush(ByteBuffer(bytes: [0] + Array("AUTH EXTERNAL \(uid)\r\n".utf8)), promise: nil)
            }
            guard reply.hasPrefix("OK ") else {
                throw DBusError(name: DBusError.authFailed, message: "the bus refused EXTERNAL authentication: \(reply)")
            }
            try await channel.writeAndFlush(ByteBuffer(string: "BEGIN\r\n"))
            let pending = DBusConnection(uniqueName: "", channel: channel, dispatch: dispatch)
            let hello = try await pending.call(
                .methodCall(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "Hello")
            )
            guard let name = hello.first?.string else {
                throw DBusError(name: DBusError.failed, message: "Hello returned no unique name")
            }
            return DBusConnection(uniqueName: name, channel: channel, dispatch: dispatch)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Closes the connection: calls still waiting fail with `Disconnected`, signal streams end.
    public func close() async {
        try? await channel.close()
        dispatch.closed()
    }

    // MARK: Calls

    /// Calls a method and returns the reply's body. Throws ``DBusError`` for an error reply,
    /// no reply within `timeout` (`NoReply`) or a closed connection (`Disconnected`), and
    /// `CancellationError` when the task is cancelled.
    @discardableResult
    public func call(_ message: DBusMessage, timeout: Duration = .seconds(25)) async throws -> [DBusValue] {
        precondition(message.kind == .methodCall, "call takes a method call")
        let serial = dispatch.nextSerial()
        var message = message
        message.serial = serial
        let bytes = ByteBuffer(bytes: message.encoded())
        let member = message.member ?? ""
        let reply = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<DBusMessage, any Error>) in
                let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanoseconds))) { [dispatch] in
                    dispatch.fail(serial, DBusError(name: DBusError.noReply, message: "no reply to \(member) within \(timeout)"))
                }
                guard dispatch.await(serial, continuation: continuation, timer: timer) else { return }
                channel.writeAndFlush(bytes).whenFailure { [dispatch] error in
                    dispatch.fail(serial, DBusError(name: DBusError.disconnected, message: "write failed: \(error)"))
                }
            }
        } onCancel: {
            dispatch.fail(serial, CancellationError())
        }
        if reply.kind == .error { throw DBusError(reply: reply) }
        return reply.body
    }

    /// Sends a message that wants no reply (a signal, a reply, a call marked no-reply).
    public func send(_ message: DBusMessage) {
        var message = message
        message.serial = dispatch.nextSerial()
        if message.kind == .methodCall { message.noReplyExpected = true }
        channel.writeAndFlush(ByteBuffer(bytes: message.encoded()), promise: nil)
    }

    // MARK: Signals

    /// The signals `rule` matches, from now on, until the stream is dropped or the connection
    /// closes. The local subscription starts before the bus is asked, so nothing that follows
    /// the `AddMatch` reply is missed.
    public func signals(_ rule: DBusMatchRule) async throws -> AsyncStream<DBusMessage> {
        let (stream, continuation) = AsyncStream<DBusMessage>.makeStream()
        let id = dispatch.subscribe(rule, continuation)
        continuation.onTermination = { [weak self] _ in
            guard let self, self.dispatch.unsubscribe(id) else { return }
            self.send(Self.busCall("RemoveMatch", rule.description))
        }
        do {
            try await call(Self.busCall("AddMatch", rule.description))
        } catch {
            continuation.finish()
            throw error
        }
        return stream
    }

    private static func busCall(_ member: String, _ argument: String) -> DBusMessage {
        .methodCall(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: member, body: [.string(argument)])
    }

    // MARK: Exported objects

    /// Answers method calls to `path` with `handler`, on the connection's event loop (keep it
    /// short; it must not block). Replaces an earlier handler for the path.
    public func export(_ path: String, handler: @escaping @Sendable (DBusMessage) -> DBusReply) {
        dispatch.export(path, handler)
    }

    public func unexport(_ path: String) {
        dispatch.export(path, nil)
    }
}

/// How an exported object answers a call.
public enum DBusReply: Sendable {
    case success([DBusValue])
    case error(name: String, message: String)
}

/// The connection's tables: calls awaiting replies, signal subscriptions, exported objects.
/// Mutated under one lock; continuations are resumed and handlers run outside it.
private final class Dispatch: Sendable {
    private struct Waiting {
        let continuation: CheckedContinuation<DBusMessage, any Error>
        let timer: Scheduled<Void>
    }

    private struct Tables {
        var serial: UInt32 = 0
        var waiting: [UInt32: Waiting] = [:]
        /// Serials whose call failed (cancelled) before it started waiting.
        var failedEarly: [UInt32: any Error] = [:]
        var subscriptions: [Int: (rule: DBusMatchRule, continuation: AsyncStream<DBusMessage>.Continuation)] = [:]
        var nextSubscription = 0
        var objects: [String: @Sendable (DBusMessage) -> DBusReply] = [:]
        var authentication: CheckedContinuation<String, any Error>?
        var authLine: String?
        var isClosed = false
        var streamError: String?
    }

    private let tables = Mutex(Tables())

    func nextSerial() -> UInt32 {
        tables.withLock { tables in
            tables.serial = tables.serial == UInt32.max ? 1 : tables.serial + 1
            return tables.serial
        }
    }

    /// Registers a call's continuation; false when it already failed (and was resumed).
    func await(_ serial: UInt32, continuation: CheckedContinuation<DBusMessage, any Error>, timer: Scheduled<Void>) -> Bool {
        let early: (any Error)? = tables.withLock { tables in
            if let error = tables.failedEarly.removeValue(forKey: serial) { return error }
            if tables.isClosed { return DBusError(name: DBusError.disconnected, message: "the connection is closed") }
            tables.waiting[serial] = Waiting(continuation: continuation, timer: timer)
            return nil
        }
        guard let early else { return true }
        timer.cancel()
        continuation.resume(throwing: early)
        return false
    }

    func fail(_ serial: UInt32, _ error: any Error) {
        let waiting = tables.withLock { tables in
            guard let waiting = tables.waiting.removeValue(forKey: serial) else {
                if error is CancellationError { tables.failedEarly[serial] = error }
                return nil as Waiting?
            }
            return waiting
        }
        waiting?.timer.cancel()
        waiting?.continuation.resume(throwing: error)
    }

    func subscribe(_ rule: DBusMatchRule, _ continuation: AsyncStream<DBusMessage>.Continuation) -> Int {
        let (id, closed) = tables.withLock { tables in
            tables.nextSubscription += 1
            if !tables.isClosed { tables.subscriptions[tables.nextSubscription] = (rule, continuation) }
            return (tables.nextSubscription, tables.isClosed)
        }
        if closed { continuation.finish() }
        return id
    }

    /// Drops a subscription; true when it was still there (the bus's match is to be removed).
    func unsubscribe(_ id: Int) -> Bool {
        tables.withLock { $0.subscriptions.removeValue(forKey: id) != nil }
    }

    func export(_ path: String, _ handler: (@Sendable (DBusMessage) -> DBusReply)?) {
        tables.withLock { $0.objects[path] = handler }
    }

    func authenticate(timeout: Duration, on channel: any Channel, start: () -> Void) async throws -> String {
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanoseconds))) { [self] in
            authenticationEnded(.failure(DBusError(name: DBusError.authFailed, message: "no answer to AUTH within \(timeout)")))
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            let ready: String? = tables.withLock { tables in
                if let line = tables.authLine { return line }
                tables.authentication = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) } else { start() }
        }
    }

    private func authenticationEnded(_ result: Result<String, any Error>) {
        let waiter = tables.withLock { tables in
            defer { tables.authentication = nil }
            if case .success(let line) = result, tables.authentication == nil { tables.authLine = line }
            return tables.authentication
        }
        waiter?.resume(with: result)
    }

    // MARK: From the event loop

    func received(_ inbound: DBusInbound, on channel: any Channel) {
        switch inbound {
        case .authLine(let line):
            authenticationEnded(.success(line))
        case .message(let message):
            switch message.kind {
            case .methodReturn, .error:
                guard let serial = message.replySerial else { return }
                let waiting = tables.withLock { $0.waiting.removeValue(forKey: serial) }
                waiting?.timer.cancel()
                waiting?.continuation.resume(returning: message)
            case .signal:
                let subscribers = tables.withLock { tables in
                    tables.subscriptions.values.filter { $0.rule.matches(message) }.map(\.continuation)
                }
                for subscriber in subscribers { subscriber.yield(message) }
            case .methodCall:
                let reply = answer(message)
                guard !message.noReplyExpected else { return }
                var bytes = reply
                bytes.serial = nextSerial()
                channel.writeAndFlush(ByteBuffer(bytes: bytes.encoded()), promise: nil)
            }
        }
    }

    private func answer(_ call: DBusMessage) -> DBusMessage {
        if call.interface == "org.freedesktop.DBus.Peer", call.member == "Ping" {
            return .methodReturn(to: call)
        }
        guard let path = call.path, let handler = tables.withLock({ $0.objects[path] }) else {
            return .error(to: call, name: DBusError.unknownObject, message: "no object at \(call.path ?? "")")
        }
        switch handler(call) {
        case .success(let body): return .methodReturn(to: call, body: body)
        case .error(let name, let message): return .error(to: call, name: name, message: message)
        }
    }

    /// Why the bus's bytes could not be read, when that closed the connection.
    func brokenStream(_ error: any Error) {
        tables.withLock { tables in
            if tables.streamError == nil { tables.streamError = "\(error)" }
        }
    }

    /// The connection is gone: every waiter fails, every signal stream ends.
    func closed() {
        let (waiting, subscribers, authentication, why) = tables.withLock { tables in
            tables.isClosed = true
            defer {
                tables.waiting.removeAll()
                tables.subscriptions.removeAll()
                tables.authentication = nil
            }
            return (Array(tables.waiting.values), tables.subscriptions.values.map(\.continuation), tables.authentication, tables.streamError)
        }
        let error = DBusError(name: DBusError.disconnected, message: "the connection to the bus closed" + (why.map { ": \($0)" } ?? ""))
        for call in waiting {
            call.timer.cancel()
            call.continuation.resume(throwing: error)
        }
        for subscriber in subscribers { subscriber.finish() }
        authentication?.resume(throwing: error)
    }
}

/// Hands what the decoder produced to the dispatch tables; a decoding error closes the channel.
private final class DBusChannelHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = DBusInbound
    private let dispatch: Dispatch

    init(dispatch: Dispatch) {
        self.dispatch = dispatch
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        dispatch.received(unwrapInboundIn(data), on: context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        dispatch.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        dispatch.brokenStream(error)
        context.close(promise: nil)
    }
}

extension Duration {
    fileprivate var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
