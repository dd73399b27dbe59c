import BluetoothLE
import Logging
import MeshBusModel
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import SendJournal
import SlotCore
import Synchronization
import VirtualRadio
import WebSerial

import struct Foundation.Data

/// One radio slot: the driver of a ``SlotCore`` (seq, replay ring, node DB, duplicate window,
/// send ledger), of the slot's radio link and of its virtual radio port. Nothing is shared
/// between slots.
///
/// **The lock rule.** `state` is the slot's one lock. Under it the driver runs the pure core
/// and its own bookkeeping (which link runs, which port listens) and nothing else: it never
/// calls another module (link, outbox, virtual radio, publisher, metrics) while holding it,
/// and it hands no callback to anything that holds a lock. The core's actions are queued
/// under the lock and carried out after it is released, by whichever caller finds none being
/// carried out, so they happen in the order the core decided them: events leave in `seq`
/// order, and a snapshot is exactly current at the `seq` it reports.
final class Slot<C: Clock>: Sendable where C.Duration == Duration {
    typealias Core = SlotCore<C.Instant>

    let name: String
    private let clock: C
    private let state: Mutex<Locked>
    /// The packets waiting for the radio; every link of the slot (a reload makes a new one) drains it.
    private let outbox: Outbox
    private let publisher: EventPublisher
    private let hub: EventHub
    private let metrics: SlotMetrics
    private let logger: Logger
    /// Existing Meshtastic clients sharing this slot's radio; see ``VirtualRadio``.
    private let virtualRadio: VirtualRadio
    /// Where a newly bound virtual radio port goes to be served.
    private let listenerStarts: AsyncStream<VirtualRadioListener>.Continuation
    private let listenerStream: AsyncStream<VirtualRadioListener>
    /// Expiry deadlines the core asked for; each becomes a timer child of ``run()``.
    private let timerRequests: AsyncStream<C.Instant>.Continuation
    private let timerStream: AsyncStream<C.Instant>
    /// Where accepted sends are kept until settled, so that a crash does not lose them; nil
    /// without a `stateDirectory`.
    private let journal: SendJournal?
    /// Carries every link's events to ``handle(_:)``; a link is made while the slot is still
    /// being initialised (and again on a reload), before `self` can be handed out.
    private let relay = EventRelay<C>()

    /// One link (and its in-process simulator) with the configuration it was made from. A
    /// reload that changes the slot replaces the generation; the core and the outbox carry over.
    private struct Generation: Sendable {
        var configuration: SlotConfiguration
        let link: RadioLink<C>
        let simulator: RadioSimulator?
        /// Where a browser attaches, for a `webserial` slot.
        let webSerialPort: WebSerialPort?
    }

    private struct Locked: Sendable {
        var core: Core
        /// Actions decided but not yet carried out, oldest first.
        var pending: [Core.Action] = []
        /// Whether some caller is carrying actions out now (it takes the ones queued meanwhile).
        var performing = false
        var current: Generation
        /// The generation to run once the current one has stopped (a reload).
        var replacement: Generation?
        /// Set when the slot stops, with the error its unsettled sends end with.
        var stopping: String?
        /// The virtual radio port listening now, nil without one.
        var listener: VirtualRadioListener?
    }

    /// `stateDirectory`: where the slot's send journal is kept; sends a previous run left in
    /// it go out again (or end `expired`) before anything else.
    init(
        configuration: SlotConfiguration, outboxCapacity: Int, replayCapacity: Int, stateDirectory: String?, sink: EventSink, clock: C,
        logger: Logger
    ) async throws {
        name = configuration.name
        self.clock = clock
        publisher = sink.publisher
        hub = sink.hub
        self.logger = logger
        metrics = SlotMetrics(slot: configuration.name)
        outbox = Outbox(capacity: outboxCapacity)
        virtualRadio = VirtualRadio(slot: configuration.name, logger: logger)
        (listenerStream, listenerStarts) = AsyncStream<VirtualRadioListener>.makeStream()
        (timerStream, timerRequests) = AsyncStream<C.Instant>.makeStream()
        var recovery: SendJournal.Recovery?
        if let stateDirectory {
            let recovered = try SendJournal.recover(directory: stateDirectory, slot: configuration.name)
            // Every recovered send stays journaled until it is settled again below.
            journal = try SendJournal(directory: stateDirectory, slot: configuration.name, keeping: recovered.sends)
            recovery = recovered
        } else {
            journal = nil
        }
        var bound: VirtualRadioListener?
        if let settings = configuration.virtualRadio { bound = try await VirtualRadio.bind(settings) }
        let generation: Generation
        do {
            generation = try await Self.makeGeneration(configuration, outbox: outbox, clock: clock, relay: relay, logger: logger)
        } catch {
            await bound?.close()
            throw error
        }
        let settings = Core.Settings(
            name: configuration.name, envelopeHead: sink.envelopeHead(slot: configuration.name), replayCapacity: replayCapacity,
            seed: .random(in: 0...UInt64.max)
        )
        state = Mutex(Locked(core: Core(settings: settings), current: generation, listener: bound))
        if let bound { listenerStarts.yield(bound) }
        relay.attach(self)
        if let recovery { resume(recovery) }
    }

