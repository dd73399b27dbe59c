import EventLoopTime
import Logging
import MeshtasticProtocol
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The supervisor of one slot's radio: drives a ``ConnectionStateMachine`` by carrying out
/// its actions (open a session, write, run timers) and feeding it what happens.
///
/// ``run()`` is one task that owns every child: each session (transport open, reader,
/// writers, its timers) and the retry timers. Children never throw to it: whatever ends
/// a child, an error included, comes back as an input value, so nothing a child does can
/// end the loop. It ends only on ``shutdown()`` or cancellation.
///
/// What a session reads is handled on the event loop that read it while the supervisor is
/// idle: the loop takes the supervisor's place for that frame (``InputQueue/claimIfIdle()``),
/// applies it, and hands back whatever needs a child task. Otherwise it queues behind the
/// supervisor's inputs. Either way one holder at a time drives the machine and emits, so
/// events keep their order.
public final class RadioLink<C: Clock>: Sendable where C.Duration == Duration {
    public typealias Machine = ConnectionStateMachine<C.Instant>

    public let slot: String
    public let transport: any RadioTransport
    public let timing: LinkTiming
    let outbox: Outbox
    private let clock: C
    /// Where events go, in order, called by the holder of the supervisor's place (its task,
    /// or the event loop that read a frame); and what ends them.
    private let emit: @Sendable (RadioLinkEvent) -> Void
    private let finishEvents: @Sendable () -> Void
    private let inputs = InputQueue<Input>()
    private let machine: Mutex<Machine>
    /// What the holder of the supervisor's place works on: the supervisor's task, or an event
    /// loop handling a frame meanwhile.
    private let held = Mutex(Held())
    private let gate = SendGate()
    /// The radio said its TX queue is full (`queueStatus.free == 0`): writes wait.
    private let radioQueueFull = Mutex(false)
    /// When a packet of each port was last written, for ``LinkTiming/sendSpacing``; kept
    /// across sessions, as the firmware's own limiter is.
    private let lastWrite = Mutex<[Meshtastic_PortNum: C.Instant]>([:])
    /// Why the link is not up, in words for `status` (a failed open, a loss); nil once ready.
    private let lastError = Mutex<String?>(nil)
    private let logger: Logger

    /// What reaches the supervisor loop: children's reports and commands.
    private enum Input: Sendable {
        case opened(attempt: Int)
        case frame(attempt: Int, Meshtastic_FromRadio, raw: [UInt8])
        case logLine(attempt: Int, String)
        case undecodable(attempt: Int, length: Int)
        /// A frame's actions from the first that starts a task, and the frame's republishing:
        /// what an event loop that handled the frame left to the supervisor.
        case deferred(ArraySlice<Machine.Action>, republish: RadioLinkEvent?, now: C.Instant)
        case sent(attempt: Int, OutgoingPacket)
        case ended(attempt: Int, SessionEnd)
        case timer(Machine.Timer)
        case reconnect
        case peerAvailable
        case disconnectForRestart(settle: Duration)
        case shutdown(LossReason)
    }

    /// The supervisor's handle on its one live session.
    private struct Session: Sendable {
        let attempt: Int
        let control: AsyncStream<Meshtastic_ToRadio>.Continuation
        let timers: AsyncStream<(Machine.Timer, C.Instant)>.Continuation
    }

    private struct Held: Sendable {
        var session: Session?
        var info = LinkInfo(myNodeNum: 0, firmware: "", nodeCount: 0, attempt: 0)
    }

    /// A link and the stream of its events (tests consume links this way).
    /// `seed` feeds nonces and backoff jitter (random by default; fixed in tests).
    public static func make(
        slot: String,
        transport: any RadioTransport,
        timing: LinkTiming = LinkTiming(),
        clock: C,
        outboxCapacity: Int = 64,
        seed: UInt64 = .random(in: 0...UInt64.max),
        logger: Logger
    ) -> (RadioLink, AsyncStream<RadioLinkEvent>) {
        let (stream, continuation) = AsyncStream<RadioLinkEvent>.makeStream()
        let link = RadioLink(
            slot: slot, transport: transport, timing: timing, clock: clock, outbox: Outbox(capacity: outboxCapacity), seed: seed,
            emit: { continuation.yield($0) }, finishEvents: { continuation.finish() }, logger: logger
        )
        return (link, stream)
    }

