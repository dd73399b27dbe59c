import CZeroMQ

/// A ZAP handler (ZeroMQ RFC 27): decides which CURVE clients a context's sockets admit.
///
/// libzmq asks the handler bound at `inproc://zeromq.zap.01` about every new connection to a
/// CURVE server socket. Without a handler any client that knows the server key would get in;
/// with this one, only public keys for which `admit` returns a user id. The user id comes
/// back on every message from that peer as the `User-Id` property
/// (``ZMQSocket/receiveMultipart(dontWait:property:)``). Runs on its own thread.
public final class ZMQAuthenticator: Sendable {
    private let thread: ZMQSocketThread

    /// Binds the handler in `context`; it must exist before CURVE sockets accept peers.
    /// `admit` gets the domain and the client's Z85 public key.
    public init(context: ZMQContext, admit: @escaping @Sendable (_ domain: String, _ publicKey: String) -> String?) throws {
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

    /// The reply to one ZAP request: version, request id, status code and text, user id, metadata.
    static func answer(_ request: [[UInt8]], admit: (String, String) -> String?) -> [[UInt8]] {
        guard request.count >= 6, request[0] == Array("1.0".utf8) else {
            return [Array("1.0".utf8), request.count > 1 ? request[1] : [], Array("500".utf8), Array("malformed ZAP request".utf8), [], []]
        }
        let domain = String(decoding: request[2], as: UTF8.self)
        let mechanism = String(decoding: request[5], as: UTF8.self)
        var userID: String?
        if mechanism == "CURVE", request.count >= 7, let key = Z85.encode(request[6]) {
            userID = admit(domain, key)
        }
        guard let userID else {
            return [Array("1.0".utf8), request[1], Array("400".utf8), Array("client key not admitted".utf8), [], []]
        }
        return [Array("1.0".utf8), request[1], Array("200".utf8), Array("OK".utf8), Array(userID.utf8), []]
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
