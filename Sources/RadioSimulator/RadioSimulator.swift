import Logging
import MeshtasticProtocol
import NIOCore
import NIOPosix
import Synchronization

/// What the virtual radio looks like and how busy its mesh is.
public struct SimulatorConfiguration: Sendable, Equatable {
    public var host: String
    /// 0 picks a free port.
    public var port: Int
    public var nodeCount: Int
    public var trafficPerMinute: Double
    public var seed: UInt64
    /// How long the virtual radio takes to report an ACK for a `want_ack` packet.
    public var ackDelay: Duration
    /// Like firmware 2.7: a text from the client within this time of the previous one is
    /// dropped and answered with a `RATE_LIMIT_EXCEEDED` NAK. Zero turns the limit off.
    public var textRateLimit: Duration

    public init(
        host: String = "127.0.0.1",
        port: Int = 0,
        nodeCount: Int = 6,
        trafficPerMinute: Double = 30,
        seed: UInt64 = 0x4D45_5348,
        ackDelay: Duration = .milliseconds(300),
        textRateLimit: Duration = .seconds(2)
    ) {
        self.host = host
        self.port = port
        self.nodeCount = nodeCount
        self.trafficPerMinute = trafficPerMinute
        self.seed = seed
        self.ackDelay = ackDelay
        self.textRateLimit = textRateLimit
    }
}

/// Standing misbehaviours of the virtual radio, switched on and off while it runs.
public struct SimulatorFaults: Sendable, Equatable {
    /// Stop answering and stop sending, but keep the connection open (a hung radio).
    public var stalled = false
    /// Answer every request this late.
    public var answerDelay: Duration = .zero
    /// Send the handshake burst without its `config_complete_id` (a handshake that never ends).
    public var withholdConfigComplete = false
    /// Leave heartbeats unanswered, like firmware older than 2.6 (admin requests still answered).
    public var ignoreHeartbeats = false

    public init() {}
}

/// A virtual Meshtastic radio serving the real stream API, over TCP or over a
/// pseudo-terminal that stands in for a USB serial device.
///
/// Like firmware it serves one API client at a time (a new TCP connection closes the
/// previous one), answers `want_config_id` with the handshake burst, reports its TX queue
/// after each packet and heartbeat, ACKs `want_ack` packets with a Routing reply carrying
/// `request_id`, answers admin metadata requests, and lets its virtual nodes send text,
/// position, telemetry and nodeinfo. Faults (``faults``, ``dropClient()``, ``reboot()``,
/// ``sendGarbage(_:)``, ``goOffline(for:)``) make it misbehave the ways real radios do.
public final class RadioSimulator: Sendable {
    public let configuration: SimulatorConfiguration
    /// The TCP port it listens on (the one picked, if the configuration said 0); 0 in serial mode.
    public let port: Int
    /// In serial mode: the path of the device node (a symlink to the current pseudo-terminal).
    public let devicePath: String?
    private let initialServer: Mutex<NIOAsyncChannel<StreamChannel, Never>?>
    private let listener = Mutex<(any Channel)?>(nil)
    /// Serial mode: the pseudo-terminal made at start, served first by ``run()``.
    private let pendingTerminal = Mutex<PseudoTerminal?>(nil)
    private let mesh: Mutex<VirtualMesh>
    private let client = Mutex(ClientSlot())
    private let received = Mutex<[Meshtastic_MeshPacket]>([])
    private let faultState = Mutex(SimulatorFaults())
    private let offlineUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let counterState = Mutex(Counters())
    private let lastText = Mutex<ContinuousClock.Instant?>(nil)
    private let lastEmitted = Mutex<Meshtastic_MeshPacket?>(nil)
    let loadState = Mutex(LoadProgress())
    private let logger: Logger

    /// What the simulator has seen, for tests.
    public struct Counters: Sendable, Equatable {
        public var connections = 0
        public var handshakes = 0
        public var heartbeats = 0
        public var adminRequests = 0
        /// Texts dropped by the rate limit.
        public var rateLimited = 0
    }

    enum Outgoing: Sendable {
        case message(Meshtastic_FromRadio)
        case raw([UInt8])
        /// Benchmark load: `count` packets at `rate` per second (0: as fast as the client reads).
        case load(count: Int, rate: Double)
        case close
    }

    private struct ClientSlot {
        var generation = 0
        var outbound: AsyncStream<Outgoing>.Continuation?
        var channel: (any Channel)?
    }