    /// A link that hands each event to `onEvent`, one at a time and in order, instead of
    /// through a stream: a frame read while the link is idle then reaches `onEvent` on the
    /// event loop that read it, with no task switch. `onEvent` must not block or wait; the
    /// broker's slots use this, with an outbox each slot keeps across the links a reload makes.
    public convenience init(
        slot: String,
        transport: any RadioTransport,
        timing: LinkTiming = LinkTiming(),
        clock: C,
        outbox: Outbox,
        seed: UInt64 = .random(in: 0...UInt64.max),
        logger: Logger,
        onEvent: @escaping @Sendable (RadioLinkEvent) -> Void
    ) {
        self.init(
            slot: slot, transport: transport, timing: timing, clock: clock, outbox: outbox, seed: seed,
            emit: onEvent, finishEvents: {}, logger: logger
        )
    }

    private init(
        slot: String, transport: any RadioTransport, timing: LinkTiming, clock: C, outbox: Outbox, seed: UInt64,
        emit: @escaping @Sendable (RadioLinkEvent) -> Void, finishEvents: @escaping @Sendable () -> Void, logger: Logger
    ) {
        self.slot = slot
        self.transport = transport
        self.timing = timing
        self.clock = clock
        self.outbox = outbox
        self.emit = emit
        self.finishEvents = finishEvents
        self.logger = logger
        self.machine = Mutex(Machine(timing: timing, seed: seed))
    }

    /// The current state.
    public var state: LinkState { machine.withLock { $0.state } }

    /// State, probe age and failures, for `status`.
    public var status: LinkStatus {
        let now = clock.now
        return machine.withLock { machine in
            LinkStatus(
                state: machine.state,
                sinceLastProbeSuccess: machine.state.isUp ? machine.lastProbeSuccess.map { $0.duration(to: now) } : nil,
                lastProbeRoundTrip: machine.lastProbeRoundTrip,
                lastError: lastError.withLock { $0 },
                failures: machine.failures
            )
        }
    }

    /// Queues a packet for the radio; it is written once the link is ready. False if full.
    public func enqueue(_ packet: OutgoingPacket) -> Bool { outbox.enqueue(packet) }

    /// Forces a reconnect cycle (or ends a `disconnectForRestart` hold).
    public func reconnect() { inputs.yield(.reconnect) }

    /// Closes the radio cleanly and holds it closed until ``reconnect()``, which waits out
    /// `settle` first.
    public func disconnectForRestart(settle: Duration) { inputs.yield(.disconnectForRestart(settle: settle)) }

    /// Closes the radio cleanly (telling it with `ToRadio.disconnect`); ``run()`` returns once
    /// the transport is closed. A ready link reports `reason` as its loss.
    public func shutdown(reason: LossReason = .shutdown) { inputs.yield(.shutdown(reason)) }

    /// Runs until ``shutdown()`` or cancellation. Never throws; ends with the state `stopped`.
    /// Pre-specialized for the clock the broker runs on, so the per-frame path does not
    /// look up generic metadata (the state machine, its actions, the input stream) at run time.
    @_specialize(exported: true, where C == EventLoopClock)
    public func run() async {
        await withDiscardingTaskGroup { group in
            perform(transition { $0.handle(.start) }, now: clock.now, group: &group)
            while let input = await inputs.next() {
                let now = clock.now
                let actions: [Machine.Action]
                switch input {
                case .opened(let attempt):
                    held.withLock { $0.info = LinkInfo(myNodeNum: 0, firmware: "", nodeCount: 0, attempt: attempt) }
                    actions = transition { $0.handle(.transportOpened(attempt: attempt)) }
                case .frame, .logLine, .undecodable:
                    if case .deferred(let rest, let republish, _)? = handleRead(input, now: now) {
                        perform(rest, now: now, group: &group)
                        if let republish { emit(republish) }
                    }
                    continue
                case .deferred(let rest, let republish, let deferredAt):
                    perform(rest, now: deferredAt, group: &group)
                    if let republish { emit(republish) }
                    continue
                case .sent(let attempt, let item):
                    if attempt == currentAttempt { emit(.sent(item)) }
                    continue
                case .ended(let attempt, let end):
                    held.withLock { if attempt == $0.session?.attempt { $0.session = nil } }
                    logger.debug("session ended", metadata: ["slot": "\(slot)", "attempt": "\(attempt)", "end": "\(end)"])
                    let failure: String? = if case .lost = end { "closed during the handshake" } else { nil }
                    actions = transition(failure: failure) { $0.handle(.sessionEnded(end, attempt: attempt, now: now)) }
                case .timer(let timer):
                    let seconds = timing.interfaceInitTimeout.inSeconds
                    let failure = timer.kind == .initTimeout ? "no complete handshake within \(seconds == seconds.rounded() ? "\(Int(seconds))" : "\(seconds)") s" : nil
                    actions = transition(failure: failure) { $0.handle(.timerFired(timer, now: now)) }
                case .reconnect:
                    actions = transition { $0.handle(.reconnect) }
                case .peerAvailable:
                    actions = transition { $0.handle(.peerAvailable) }
                case .disconnectForRestart(let settle):
                    actions = transition { $0.handle(.disconnectForRestart(settle: settle)) }
                case .shutdown(let reason):
                    actions = transition { $0.handle(.shutdown(reason: reason)) }
                }
                perform(actions, now: now, group: &group)
                if machine.withLock({ $0.isFinished }) { break }
            }
            if !machine.withLock({ $0.isFinished }) {
                // Cancelled: the children are cancelled with us; report the end all the same.
                perform(transition { $0.handle(.shutdown(reason: .shutdown)) }, now: clock.now, group: &group)
            }
            group.cancelAll()
        }
        finishEvents()
    }

