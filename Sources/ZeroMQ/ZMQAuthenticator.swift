import CZeroMQ

/// A ZAP handler (ZeroMQ RFC 27): decides which peers a context's sockets admit.
///
/// libzmq asks the handler bound at `inproc://zeromq.zap.01` about every new connection to a
/// socket with a ZAP domain, under any mechanism: for a CURVE server, which public keys get
/// in (without a handler, any client that knows the server key would); under NULL, whether
/// the broker takes another peer at all. The user id of an admitted peer comes back on every
/// message from it as the `User-Id` property (``ZMQSocket/receiveMultipart(dontWait:property:)``).
/// Runs on its own thread.
public final class ZMQAuthenticator: Sendable {
    /// One ZAP request, as the handler is asked it.
    public struct Request: Sendable, Equatable {
        public var domain: String
        /// The peer's IP address.
        public var address: String
        /// `NULL`, `PLAIN` or `CURVE`.
        public var mechanism: String
        /// The client's public key in Z85, under CURVE.
        public var publicKey: String?
    }

    /// The handler's answer to one request.
    public enum Verdict: Sendable, Equatable {
        /// Admitted; `userID` reaches the socket's messages as the `User-Id` property.
        case admit(userID: String)
        /// Refused (status 400), with the reason. The connection is closed, and libzmq does not
        /// reconnect a peer refused so (status 300 would keep the connection, and its descriptor).
        case refuse(String)
    }

    private let thread: ZMQSocketThread

    /// Binds the handler in `context`; it must exist before sockets with a ZAP domain accept
    /// peers. `admit` answers each request on the handler's thread.
    public init(context: ZMQContext, admit: @escaping @Sendable (Request) -> Verdict) throws {
        (thread, _) = try ZMQSocketThread.start(name: "meshbus-zap", wakeup: try ZMQWakeup()) { thread, ready in
            let socket = try ZMQSocket(context: context, type: .rep)
            defer { socket.close() }
            try socket.setLinger(milliseconds: 0)
            try socket.bind("inproc://zeromq.zap.01")
            ready(())
            let poller = ZMQPoller([.socket(socket), .descriptor(thread.wakeup.descriptor)])
            while !thread.isStopRequested {
                guard let readable = try? poller.poll(timeoutMilliseconds: -1), readable[0] else { continue }
                while let request = try? socket.receiveMultipart(dontWait: true) {
                    _ = try? socket.send(multipart: Self.answer(request, admit: admit))
                }
            }
        }
    }

    /// The reply to one ZAP request (RFC 27): version, request id, status code and text, user
    /// id, metadata.
    static func answer(_ request: [[UInt8]], admit: (Request) -> Verdict) -> [[UInt8]] {
        guard request.count >= 6, request[0] == Array("1.0".utf8) else {
            return reply(request.count > 1 ? request[1] : [], "500", "malformed ZAP request")
        }
        let mechanism = String(decoding: request[5], as: UTF8.self)
        var publicKey: String?
        if mechanism == "CURVE" {
            guard request.count >= 7, let key = Z85.encode(request[6]) else { return reply(request[1], "500", "malformed CURVE credentials") }
            publicKey = key
        }
        let asked = Request(
            domain: String(decoding: request[2], as: UTF8.self), address: String(decoding: request[3], as: UTF8.self), mechanism: mechanism,
            publicKey: publicKey
        )
        switch admit(asked) {
        case .admit(let userID): return reply(request[1], "200", "OK", userID: userID)
        case .refuse(let reason): return reply(request[1], "400", reason)
        }
    }

    private static func reply(_ requestID: [UInt8], _ status: String, _ text: String, userID: String = "") -> [[UInt8]] {
        [Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), Array(userID.utf8), []]
    }

    /// Unbinds the handler.
    public func stop() async { await thread.stop() }
}

/// One event from a socket monitor (``ZMQSocket/monitor(_:events:)``).
public struct ZMQMonitorEvent: Sendable, Equatable {
    /// A `ZMQ_EVENT_*` value.
    public let event: UInt16
    public let value: UInt32
    public let endpoint: String

    public static let accepted = UInt16(ZMQ_EVENT_ACCEPTED)
    public static let disconnected = UInt16(ZMQ_EVENT_DISCONNECTED)
    public static let handshakeSucceeded = UInt16(ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
    public static let handshakeFailedAuth = UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

    /// Reads the next event waiting on the monitor's PAIR socket, nil if none.
    public static func receive(from socket: ZMQSocket) -> ZMQMonitorEvent? {
        guard let frames = try? socket.receiveMultipart(dontWait: true), frames.count >= 2, frames[0].count >= 6 else { return nil }
        let head = frames[0]
        let event = UInt16(head[0]) | UInt16(head[1]) << 8
        let value = UInt32(head[2]) | UInt32(head[3]) << 8 | UInt32(head[4]) << 16 | UInt32(head[5]) << 24
        return ZMQMonitorEvent(event: event, value: value, endpoint: String(decoding: frames[1], as: UTF8.self))
    }
}