    /// Puts the sends a previous run accepted and never settled back in the outbox with their
    /// packet and request ids; those whose `ttlSeconds` ran out meanwhile end `expired`.
    private func resume(_ recovery: SendJournal.Recovery) {
        if let problem = recovery.problem {
            logger.warning(
                "send journal: \(problem); the rest was cut off by the crash and is ignored",
                metadata: ["slot": "\(name)", "path": "\(journal?.path ?? "")", "discardedBytes": "\(recovery.discardedBytes)"]
            )
        }
        guard !recovery.sends.isEmpty else { return }
        let wallNow = SendJournal.wallClockMilliseconds()
        var resumed = 0
        var expired = 0
        for send in recovery.sends {
            let remaining = send.deadline - wallNow
            guard remaining > 0 else {
                expired += 1
                settleRecovered(send, status: .expired)
                continue
            }
            guard let packet = try? Meshtastic_MeshPacket(serializedBytes: send.packet), packet.id == send.packetID else {
                settleRecovered(send, status: .failed, error: "journal_unreadable")
                continue
            }
            switch enqueue(packet, requestID: send.requestID, ttl: .milliseconds(remaining), keepingID: true, journaled: true) {
            case .queued: resumed += 1
            case .full: settleRecovered(send, status: .failed, error: "queue_full")
            case .unjournaled: break
            }
        }
        logger.notice(
            "send journal: \(recovery.sends.count) sends were open when the broker stopped: \(resumed) queued again, \(expired) expired",
            metadata: ["slot": "\(name)"]
        )
    }

    private func settleRecovered(_ send: JournaledSend, status: MeshBus.SendState, error: String? = nil) {
        let now = moment()
        withCore { core, actions in
            core.settleRecovered(packetID: send.packetID, requestID: send.requestID, status: status, error: error, at: now, into: &actions)
        }
    }

    private static func makeGeneration(
        _ configuration: SlotConfiguration, outbox: Outbox, clock: C, relay: EventRelay<C>, logger: Logger
    ) async throws -> Generation {
        let transport: any RadioTransport
        var simulator: RadioSimulator?
        var webSerialPort: WebSerialPort?
        switch configuration.source {
        case .tcp(let host, let port):
            transport = TCPRadioTransport(
                host: host, port: port, connectTimeout: configuration.timing.connectTimeout, keepalive: configuration.timing.tcpKeepalive
            )
        case .serial(let path):
            transport = SerialRadioTransport(path: path)
        case .simulator(let simulatorConfiguration):
            let started = try await RadioSimulator.start(simulatorConfiguration, logger: logger)
            simulator = started
            transport = SimulatorTransport(tcp: TCPRadioTransport(host: simulatorConfiguration.host, port: started.port))
        case .webserial:
            let port = WebSerialPort(slot: configuration.name)
            webSerialPort = port
            transport = WebSerialTransport(port: port)
        case .ble(let ble):
            transport = BLERadioTransport(configuration: ble, logger: logger)
        }
        let link = RadioLink(
            slot: configuration.name, transport: transport, timing: configuration.timing, clock: clock, outbox: outbox, logger: logger,
            onEvent: relay.deliver
        )
        return Generation(configuration: configuration, link: link, simulator: simulator, webSerialPort: webSerialPort)
    }

    /// The running link.
    var link: RadioLink<C> { state.withLock { $0.current.link } }