    private static let queueCapacity: UInt32 = 16

    /// Binds the TCP listener. Call ``run()`` to serve.
    public static func start(_ configuration: SimulatorConfiguration, logger: Logger = Logger(label: "meshbus.sim")) async throws -> RadioSimulator {
        let server = try await bind(host: configuration.host, port: configuration.port)
        let port = server.channel.localAddress?.port ?? configuration.port
        return RadioSimulator(configuration: configuration, port: port, devicePath: nil, server: server, logger: logger)
    }

    /// A simulator behind a pseudo-terminal linked at `devicePath` (the link exists when this
    /// returns), as a USB radio's device node appears; ``goOffline(for:)`` makes it vanish.
    public static func startSerial(_ configuration: SimulatorConfiguration, devicePath: String, logger: Logger = Logger(label: "meshbus.sim")) throws -> RadioSimulator {
        let terminal = try PseudoTerminal(linkedAt: devicePath)
        let simulator = RadioSimulator(configuration: configuration, port: 0, devicePath: devicePath, server: nil, logger: logger)
        simulator.pendingTerminal.withLock { $0 = terminal }
        return simulator
    }

    private init(configuration: SimulatorConfiguration, port: Int, devicePath: String?, server: NIOAsyncChannel<StreamChannel, Never>?, logger: Logger) {
        self.configuration = configuration
        self.port = port
        self.devicePath = devicePath
        self.initialServer = Mutex(server)
        self.mesh = Mutex(VirtualMesh(nodeCount: configuration.nodeCount, seed: configuration.seed))
        self.logger = logger
    }