    // MARK: Driving the machine

    /// Applies one event and publishes the state change it caused.
    /// Applies `event`; `failure` words why, should it end an attempt under way (set before the
    /// state change is published, so a client reacting to it reads the reason).
    private func transition(failure: String? = nil, _ event: (inout Machine) -> [Machine.Action]) -> [Machine.Action] {
        let (actions, previous, current) = machine.withLock { machine in
            let previous = machine.state
            let actions = event(&machine)
            return (actions, previous, machine.state)
        }
        if let failure, previous.isHandshaking, !current.isHandshaking, current != .stopped {
            lastError.withLock { $0 = "\(transport): \(failure)" }
        }
        if previous != current {
            if !current.isUp { radioQueueFull.withLock { $0 = false } }
            refreshGate(current)
            emit(.stateChanged(current, previous: previous))
            logger.log(
                level: current.isUp || previous.isUp ? .info : .debug, "link state",
                metadata: ["slot": "\(slot)", "state": "\(current.name)", "previous": "\(previous.name)", "attempt": "\(current.attempt)"]
            )
        }
        return actions
    }

    /// Sends flow while the link is ready and the radio's TX queue has room.
    private func refreshGate(_ state: LinkState) {
        let open = state.isReady && !radioQueueFull.withLock { $0 }
        gate.set(openFor: open ? state.attempt : nil)
    }

    /// Applies a frame; returns the actions and the event that republishes the frame (after
    /// the actions, so `established` precedes the frame that completed the handshake).
    private func received(
        _ message: Meshtastic_FromRadio, raw: [UInt8], attempt: Int, now: C.Instant
    ) -> ([Machine.Action], RadioLinkEvent?) {
        let frame: InboundFrame
        switch message.payloadVariant {
        case .myInfo(let myInfo):
            held.withLock { $0.info.myNodeNum = myInfo.myNodeNum }
            frame = .other
        case .metadata(let metadata):
            held.withLock { $0.info.firmware = metadata.firmwareVersion }
            frame = .other
        case .nodeInfo:
            if !state.isUp { held.withLock { $0.info.nodeCount += 1 } }
            frame = .other
        case .configCompleteID(let id): frame = .configComplete(id: id)
        case .rebooted(true): frame = .rebooted
        case .queueStatus(let status):
            let full = status.maxlen > 0 && status.free == 0
            if radioQueueFull.withLock({ flag in defer { flag = full }; return flag != full }) { refreshGate(state) }
            frame = .other
        default: frame = .other
        }
        let actions = transition { $0.handle(.received(frame, attempt: attempt, now: now)) }
        // Frames of a session that is being closed are not republished.
        switch state {
        case .configuring: return (actions, .fromRadio(message, raw: raw, backlog: true))
        case .ready, .degraded: return (actions, .fromRadio(message, raw: raw, backlog: false))
        default: return (actions, nil)
        }
    }

