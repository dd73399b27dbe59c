import CoreMetrics
import MeshBusModel
import MeshtasticProtocol
import ZeroMQ

/// One request taken off a ROUTER socket: the routing envelope to answer through, and the
/// body frames (one, in a well-formed request).
struct CommandRequest: Sendable {
    let socketIndex: Int
    /// The client's role under CURVE (from its admitted key); nil when CURVE is off, which
    /// trusts every local client fully.
    let role: ClientRole?
    /// The peer identity and, from REQ clients, the empty delimiter.
    let envelope: [[UInt8]]
    let body: [[UInt8]]

    /// Splits what a ROUTER received: identity, then (REQ) an empty delimiter, then the body.
    init(socketIndex: Int, frames: [[UInt8]], role: ClientRole? = nil) {
        self.socketIndex = socketIndex
        self.role = role
        let split = frames.count >= 2 && frames[1].isEmpty ? 2 : 1
        envelope = Array(frames.prefix(split))
        body = Array(frames.dropFirst(split))
    }
}

/// The ROUTER side: takes requests from REQ and DEALER clients and sends each its reply.
///
/// Its sockets live on one ``ZMQSocketThread``. Requests go out as an `AsyncStream`; replies
/// come back through a queue that wakes the thread. ROUTER_MANDATORY is on, so a reply to a
/// client that left is noticed (and dropped) rather than silently discarded by libzmq.
final class CommandServer: Sendable {
    private let thread: ZMQSocketThread
    private let replies: ZMQMailbox<(Int, [[UInt8]])>
    let endpoints: [String]
    let requests: AsyncStream<CommandRequest>

    init(context: ZMQContext, endpoints: [String], security: SecurityConfiguration) throws {
        let (requests, requestContinuation) = AsyncStream<CommandRequest>.makeStream(bufferingPolicy: .bufferingOldest(10_000))
        self.requests = requests
        let wakeup = try ZMQWakeup()
        let replies = ZMQMailbox<(Int, [[UInt8]])>(wakeup: wakeup)
        // Replies that could not be delivered because the client had gone, and requests
        // dropped because 10,000 were already waiting.
        let undeliverable = CoreMetrics.Counter(label: "meshbus_commands_dropped_total", dimensions: [("reason", "client_gone")])
        let backlogFull = CoreMetrics.Counter(label: "meshbus_commands_dropped_total", dimensions: [("reason", "backlog_full")])
        self.replies = replies
        (thread, self.endpoints) = try ZMQSocketThread.start(name: "meshbus-commands", wakeup: wakeup) { thread, ready in
            var sockets: [ZMQSocket] = []
            defer {
                requestContinuation.finish()
                for socket in sockets { socket.close() }
            }
            var bound: [String] = []
            for endpoint in endpoints {
                let socket = try ZMQSocket(context: context, type: .router)
                sockets.append(socket)
                try socket.setRouterMandatory(true)
                // Past this libzmq drops the peer; up to it a request too large gets a reply.
                try socket.setMaxMessageSize(CommandEnvelope.maxSocketMessageBytes)
                try socket.setLinger(milliseconds: 500)
                try security.apply(to: socket)
                try socket.bind(endpoint)
                bound.append(try socket.lastEndpoint)
            }
            ready(bound)
            let poller = ZMQPoller(sockets.map { .socket($0) } + [.descriptor(thread.wakeup.descriptor)])
            while !thread.isStopRequested {
                guard let readable = try? poller.poll(timeoutMilliseconds: -1) else { continue }
                for (index, socket) in sockets.enumerated() where readable[index] {
                    while let received = try? socket.receiveMultipart(dontWait: true, property: "User-Id") {
                        let role = security.curve == nil ? nil : ClientRole(rawValue: received.property ?? "") ?? .read
                        if case .dropped = requestContinuation.yield(CommandRequest(socketIndex: index, frames: received.frames, role: role)) {
                            backlogFull.increment()
                        }
                    }
                }
                if readable.last == true {
                    thread.wakeup.drain()
                    for (index, frames) in replies.takeAll() {
                        do {
                            try sockets[index].send(multipart: frames, dontWait: true)
                        } catch {
                            undeliverable.increment()
                        }
                    }
                }
            }
        }
    }

    /// Sends `reply` to the client that made `request`.
    func reply(to request: CommandRequest, with reply: JSONValue) {
        replies.post((request.socketIndex, request.envelope + [reply.jsonBytes]))
    }

    /// Stops taking requests and closes the sockets.
    func stop() async { await thread.stop() }
}