    private static func bind(host: String, port: Int) async throws -> NIOAsyncChannel<StreamChannel, Never> {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in StreamChannel.configure(channel) }
    }

    /// The simulated nodes, the local one first.
    public var nodes: [VirtualMesh.Node] { mesh.withLock { $0.allNodes } }

    /// Every packet a client sent to the virtual radio, oldest first.
    public var receivedPackets: [Meshtastic_MeshPacket] { received.withLock { $0 } }

    public var counters: Counters { counterState.withLock { $0 } }

    /// The standing faults; set them while it runs.
    public var faults: SimulatorFaults {
        get { faultState.withLock { $0 } }
        set { faultState.withLock { $0 = newValue } }
    }

    // MARK: Faults that happen once

    /// Closes the current client's connection (a link that drops).
    public func dropClient() {
        deliver(.close)
    }

    /// Writes `bytes` as they are onto the current client's stream (line noise).
    public func sendGarbage(_ bytes: [UInt8]) {
        deliver(.raw(bytes))
    }

    /// Reports `rebooted` and restarts: the connection closes, state is rebuilt.
    public func reboot() {
        deliver(.message(.with { $0.rebooted = true }))
        deliver(.close)
    }

    /// The radio goes away for `duration`: TCP connections are refused (the listener
    /// closes), a serial device node vanishes. The current client is dropped.
    public func goOffline(for duration: Duration) {
        offlineUntil.withLock { $0 = .now + duration }
        pendingTerminal.withLock { $0.take() }?.close()
        if let devicePath { removeDeviceNode(devicePath) }
        let current = listener.withLock { $0 }
        current?.close(promise: nil)
        dropClient()
    }

    /// Lets a virtual node send one packet now (of `kind`, or a random kind; a text says
    /// `text` if given).
    @discardableResult
    public func emit(_ kind: VirtualMesh.TrafficKind? = nil, text: String? = nil) -> Meshtastic_MeshPacket {
        let packet = mesh.withLock { $0.trafficPacket(now: VirtualMesh.unixNow(), kind: kind, text: text) }
        lastEmitted.withLock { $0 = packet }
        deliver(.message(.with { $0.packet = packet }))
        return packet
    }

    /// Delivers the last emitted packet again, as a radio hears a rebroadcast; nil if none yet.
    @discardableResult
    public func repeatLast() -> Meshtastic_MeshPacket? {
        guard let packet = lastEmitted.withLock({ $0 }) else { return nil }
        deliver(.message(.with { $0.packet = packet }))
        return packet
    }

    /// Hands an item to the connected client's writer; false if no client is connected.
    @discardableResult
    func deliver(_ item: Outgoing) -> Bool {
        client.withLock { slot in
            guard let outbound = slot.outbound else { return false }
            outbound.yield(item)
            return true
        }
    }

    // MARK: Serving

    /// Serves clients and emits traffic until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.emitTraffic() }
            if let devicePath {
                await serveSerial(at: devicePath)
            } else {
                await serveTCP(group: &group)
            }
            group.cancelAll()
        }
    }

    /// Waits out a `goOffline`; false if cancelled.
    private func waitWhileOffline() async -> Bool {
        if let until = offlineUntil.withLock({ $0 }) {
            do { try await Task.sleep(until: until) } catch { return false }
        }
        return !Task.isCancelled
    }

    private func serveTCP(group: inout DiscardingTaskGroup) async {
        var server = initialServer.withLock { state in
            defer { state = nil }
            return state
        }
        while !Task.isCancelled {
            if let current = server {
                listener.withLock { $0 = current.channel }
                do {
                    try await current.executeThenClose { inbound in
                        for try await connection in inbound {
                            group.addTask { await self.serve(connection) }
                        }
                    }
                } catch {
                    logger.debug("simulator listener ended", metadata: ["error": "\(error)"])
                }
            }
            guard await waitWhileOffline() else { return }
            do {
                server = try await Self.bind(host: configuration.host, port: port)
            } catch {
                // The port is still held for a moment after closing; try again shortly.
                logger.debug("simulator rebind failed", metadata: ["error": "\(error)"])
                server = nil
                do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
            }
        }
    }

    private func serveSerial(at devicePath: String) async {
        while await waitWhileOffline() {
            do {
                let terminal = try pendingTerminal.withLock { $0.take() } ?? PseudoTerminal(linkedAt: devicePath)
                defer { terminal.close() }
                let channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .takingOwnershipOfDescriptor(inputOutput: terminal.takeController()) { channel in StreamChannel.configure(channel) }
                logger.info("simulator serial device", metadata: ["path": "\(devicePath)", "tty": "\(terminal.devicePath)"])
                await serve(channel)
            } catch {
                logger.warning("simulator could not create its serial device", metadata: ["error": "\(error)"])
                do { try await Task.sleep(for: .milliseconds(100)) } catch { return }
            }
            removeDeviceNode(devicePath)
        }
    }

    private func removeDeviceNode(_ path: String) {
        _ = PseudoTerminal.unlink(path)
    }

    private func emitTraffic() async {
        guard configuration.trafficPerMinute > 0 else { return }
        let interval = Duration.seconds(60 / configuration.trafficPerMinute)
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            emit()
        }
    }

    /// Makes `channel` the one client, closing the previous one as firmware does.
    private func attach(_ channel: any Channel, _ outbound: AsyncStream<Outgoing>.Continuation) -> Int {
        let (generation, previousOutbound, previousChannel) = client.withLock { slot in
            let previous = (slot.outbound, slot.channel)
            slot.generation += 1
            slot.outbound = outbound
            slot.channel = channel
            return (slot.generation, previous.0, previous.1)
        }
        counterState.withLock { $0.connections += 1 }
        if let previousChannel {
            logger.info("force close previous API client")
            previousOutbound?.finish()
            previousChannel.close(promise: nil)
        }
        return generation
    }

    private func detach(generation: Int) {
        client.withLock { slot in
            guard slot.generation == generation else { return }
            slot.outbound = nil
            slot.channel = nil
        }
    }

    private func serve(_ connection: StreamChannel) async {
        // Unbounded: a handshake of a few thousand nodes is one burst, and every item of it
        // must reach the client (the writer waits on TCP backpressure, so a slow client
        // holds the queue here rather than losing it).
        let (outgoing, outgoingContinuation) = AsyncStream<Outgoing>.makeStream()
        // Replies due later, each at its own time (delays do not add up behind one another).
        let (delayed, delayedContinuation) = AsyncStream<(ContinuousClock.Instant, [Outgoing])>.makeStream()
        let generation = attach(connection.channel, outgoingContinuation)
        defer { detach(generation: generation) }
        try? await connection.executeThenClose { inbound, outbound in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    var nextID: UInt32 = 1
                    for await item in outgoing {
                        do {
                            switch item {
                            case .message(var message):
                                if self.faults.stalled { continue }
                                message.id = nextID
                                nextID &+= 1
                                guard let bytes: [UInt8] = try? message.serializedBytes() else { continue }
                                try await outbound.write(.frame(ByteBuffer(bytes: bytes)))
                            case .raw(let bytes):
                                try await outbound.write(.raw(ByteBuffer(bytes: bytes)))
                            case .load(let count, let rate):
                                try await self.writeLoad(count: count, rate: rate, to: outbound, nextID: &nextID)
                            case .close:
                                return
                            }
                        } catch {
                            return
                        }
                    }
                }
                group.addTask {
                    for await (due, items) in delayed {
                        do { try await Task.sleep(until: due) } catch { return }
                        for item in items { outgoingContinuation.yield(item) }
                    }
                }
                group.addTask {
                    do {
                        for try await item in inbound {
                            guard case .frame(let frame) = item, !self.faults.stalled,
                                let request = try? Meshtastic_ToRadio(serializedBytes: Array(frame.readableBytesView))
                            else { continue }
                            let (now, later) = self.respond(to: request)
                            let answerDelay = self.faults.answerDelay
                            let received = ContinuousClock.now
                            if answerDelay > .zero {
                                delayedContinuation.yield((received + answerDelay, now))
                            } else {
                                for item in now { outgoingContinuation.yield(item) }
                            }
                            if !later.isEmpty { delayedContinuation.yield((received + self.configuration.ackDelay + answerDelay, later)) }
                        }
                    } catch {}
                }
                await group.next()
                outgoingContinuation.finish()
                delayedContinuation.finish()
                group.cancelAll()
            }
        }
    }

    /// What firmware answers to one request: now, and later (an ACK after its delay).
    private func respond(to request: Meshtastic_ToRadio) -> (now: [Outgoing], later: [Outgoing]) {
        let now = VirtualMesh.unixNow()
        switch request.payloadVariant {
        case .wantConfigID(let nonce):
            counterState.withLock { $0.handshakes += 1 }
            var burst = mesh.withLock { $0.handshake(nonce: nonce, now: now) }.map(Outgoing.message)
            if faults.withholdConfigComplete { burst.removeLast() }
            if devicePath != nil {
                // On serial the firmware's debug console shares the line with the frames.
                burst.insert(.raw(Array("\u{1B}[34mDEBUG | ??:??:?? 1 [SerialConsole] Client wants config, nonce=\(nonce)\u{1B}[0m\r\n".utf8)), at: 0)
            }
            return (burst, [])
        case .packet(let packet):
            var answers: [Outgoing] = [.message(.with { $0.queueStatus = Self.queueStatus(packetID: packet.id) })]
            if packet.decoded.portnum == .textMessageApp, configuration.textRateLimit > .zero {
                let clock = ContinuousClock.now
                let tooSoon = lastText.withLock { last in
                    if let last, last.duration(to: clock) < configuration.textRateLimit { return true }
                    last = clock
                    return false
                }
                if tooSoon {
                    counterState.withLock { $0.rateLimited += 1 }
                    let nak = mesh.withLock { $0.ack(for: packet, error: .rateLimitExceeded, now: now) }
                    return (answers + [.message(.with { $0.packet = nak })], [])
                }
            }
            received.withLock { $0.append(packet) }
            if let reply = mesh.withLock({ $0.adminReply(to: packet, now: now) }) {
                counterState.withLock { $0.adminRequests += 1 }
                answers.append(.message(.with { $0.packet = reply }))
                return (answers, [])
            }
            guard packet.wantAck else { return (answers, []) }
            // A destination outside the mesh is retried by firmware until it gives up.
            let ack = mesh.withLock { $0.ack(for: packet, error: $0.canReach(packet.to) ? .none : .maxRetransmit, now: now) }
            return (answers, [.message(.with { $0.packet = ack })])
        case .heartbeat:
            counterState.withLock { $0.heartbeats += 1 }
            if faults.ignoreHeartbeats { return ([], []) }
            return ([.message(.with { $0.queueStatus = Self.queueStatus(packetID: 0) })], [])
        case .disconnect:
            // Firmware closes the API connection; a serial line just goes quiet.
            return devicePath == nil ? ([.close], []) : ([], [])
        default:
            return ([], [])
        }
    }

    static func queueStatus(packetID: UInt32) -> Meshtastic_QueueStatus {
        .with {
            $0.res = 0
            $0.free = queueCapacity - 1
            $0.maxlen = queueCapacity
            $0.meshPacketID = packetID
        }
    }
}