    /// The attempt of the live session, if any.
    private var currentAttempt: Int? { held.withLock { $0.session?.attempt } }

    /// Handles what a session read (a frame, a log line, an undecodable frame) as the holder
    /// of the supervisor's place. Returns what is left for the supervisor (``Input/deferred``)
    /// when an action needs a child task.
    private func handleRead(_ input: Input, now: C.Instant) -> Input? {
        switch input {
        case .frame(let attempt, let message, let raw):
            guard attempt == currentAttempt else { return nil }
            let (actions, republish) = received(message, raw: raw, attempt: attempt, now: now)
            for index in actions.indices where !performInline(actions[index], now: now) {
                return .deferred(actions[index...], republish: republish, now: now)
            }
            if let republish { emit(republish) }
        case .logLine(let attempt, let line):
            if attempt == currentAttempt { emit(.logLine(line)) }
        case .undecodable(let attempt, let length):
            if attempt == currentAttempt { emit(.undecodableFrame(length: length)) }
        default:
            preconditionFailure("Internal inconsistency: \(input) is no session read")
        }
        return nil
    }

    /// Carries out every action in order, starting child tasks in `group` where one needs it.
    private func perform(_ actions: some Collection<Machine.Action>, now: C.Instant, group: inout DiscardingTaskGroup) {
        for action in actions where !performInline(action, now: now) {
            switch action {
            case .connect(let attempt):
                let (control, controlContinuation) = AsyncStream<Meshtastic_ToRadio>.makeStream()
                let (timers, timersContinuation) = AsyncStream<(Machine.Timer, C.Instant)>.makeStream()
                held.withLock { held in
                    precondition(held.session == nil, "Internal inconsistency: a new session while one is open")
                    held.session = Session(attempt: attempt, control: controlContinuation, timers: timersContinuation)
                }
                logger.debug("opening", metadata: ["slot": "\(slot)", "attempt": "\(attempt)", "transport": "\(transport)"])
                group.addTask { await self.runSession(attempt: attempt, control: control, timers: timers) }
            case .schedule(let timer):
                let deadline = now.advanced(by: timer.delay)
                group.addTask { await self.fire(timer, at: deadline) }
            case .awaitPeer:
                group.addTask {
                    await self.transport.waitForPeer()
                    if !Task.isCancelled { self.inputs.yield(.peerAvailable) }
                }
            default:
                preconditionFailure("Internal inconsistency: \(action) was not carried out")
            }
        }
    }

    /// Carries out an action that needs no child task; false (doing nothing) for one that
    /// does: a connect, a timer that outlives sessions, waiting for a peer.
    private func performInline(_ action: Machine.Action, now: C.Instant) -> Bool {
        switch action {
        case .connect, .awaitPeer:
            return false
        case .send(let request):
            let (control, myNodeNum) = held.withLock { ($0.session?.control, $0.info.myNodeNum) }
            control?.yield(Self.message(for: request, myNodeNum: myNodeNum))
        case .schedule(let timer):
            guard timer.kind.isSessionScoped else { return false }
            let timers = held.withLock { $0.session?.timers }
            timers?.yield((timer, now.advanced(by: timer.delay)))
        case .established(let attempt):
            var established = held.withLock { $0.info }
            established.attempt = attempt
            lastError.withLock { $0 = nil }
            emit(.established(established))
            logger.info("link ready", metadata: ["slot": "\(slot)", "attempt": "\(attempt)", "nodes": "\(established.nodeCount)"])
        case .probeAnswered(let roundTrip):
            emit(.probeAnswered(roundTrip: roundTrip))
        case .lost(let reason):
            // A loss asked for (reconnect, disconnectForRestart, shutdown) is no error.
            if ![.manual, .shutdown, .reload].contains(reason) { lastError.withLock { $0 = "link lost: \(reason.rawValue)" } }
            emit(.lost(reason))
            logger.warning("link lost", metadata: ["slot": "\(slot)", "reason": "\(reason.rawValue)"])
        case .closeSession(let goodbye):
            let control = held.withLock { $0.session?.control }
            if goodbye { control?.yield(.with { $0.disconnect = true }) }
            control?.finish()
        }
        return true
    }

