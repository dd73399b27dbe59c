import CZeroMQ

/// Waits until one of several sockets or plain file descriptors is ready.
///
/// It is how one thread serves several sockets and still wakes up when async code hands it
/// work: it polls a ``ZMQWakeup`` descriptor next to the sockets.
public struct ZMQPoller {
    /// What to watch: a socket or a plain file descriptor for input, or a socket for room
    /// to send (a socket with `ZMQ_IMMEDIATE` has none while no peer is connected).
    public enum Item {
        case socket(ZMQSocket)
        case descriptor(Int32)
        case writable(ZMQSocket)
        /// A socket that is never reported ready but whose own commands run whenever they
        /// arrive: a PUB socket frees a departed subscriber's pipe only when it processes its
        /// commands, which an idle PUB socket otherwise never does (libzmq issue 4286).
        case housekeeping(ZMQSocket)
    }

    public var items: [Item]

    public init(_ items: [Item] = []) { self.items = items }

    /// Blocks until at least one item is ready or `timeoutMilliseconds` pass (-1: no limit).
    /// Returns, for each item in order, whether it is ready. `EINTR` counts as a timeout.
    public func poll(timeoutMilliseconds: Int) throws -> [Bool] {
        var raw = items.map { item -> zmq_pollitem_t in
            switch item {
            case .socket(let socket):
                zmq_pollitem_t(socket: socket.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            case .descriptor(let fd):
                zmq_pollitem_t(socket: nil, fd: fd, events: Int16(ZMQ_POLLIN), revents: 0)
            case .writable(let socket):
                zmq_pollitem_t(socket: socket.handle, fd: 0, events: Int16(ZMQ_POLLOUT), revents: 0)
            case .housekeeping(let socket):
                zmq_pollitem_t(socket: socket.handle, fd: 0, events: 0, revents: 0)
            }
        }
        let result = zmq_poll(&raw, Int32(raw.count), timeoutMilliseconds)
        if result < 0 {
            let error = ZMQError.last("zmq_poll")
            if error.code == EINTR { return Array(repeating: false, count: raw.count) }
            throw error
        }
        return raw.map { $0.revents & $0.events != 0 }
    }
}