    /// Where a browser attaches, for a `webserial` slot.
    var webSerialPort: WebSerialPort? { state.withLock { $0.current.webSerialPort } }

    /// The configuration the running link was made from.
    var configuration: SlotConfiguration { state.withLock { $0.current.configuration } }

    /// Packets waiting to be written.
    var queueDepth: Int { outbox.count }

    /// Returns once every waiting packet was written (or taken out), or on cancellation.
    func waitUntilOutboxEmpty() async { await outbox.waitUntilEmpty() }

    // MARK: Running

    /// Runs link after link (a reload may replace one) and publishes what they report, until
    /// the slot is stopped or removed. Sends still in flight then end `failed`.
    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withDiscardingTaskGroup { listeners in
                    for await listener in self.listenerStream { listeners.addTask { await self.virtualRadio.serve(listener, host: self) } }
                }
            }
            group.addTask {
                await withDiscardingTaskGroup { timers in
                    for await deadline in self.timerStream {
                        timers.addTask {
                            guard (try? await self.clock.sleep(until: deadline, tolerance: nil)) != nil else { return }
                            let now = self.moment()
                            self.withCore { core, actions in core.handle(.expiryDue(deadline), at: now, into: &actions) }
                        }
                    }
                }
            }
            var generation = state.withLock { $0.current }
            while true {
                await run(generation)
                let upcoming: Generation? = state.withLock { state in
                    guard state.stopping == nil, let replacement = state.replacement else { return nil }
                    state.current = replacement
                    state.replacement = nil
                    return replacement
                }
                guard let upcoming else { break }
                generation = upcoming
            }
            let failure = state.withLock { $0.stopping } ?? "shutdown"
            let now = moment()
            withCore { core, actions in core.handle(.stop(error: failure), at: now, into: &actions) }
            listenerStarts.finish()
            timerRequests.finish()
            group.cancelAll()
        }
    }

    /// Runs one link until it stops; its events reach ``handle(_:)`` on the link's task.
    private func run(_ generation: Generation) async {
        await withDiscardingTaskGroup { group in
            if let simulator = generation.simulator { group.addTask { await simulator.run() } }
            await generation.link.run()
            group.cancelAll()
        }
    }

    /// Applies a reload that changed the slot. A changed radio or timing replaces the link: the
    /// old one closes with `connection.lost` `reason: reload`, the new one connects and drains
    /// the same outbox. A changed virtual radio port is closed (its clients with it) and opened
    /// anew, the link untouched.
    func reconfigure(to configuration: SlotConfiguration) async throws {
        let before = self.configuration
        if configuration.virtualRadio != before.virtualRadio {
            await closeVirtualRadio()
            do {
                try await openVirtualRadio(configuration.virtualRadio)
            } catch {
                // The slot keeps the port it had; the reload reports the new one as failed.
                try? await openVirtualRadio(before.virtualRadio)
                throw error
            }
        }
        guard configuration.link != before.link else {
            state.withLock { $0.current.configuration = configuration }
            return
        }
        let replacement = try await Self.makeGeneration(configuration, outbox: outbox, clock: clock, relay: relay, logger: logger)
        let running = state.withLock { state in
            state.replacement = replacement
            return state.current.link
        }
        running.shutdown(reason: .reload)
    }

    /// Closes the virtual radio port and its clients; returns once the port is free.
    func closeVirtualRadio() async {
        await state.withLock { state in
            defer { state.listener = nil }
            return state.listener
        }?.close()
    }

    private func openVirtualRadio(_ settings: VirtualRadioConfiguration?) async throws {
        guard let settings else { return }
        let bound = try await VirtualRadio.bind(settings)
        state.withLock { $0.listener = bound }
        listenerStarts.yield(bound)
    }

    /// Closes the radio for good. `removed` means the slot left the configuration: a ready
    /// link reports `reload`, sends in flight fail with `slot_removed`.
    func stop(removed: Bool = false) {
        let (listener, running) = state.withLock { state in
            state.stopping = removed ? "slot_removed" : "shutdown"
            defer { state.listener = nil }
            return (state.listener, state.current.link)
        }
        listener?.beginClosing()
        if removed {
            metrics.destroyGauges()
            virtualRadio.destroyGauges()
        }
        running.shutdown(reason: removed ? .reload : .shutdown)
    }

    // MARK: The core and its actions

    private func moment() -> Core.Moment {
        Core.Moment(instant: clock.now, millisecondsSince1970: Envelope.nowMilliseconds())
    }

    /// Runs `body` on the core under the lock, then carries out the actions queued (this
    /// call's, and any queued by others meanwhile) after releasing it, in order.
    @discardableResult
    private func withCore<Result>(_ body: (inout Core, inout [Core.Action]) -> Result) -> Result {
        let (result, batch) = state.withLock { state -> (Result, [Core.Action]) in
            let result = body(&state.core, &state.pending)
            guard !state.performing, !state.pending.isEmpty else { return (result, []) }
            state.performing = true
            defer { state.pending.removeAll(keepingCapacity: true) }
            return (result, state.pending)
        }
        var actions = batch
        while !actions.isEmpty {
            for action in actions { perform(action) }
            actions = state.withLock { state in
                guard !state.pending.isEmpty else {
                    state.performing = false
                    return []
                }
                defer { state.pending.removeAll(keepingCapacity: true) }
                return state.pending
            }
        }
        return result
    }

    private func perform(_ action: Core.Action) {
        switch action {
        case .publish(let event):
            publisher.publish(event.frames)
            hub.publish(event)
        case .scheduleExpiry(let deadline):
            timerRequests.yield(deadline)
        case .removeFromOutbox(let packetIDs):
            let now = moment()
            for packetID in packetIDs {
                let removed = outbox.remove(packetID: packetID)
                withCore { core, actions in core.handle(.removedFromOutbox(packetID: packetID, removed: removed), at: now, into: &actions) }
            }
        case .virtualRadio(.linkReady):
            virtualRadio.linkReady()
        case .virtualRadio(.linkLost):
            virtualRadio.linkLost()
        case .virtualRadio(.radio(let message, let raw)):
            virtualRadio.radio(message, raw: raw)
        case .virtualRadio(.outboxChanged):
            virtualRadio.outboxDrained(room: outboxRoom)
        case .virtualRadio(.sendFailed(let packetID, let error)):
            virtualRadio.sendFailed(radioPacketID: packetID, error: error)
        case .settled(let packetID):
            forget(packetID)
        }
    }

    /// Marks a send settled in the journal. A failure costs at most one more transmission of
    /// it after a crash, so it is logged and the send goes on.
    private func forget(_ packetID: UInt32) {
        do {
            try journal?.settled(packetID)
        } catch {
            logger.error("send journal: \(error); after a crash this send may go out again", metadata: ["slot": "\(name)", "packetId": "\(packetID)"])
        }
    }

    /// One event from the running link.
    fileprivate func handle(_ event: RadioLinkEvent) {
        switch event {
        case .probeAnswered(let roundTrip):
            metrics.probeRoundTrip.record(duration: roundTrip)
            return
        case .undecodableFrame(let length):
            logger.debug("undecodable frame dropped", metadata: ["slot": "\(name)", "length": "\(length)"])
        default:
            break
        }
        let now = moment()
        withCore { core, actions in core.handle(.link(event), at: now, into: &actions) }
    }

    /// How an offered send ended.
    private enum Admission {
        case queued(packetID: UInt32)
        case full
        /// The journal could not record it, so it was not accepted.
        case unjournaled(reason: String)
    }

    /// Offers a packet to the outbox under an id the core reserves: `queued` if it took it.
    /// With a journal, the send is recorded on disk first (unless `journaled` already, after a
    /// restart), so the radio can never have a send the journal lacks.
    private func enqueue(
        _ packet: Meshtastic_MeshPacket, requestID: String?, ttl: Duration, keepingID: Bool, journaled: Bool = false
    ) -> Admission {
        let now = moment()
        let reserved = withCore { core, _ in core.reserve(packet, requestID: requestID, ttl: ttl, keepingID: keepingID, at: now.instant) }
        if let journal, !journaled {
            do {
                let bytes: [UInt8] = try reserved.serializedBytes()
                let deadline = SendJournal.wallClockMilliseconds() + Int64(ttl.inSeconds * 1000)
                try journal.accepted(JournaledSend(packetID: reserved.id, requestID: requestID, deadline: deadline, packet: bytes))
            } catch {
                withCore { core, actions in core.handle(.refused(packetID: reserved.id), at: now, into: &actions) }
                logger.error("send journal: \(error); the send was refused", metadata: ["slot": "\(name)"])
                return .unjournaled(reason: "\(error)")
            }
        }
        let accepted = outbox.enqueue(OutgoingPacket(packet: reserved, requestID: requestID))
        if !accepted, journal != nil { forget(reserved.id) }
        withCore { core, actions in
            core.handle(accepted ? .accepted(packetID: reserved.id) : .refused(packetID: reserved.id), at: now, into: &actions)
        }
        return accepted ? .queued(packetID: reserved.id) : .full
    }

    // MARK: Commands

    /// Sets the slot's gauges and counters from its current state (just before a metrics scrape).
    func refreshGauges() {
        let (figures, link) = state.withLock { ($0.core.figures, $0.current.link) }
        metrics.record(
            SlotMetrics.Reading(
                state: link.state, outboxDepth: outbox.count, pendingSends: figures.pendingSends, replayHeld: figures.replayHeld,
                replayCapacity: figures.replayCapacity, nodes: figures.nodeCount
            ),
            counters: figures.counters
        )
    }

    func status() -> MeshBus.SlotStatus {
        let (figures, link, listener) = state.withLock { ($0.core.figures, $0.current.link, $0.listener) }
        let linkStatus = link.status
        return MeshBus.SlotStatus(
            state: linkStatus.state.published,
            ready: linkStatus.state.isReady,
            strikes: linkStatus.state.strikes,
            lastProbeOkAgoSeconds: linkStatus.sinceLastProbeSuccess.map(\.inSeconds),
            lastProbeRoundTripMs: linkStatus.lastProbeRoundTrip.map { $0.inSeconds * 1000 },
            lastError: linkStatus.lastError,
            attempt: linkStatus.state.attempt,
            retryInSeconds: linkStatus.state.retryIn.map(\.inSeconds),
            reconnects: figures.counters.reconnects,
            transport: link.transport.kind,
            myNodeNum: figures.myNodeNum,
            queueDepth: outbox.count,
            pendingSends: figures.pendingSends,
            sends: figures.counters.sends,
            lastSeq: figures.seq,
            replayHeld: figures.replayHeld,
            nodeCount: figures.nodeCount,
            duplicates: figures.counters.duplicates,
            undecodableFrames: figures.counters.undecodableFrames,
            virtualClients: virtualRadio.clientCount,
            virtualRadio: listener.map(virtualRadioStatus),
            history: figures.history
        )
    }

    /// Where the virtual radio port listens (`host:port`, the bound port), nil without one.
    var virtualRadioAddress: String? {
        state.withLock { $0.listener?.address }
    }

    private func virtualRadioStatus(_ listener: VirtualRadioListener) -> MeshBus.VirtualRadioStatus {
        let counters = virtualRadio.counters
        return MeshBus.VirtualRadioStatus(
            address: listener.address, allowAdmin: listener.configuration.allowAdmin, clients: virtualRadio.clientCount,
            connections: counters.connections, turnedAway: counters.turnedAway, lowOnDescriptors: counters.lowOnDescriptors,
            handshakes: counters.handshakes, packets: counters.packets,
            outboxFull: counters.outboxFull, adminRefused: counters.adminRefused, framesDropped: counters.framesDropped,
            undecodable: counters.undecodable, ignored: counters.ignored, failedSends: counters.failedSends
        )
    }

    /// The node DB with the `seq` it is current at, rendered outside the lock.
    func nodes() -> JSONObject {
        state.withLock { $0.core.snapshotSource }.nodeTable
    }

    /// Everything a consumer needs to start from, current at `seq`: apply events with a
    /// greater `seq` on top.
    func snapshot() -> JSONObject {
        let (source, link) = state.withLock { ($0.core.snapshotSource, $0.current.link) }
        return source.render(state: link.state.name)
    }

    /// Every event after `seq` still held, oldest first, or the gap.
    func heldEvents(after seq: UInt64) -> (Result<ReplayWindow, ReplayGapTooOld>, lastSeq: UInt64) {
        state.withLock { state in (Result { () throws(ReplayGapTooOld) in try state.core.events(after: seq, limit: .max) }, state.core.seq) }
    }

    /// The events after `sinceSeq` still held, each as its frames: `topic`, `envelope`, and
    /// `raw` (base64 of frame 3) where the event has one.
    func replay(sinceSeq: UInt64, limit: Int) throws(CommandError) -> JSONObject {
        let (held, lastSeq) = state.withLock { state in
            (Result { () throws(ReplayGapTooOld) in try state.core.events(after: sinceSeq, limit: limit) }, state.core.seq)
        }
        let entries: [SlotEvent]
        switch held {
        case .success(let window): entries = window.events
        case .failure(let gap): throw .gapTooOld(name, sinceSeq: sinceSeq, oldest: gap.oldestSeq)
        }
        let events: [JSONValue] = entries.map { entry in
            var event: JSONObject = [
                "topic": .string(String(decoding: entry.topic, as: UTF8.self)),
                "envelope": (try? JSONValue(parsing: entry.envelope)) ?? .null,
            ]
            if let raw = entry.raw { event["raw"] = .string(Data(raw).base64EncodedString()) }
            return .object(event)
        }
        let through = entries.last?.seq ?? max(sinceSeq, lastSeq)
        return ["events": .array(events), "lastSeq": .int(lastSeq), "complete": .bool(through >= lastSeq)]
    }

    /// Accepts a packet for the radio: queued now, written when the slot is ready.
    func send(_ request: Command.Send, requestID: String?) throws(CommandError) -> UInt32 {
        if request.requireReady {
            let linkState = link.state
            guard linkState.isReady else { throw .notReady(name, state: linkState.name) }
        }
        var packet = Meshtastic_MeshPacket()
        packet.to = request.to
        packet.channel = request.channel
        packet.wantAck = request.wantAck
        packet.hopLimit = request.hopLimit
        packet.decoded.portnum = request.portnum
        packet.decoded.payload = Data(request.payload)
        packet.decoded.replyID = request.replyID
        let ttl = Duration.milliseconds(Int64((request.ttlSeconds * 1000).rounded()))
        switch enqueue(packet, requestID: requestID, ttl: ttl, keepingID: false) {
        case .queued(let packetID): return packetID
        case .full: throw .queueFull(name, capacity: outbox.capacity)
        case .unjournaled(let reason): throw .journalFailed(name, reason: reason)
        }
    }
}

