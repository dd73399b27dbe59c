import CZeroMQ

/// The socket types MeshBus uses.
public enum ZMQSocketType: Sendable {
    case pub, sub, xpub, router, dealer, req, rep, pair, push, pull

    var raw: Int32 {
        switch self {
        case .pub: ZMQ_PUB
        case .sub: ZMQ_SUB
        case .xpub: ZMQ_XPUB
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .req: ZMQ_REQ
        case .rep: ZMQ_REP
        case .pair: ZMQ_PAIR
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        }
    }
}

/// One libzmq socket.
///
/// libzmq sockets are not thread-safe, so a `ZMQSocket` is deliberately not `Sendable`:
/// create it on the thread that will use it and never hand it to another. The broker runs
/// each of its socket sets on one dedicated thread; async code talks to that thread through
/// a lock-protected queue plus a ``ZMQWakeup`` descriptor that the thread polls next to its
/// sockets (see ``ZMQPoller``). Nothing else touches the socket.
public final class ZMQSocket {
    let handle: UnsafeMutableRawPointer
    public let type: ZMQSocketType
    private var closed = false

    public init(context: ZMQContext, type: ZMQSocketType) throws {
        guard let handle = zmq_socket(context.handle, type.raw) else {
            throw ZMQError.last("zmq_socket")
        }
        self.handle = handle
        self.type = type
    }

    deinit { close() }