    static func message(for request: Machine.Request, myNodeNum: UInt32) -> Meshtastic_ToRadio {
        switch request {
        case .wantConfig(let nonce):
            return .with { $0.wantConfigID = nonce }
        case .heartbeat(let nonce), .probe(.heartbeat(let nonce)):
            return .with { $0.heartbeat = .with { $0.nonce = nonce } }
        case .probe(.deviceMetadata(let packetID)):
            var admin = Meshtastic_AdminMessage()
            admin.getDeviceMetadataRequest = true
            var packet = Meshtastic_MeshPacket()
            packet.to = myNodeNum
            packet.id = packetID
            packet.decoded.portnum = .adminApp
            packet.decoded.wantResponse = true
            packet.decoded.payload = (try? admin.serializedData()) ?? .init()
            return .with { $0.packet = packet }
        }
    }

    private func fire(_ timer: Machine.Timer, at deadline: C.Instant) async {
        do {
            try await clock.sleep(until: deadline, tolerance: nil)
            inputs.yield(.timer(timer))
        } catch {
            // Cancelled with its scope: the timer is moot.
        }
    }

    // MARK: A session

    /// One attempt: its timers, the transport open, and serving it until it ends. Reports
    /// the end as an input; never throws.
    private func runSession(attempt: Int, control: AsyncStream<Meshtastic_ToRadio>, timers: AsyncStream<(Machine.Timer, C.Instant)>) async {
        let end = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { timerGroup in
                    for await (timer, deadline) in timers {
                        timerGroup.addTask { await self.fire(timer, at: deadline) }
                    }
                    timerGroup.cancelAll()
                }
            }
            let end = await openAndServe(attempt: attempt, control: control)
            group.cancelAll()
            return end
        }
        inputs.yield(.ended(attempt: attempt, end))
    }

    private func openAndServe(attempt: Int, control: AsyncStream<Meshtastic_ToRadio>) async -> SessionEnd {
        do {
            return try await transport.withChannel { channel in
                self.inputs.yield(.opened(attempt: attempt))
                let handOver = await self.divertReads(of: channel, attempt: attempt)
                do {
                    return try await channel.executeThenClose { inbound, outbound in
                        await withTaskGroup(of: SessionEnd.self) { group in
                            group.addTask { await self.read(inbound, attempt: attempt, handOver: handOver) }
                            group.addTask { await self.writeControl(control, to: outbound) }
                            group.addTask { await self.writeOutbox(to: outbound, attempt: attempt) }
                            let first = await group.next() ?? .lost(.transportClosed)
                            group.cancelAll()
                            if first == .lost(.transportClosed), let reason = self.transport.takeCloseReason() { return .lost(reason) }
                            return first
                        }
                    }
                } catch {
                    return .lost(.transportClosed)
                }
            }
        } catch let error as RadioTransportError where error.isAwaitingPeer {
            lastError.withLock { $0 = "\(transport): \(error)" }
            return .awaitingPeer
        } catch let error as RadioTransportError where error == .deviceAbsent {
            logger.debug("device absent", metadata: ["slot": "\(slot)", "transport": "\(transport)"])
            lastError.withLock { $0 = "\(transport): device absent" }
            return .deviceAbsent
        } catch {
            logger.debug("open failed", metadata: ["slot": "\(slot)", "transport": "\(transport)", "error": "\(error)"])
            lastError.withLock { $0 = "\(transport): \(RadioTransportError.describe(error))" }
            return .unreachable
        }
    }

    /// Has the channel hand what it reads to this link on its event loop from now on; nil if
    /// it cannot (the reader then takes everything from the stream).
    private func divertReads(of channel: StreamChannel, attempt: Int) async -> StreamHandOver? {
        let handOver = StreamHandOver()
        do {
            let earlier = try await channel.divertInbound { item in
                if handOver.admit(item) { self.handleOnLoop(item, attempt: attempt) }
            }
            handOver.expect(streamItems: earlier) { self.queue($0, attempt: attempt) }
            return handOver
        } catch {
            logger.debug("reads stay on the stream", metadata: ["slot": "\(slot)", "error": "\(error)"])
            return nil
        }
    }

    /// A session's read, on the event loop that read it: handled at once in the supervisor's
    /// place if the supervisor is idle, else queued for it.
    private func handleOnLoop(_ item: StreamItem, attempt: Int) {
        let input = Self.input(for: item, attempt: attempt)
        guard inputs.claimIfIdle() else {
            inputs.yield(input)
            return
        }
        if let rest = handleRead(input, now: clock.now) { inputs.yield(rest) }
        inputs.release()
    }

    /// A session's read, queued for the supervisor.
    private func queue(_ item: StreamItem, attempt: Int) {
        inputs.yield(Self.input(for: item, attempt: attempt))
    }

    private static func input(for item: StreamItem, attempt: Int) -> Input {
        switch item {
        case .logLine(let line):
            return .logLine(attempt: attempt, line)
        case .frame(let payload):
            let raw = Array(payload.readableBytesView)
            guard let message = try? Meshtastic_FromRadio(serializedBytes: raw) else { return .undecodable(attempt: attempt, length: raw.count) }
            return .frame(attempt: attempt, message, raw: raw)
        }
    }

    /// Takes what the stream holds (everything, without a hand-over; else what came before
    /// it) and returns when the channel closes.
    private func read(_ inbound: NIOAsyncChannelInboundStream<StreamItem>, attempt: Int, handOver: StreamHandOver?) async -> SessionEnd {
        let putIn: (StreamItem) -> Void = { self.queue($0, attempt: attempt) }
        do {
            for try await item in inbound {
                putIn(item)
                handOver?.takenFromStream(release: putIn)
            }
        } catch {
            logger.debug("read failed", metadata: ["slot": "\(slot)", "error": "\(error)"])
        }
        handOver?.streamEnded(release: putIn)
        return .lost(.transportClosed)
    }

    /// Wakes the radio, then writes what the machine asks for, in order. Ends when the
    /// supervisor closes the session (or a write fails).
    private func writeControl(_ control: AsyncStream<Meshtastic_ToRadio>, to outbound: NIOAsyncChannelOutboundWriter<StreamOutbound>) async -> SessionEnd {
        do {
            try await outbound.write(.raw(ByteBuffer(bytes: StreamFraming.wakeSequence)))
            if transport.wakeDelay > .zero { try await EventLoopClock().sleep(for: transport.wakeDelay) }
            for await message in control {
                try await outbound.write(.frame(ByteBuffer(bytes: try message.serializedBytes() as [UInt8])))
            }
            return .lost(.transportClosed)
        } catch {
            logger.debug("write failed", metadata: ["slot": "\(slot)", "error": "\(error)"])
            return .lost(Self.lossReason(forWriteError: error))
        }
    }

    /// A write into a connection the other end has already closed (the radio dropped or
    /// evicted us, and a probe or packet raced the reader to notice) is the transport
    /// closing; only other errors are a failure of the write itself.
    static func lossReason(forWriteError error: any Error) -> LossReason {
        if let channelError = error as? ChannelError, [.ioOnClosedChannel, .alreadyClosed, .outputClosed, .eof].contains(channelError) {
            return .transportClosed
        }
        if let ioError = error as? IOError, [EPIPE, ECONNRESET].contains(ioError.errnoCode) { return .transportClosed }
        return .writeFailed
    }

    /// Writes queued packets while the link is ready and the radio has room, spaced per port
    /// (``LinkTiming/sendSpacing``); a packet whose write fails goes back to the front of
    /// the outbox for the next session.
    private func writeOutbox(to outbound: NIOAsyncChannelOutboundWriter<StreamOutbound>, attempt: Int) async -> SessionEnd {
        while await gate.waitUntilOpen(for: attempt) {
            guard let item = await outbox.next() else { break }
            let port = item.packet.decoded.portnum
            if let spacing = timing.sendSpacing[port], let last = lastWrite.withLock({ $0[port] }), last.advanced(by: spacing) > clock.now {
                // Too soon for this port: the packet waits in the outbox (where it can still expire).
                outbox.requeueFront(item)
                do { try await clock.sleep(until: last.advanced(by: spacing), tolerance: nil) } catch { break }
                continue
            }
            guard gate.isOpen(for: attempt) else {
                outbox.requeueFront(item)
                continue
            }
            do {
                var request = Meshtastic_ToRadio()
                request.packet = item.packet
                try await outbound.write(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
                outbox.written()
                lastWrite.withLock { $0[port] = clock.now }
                inputs.yield(.sent(attempt: attempt, item))
            } catch {
                outbox.requeueFront(item)
                return .lost(Self.lossReason(forWriteError: error))
            }
        }
        // Cancelled: the session is ending for another reason, which is the one reported.
        return .lost(.transportClosed)
    }
}
