import MeshtasticProtocol
import Synchronization
import ZeroMQ

/// The PUB side: every event of every slot leaves through here, in the order published.
///
/// Its sockets live on one ``ZMQSocketThread``; ``publish(_:)`` only appends to a queue and
/// wakes that thread, so the radio side never waits for consumers. A consumer that falls
/// further behind than the send high-water mark loses messages at the PUB socket (libzmq
/// drops, it never blocks); it sees the gap as a `seq` jump.
final class EventPublisher: Sendable {
    private let thread: ZMQSocketThread
    private let queue: ZMQMailbox<[[UInt8]]>
    /// The endpoints as bound (with the ports picked for `:0` or `:*`).
    let endpoints: [String]
    /// Connected subscriber sockets, from the PUB socket's monitor.
    var subscribers: Int { connections.count }
    private let connections = PeerSet()

    /// `subscriberQueue`: the PUB socket's send high-water mark, in messages per subscriber.
    init(context: ZMQContext, endpoints: [String], subscriberQueue: Int, security: SecurityConfiguration) throws {
        let wakeup = try ZMQWakeup()
        let queue = ZMQMailbox<[[UInt8]]>(wakeup: wakeup)
        let connections = self.connections
        self.queue = queue
        let monitorEndpoint = "inproc://meshbus-pub-monitor-\(UInt64.random(in: 0...UInt64.max))"
        (thread, self.endpoints) = try ZMQSocketThread.start(name: "meshbus-pub", wakeup: wakeup) { thread, ready in
            let socket = try ZMQSocket(context: context, type: .pub)
            defer { socket.close() }
            try socket.setSendHighWaterMark(Int32(clamping: subscriberQueue))
            try socket.setLinger(milliseconds: 1000)
            try security.apply(to: socket)
            try socket.monitor(monitorEndpoint, events: Int32(ZMQMonitorEvent.accepted | ZMQMonitorEvent.disconnected))
            let monitor = try ZMQSocket(context: context, type: .pair)
            defer { monitor.close() }
            try monitor.setLinger(milliseconds: 0)
            try monitor.connect(monitorEndpoint)
            var bound: [String] = []
            for endpoint in endpoints {
                try socket.bind(endpoint)
                bound.append(try socket.lastEndpoint)
            }
            ready(bound)
            let poller = ZMQPoller([.descriptor(thread.wakeup.descriptor), .socket(monitor), .housekeeping(socket)])
            while true {
                _ = try? poller.poll(timeoutMilliseconds: -1)
                thread.wakeup.drain()
                for message in queue.takeAll() { _ = try? socket.send(multipart: message, dontWait: true) }
                while let event = ZMQMonitorEvent.receive(from: monitor) {
                    connections.apply(event)
                }
                if thread.isStopRequested && queue.isEmpty { return }
            }
        }
    }

    /// Queues one multipart message (topic, envelope, optional raw bytes).
    func publish(_ frames: [[UInt8]]) {
        queue.post(frames)
    }

    /// Sends what is queued, then closes the socket (lingering up to a second for slow peers).
    func stop() async { await thread.stop() }
}

/// The peers connected to a socket, kept from its monitor's accepted/disconnected events.
final class PeerSet: Sendable {
    private let peers = Mutex(Set<UInt32>())

    var count: Int { peers.withLock { $0.count } }

    func apply(_ event: ZMQMonitorEvent) {
        peers.withLock { peers in
            if event.event == ZMQMonitorEvent.accepted { peers.insert(event.value) } else { peers.remove(event.value) }
        }
    }
}