    /// Closes the socket; pending outgoing messages are kept for at most the linger time.
    public func close() {
        guard !closed else { return }
        closed = true
        zmq_close(handle)
    }

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError.last("bind(\(endpoint))") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError.last("connect(\(endpoint))") }
    }

    /// The endpoint last bound, with the port the system picked for `tcp://…:*` or `:0`.
    public var lastEndpoint: String {
        get throws {
            var buffer = [CChar](repeating: 0, count: 1024)
            var size = buffer.count
            guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
                throw ZMQError.last("getsockopt(LAST_ENDPOINT)")
            }
            return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    // MARK: Sending

    /// Sends one frame. Returns false if `dontWait` is set and the frame could not be queued
    /// at once (high-water mark reached, or no peer for a mandatory route).
    @discardableResult
    public func send(_ frame: some Collection<UInt8>, more: Bool = false, dontWait: Bool = false) throws -> Bool {
        let flags = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        let result: Int32 =
            frame.withContiguousStorageIfAvailable { buffer in
                zmq_send(handle, buffer.baseAddress, buffer.count, flags)
            } ?? Array(frame).withUnsafeBytes { buffer in
                zmq_send(handle, buffer.baseAddress, buffer.count, flags)
            }
        if result < 0 {
            let error = ZMQError.last("send")
            if error.wouldBlock && dontWait { return false }
            throw error
        }
        return true
    }

    /// Sends every frame as one multipart message. With `dontWait`, returns false if the
    /// first frame could not be queued; libzmq delivers multipart messages atomically, so a
    /// message is then not sent at all.
    @discardableResult
    public func send(multipart frames: [[UInt8]], dontWait: Bool = false) throws -> Bool {
        precondition(!frames.isEmpty, "a message has at least one frame")
        for (index, frame) in frames.enumerated() {
            let sent = try send(frame, more: index < frames.count - 1, dontWait: dontWait)
            if !sent { return false }
        }
        return true
    }

    // MARK: Receiving

    /// Receives one whole multipart message. Returns nil if `dontWait` is set and nothing
    /// is waiting, or if a receive timeout passed.
    public func receiveMultipart(dontWait: Bool = false) throws -> [[UInt8]]? {
        try receiveMultipart(dontWait: dontWait, property: nil)?.frames
    }

    /// Receives one whole multipart message with a metadata property of its connection, such as
    /// `User-Id` (what the ZAP handler said about the peer) or `Peer-Address`.
    public func receiveMultipart(dontWait: Bool = false, property name: String?) throws -> (frames: [[UInt8]], property: String?)? {
        var frames: [[UInt8]] = []
        var property: String?
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        repeat {
            // Later frames of a message arrive together with the first, so only the first may wait.
            let flags = frames.isEmpty && dontWait ? ZMQ_DONTWAIT : 0
            if zmq_msg_recv(&message, handle, flags) < 0 {
                let error = ZMQError.last("receive")
                if error.wouldBlock && frames.isEmpty { return nil }
                throw error
            }
            // A ROUTER's identity frame carries no metadata; the peer's frames do.
            if property == nil, let name, let value = zmq_msg_gets(&message, name) {
                property = String(cString: value)
            }
            let size = zmq_msg_size(&message)
            if let data = zmq_msg_data(&message), size > 0 {
                frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            } else {
                frames.append([])
            }
        } while zmq_msg_more(&message) == 1
        return (frames, property)
    }

    // MARK: Options

    func setOption(_ option: Int32, _ value: Int32, _ name: String) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError.last("setsockopt(\(name))")
        }
    }

    func setOption(_ option: Int32, bytes: [UInt8], _ name: String) throws {
        let result = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard result == 0 else { throw ZMQError.last("setsockopt(\(name))") }
    }

    func intOption(_ option: Int32, _ name: String) throws -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        guard zmq_getsockopt(handle, option, &value, &size) == 0 else {
            throw ZMQError.last("getsockopt(\(name))")
        }
        return value
    }

    /// How long, in milliseconds, unsent messages are kept after ``close()`` (-1: forever).
    public func setLinger(milliseconds: Int32) throws { try setOption(ZMQ_LINGER, milliseconds, "LINGER") }

    /// Outgoing queue limit in messages per peer; past it PUB drops and others block or fail.
    public func setSendHighWaterMark(_ messages: Int32) throws { try setOption(ZMQ_SNDHWM, messages, "SNDHWM") }

    /// Incoming queue limit in messages per peer.
    public func setReceiveHighWaterMark(_ messages: Int32) throws {
        try setOption(ZMQ_RCVHWM, messages, "RCVHWM")
    }

    /// Subscribes a SUB socket to every topic that starts with `prefix` (empty: everything).
    public func subscribe(_ prefix: String) throws { try setOption(ZMQ_SUBSCRIBE, bytes: Array(prefix.utf8), "SUBSCRIBE") }

    public func unsubscribe(_ prefix: String) throws {
        try setOption(ZMQ_UNSUBSCRIBE, bytes: Array(prefix.utf8), "UNSUBSCRIBE")
    }

    /// Queue messages only on completed connections: with no peer connected, a send fails
    /// with `EAGAIN` instead of waiting in a queue to be delivered whenever a peer appears.
    public func setImmediate(_ on: Bool) throws { try setOption(ZMQ_IMMEDIATE, on ? 1 : 0, "IMMEDIATE") }

    /// The largest message a peer may send; a peer that sends more is disconnected by libzmq.
    public func setMaxMessageSize(_ bytes: Int64) throws {
        var value = bytes
        guard zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError.last("setsockopt(MAXMSGSIZE)")
        }
    }

    /// ROUTER only: fail with `EHOSTUNREACH` instead of dropping a reply to a gone peer.
    public func setRouterMandatory(_ on: Bool) throws { try setOption(ZMQ_ROUTER_MANDATORY, on ? 1 : 0, "ROUTER_MANDATORY") }

    /// TCP keepalive on this socket's connections: idle seconds, probe interval, probe count.
    public func setTCPKeepalive(idle: Int32, interval: Int32, count: Int32) throws {
        try setOption(ZMQ_TCP_KEEPALIVE, 1, "TCP_KEEPALIVE")
        try setOption(ZMQ_TCP_KEEPALIVE_IDLE, idle, "TCP_KEEPALIVE_IDLE")
        try setOption(ZMQ_TCP_KEEPALIVE_INTVL, interval, "TCP_KEEPALIVE_INTVL")
        try setOption(ZMQ_TCP_KEEPALIVE_CNT, count, "TCP_KEEPALIVE_CNT")
    }

    /// Blocking receives give up after this many milliseconds (-1: wait forever).
    public func setReceiveTimeout(milliseconds: Int32) throws { try setOption(ZMQ_RCVTIMEO, milliseconds, "RCVTIMEO") }

    /// Blocking sends give up after this many milliseconds (-1: wait forever).
    public func setSendTimeout(milliseconds: Int32) throws { try setOption(ZMQ_SNDTIMEO, milliseconds, "SNDTIMEO") }

    /// REQ only: accept replies out of order and resend on a new request instead of
    /// locking up after a lost reply (`ZMQ_REQ_RELAXED` + `ZMQ_REQ_CORRELATE`).
    public func setRequestRelaxed() throws {
        try setOption(ZMQ_REQ_RELAXED, 1, "REQ_RELAXED")
        try setOption(ZMQ_REQ_CORRELATE, 1, "REQ_CORRELATE")
    }

    /// XPUB only: pass every subscription message up, duplicates included.
    public func setXPubVerbose(_ on: Bool) throws { try setOption(ZMQ_XPUB_VERBOSE, on ? 1 : 0, "XPUB_VERBOSE") }

    /// CURVE server role with this secret key (Z85 text or 32 raw bytes).
    public func setCurveServer(secretKey: [UInt8]) throws {
        try setOption(ZMQ_CURVE_SERVER, 1, "CURVE_SERVER")
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: secretKey, "CURVE_SECRETKEY")
    }

    /// CURVE client role: the server's public key and this client's key pair.
    public func setCurveClient(serverKey: [UInt8], publicKey: [UInt8], secretKey: [UInt8]) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: serverKey, "CURVE_SERVERKEY")
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: publicKey, "CURVE_PUBLICKEY")
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: secretKey, "CURVE_SECRETKEY")
    }

    /// Names the ZAP domain this socket's peers are authenticated in.
    public func setZAPDomain(_ domain: String) throws { try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8), "ZAP_DOMAIN") }

    /// Reports connection events (`ZMQ_EVENT_*` bits in `events`) on a PAIR socket bound at
    /// `endpoint` (`inproc://…`); read them with ``ZMQMonitorEvent/receive(from:)``.
    public func monitor(_ endpoint: String, events: Int32) throws {
        guard zmq_socket_monitor(handle, endpoint, events) == 0 else { throw ZMQError.last("zmq_socket_monitor") }
    }

    /// True while part of a multipart message is still waiting to be read.
    public var hasMoreFrames: Bool { get throws { try intOption(ZMQ_RCVMORE, "RCVMORE") != 0 } }
}