/// A virtual radio client's packets are sends of the slot like any other: paced, tracked
/// and published, with `requestId` naming the client (`virtualRadio:<address>:<port>`).
extension Slot: VirtualRadioHost {
    func submit(_ packet: Meshtastic_MeshPacket, client: String, ttl: Duration) -> VirtualRadioSubmission {
        var packet = packet
        packet.from = 0
        switch enqueue(packet, requestID: Core.virtualRequestPrefix + client, ttl: ttl, keepingID: true) {
        case .queued(let packetID): return .queued(radioPacketID: packetID, room: outboxRoom)
        // A send the journal cannot keep is refused like one the outbox has no room for.
        case .full, .unjournaled: return .full(room: outboxRoom)
        }
    }

    var outboxRoom: OutboxRoom {
        OutboxRoom(free: max(0, outbox.capacity - outbox.count), capacity: outbox.capacity)
    }

    func nodeInfos() -> [Meshtastic_NodeInfo] {
        state.withLock { $0.core.nodes.all }
    }
}

/// The built-in simulator reached over loopback TCP; `status` reports it as `simulator`.
struct SimulatorTransport: ChannelRadioTransport {
    let tcp: TCPRadioTransport
    var kind: String { "simulator" }
    var description: String { "simulator at \(tcp)" }
    func open() async throws -> StreamChannel { try await tcp.open() }
}

/// Hands a link's events to the slot that owns it. Links are made before their slot is
/// whole (and again on a reload), so they are given this instead of the slot itself. It
/// holds the slot weakly (the slot holds it), and holds no closure: a closure kept in a
/// generic container and read through `inout` gains a reabstraction thunk on every access.
private final class EventRelay<C: Clock>: Sendable where C.Duration == Duration {
    private struct Target { weak var slot: Slot<C>? }
    private let target = Mutex(Target())

    func attach(_ slot: Slot<C>) {
        target.withLock { $0.slot = slot }
    }

    @Sendable func deliver(_ event: RadioLinkEvent) {
        target.withLock { $0.slot }?.handle(event)
    }
}
