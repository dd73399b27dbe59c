import Logging
import MeshtasticProtocol
import NIOCore
import Synchronization

/// The supervisor of one slot's radio: opens the transport, runs the handshake, reads and
/// writes, and after any loss closes the transport, cools down and tries again, until it is
/// cancelled.
///
/// ``run()`` cannot throw. Each session's children (reader, writer, init timer) run in one
/// task group; whatever ends a child, an error included, becomes a ``LossReason`` handed to
/// the ``LinkStateMachine``, and the loop goes on.
public final class RadioLink: Sendable {
    public let slot: String
    public let transport: any RadioTransport
    public let timing: LinkTiming
    let outbox: Outbox
    let events: AsyncStream<RadioLinkEvent>.Continuation
    let logger: Logger
    private let machine: Mutex<LinkStateMachine>

    /// A link and the stream of its events; the broker consumes the stream.
    public static func make(
        slot: String,
        transport: any RadioTransport,
        timing: LinkTiming = LinkTiming(),
        outboxCapacity: Int = 64,
        logger: Logger
    ) -> (RadioLink, AsyncStream<RadioLinkEvent>) {
        let (stream, continuation) = AsyncStream<RadioLinkEvent>.makeStream()
        let link = RadioLink(slot: slot, transport: transport, timing: timing, outboxCapacity: outboxCapacity, events: continuation, logger: logger)
        return (link, stream)
    }

    private init(slot: String, transport: any RadioTransport, timing: LinkTiming, outboxCapacity: Int, events: AsyncStream<RadioLinkEvent>.Continuation, logger: Logger) {
        self.slot = slot
        self.transport = transport
        self.timing = timing
        self.outbox = Outbox(capacity: outboxCapacity)
        self.events = events
        self.logger = logger
        self.machine = Mutex(LinkStateMachine(cooldown: timing.reconnectCooldown))
    }

    /// The current state.
    public var state: LinkStateMachine.State { machine.withLock { $0.state } }

    /// Packets accepted but not yet written.
    public var queueDepth: Int { outbox.count }

    /// Queues a packet for the radio; it is written once the link is ready. False if full.
    public func enqueue(_ packet: OutgoingPacket) -> Bool { outbox.enqueue(packet) }

    /// Runs until cancelled. Never throws; ends with the state `stopped`.
    public func run() async {
        var action = transition { $0.start() }
        while true {
            if Task.isCancelled, !isStopAction(action) { action = transition { $0.stop() } }
            switch action {
            case .open(let attempt):
                action = await connect(attempt: attempt)
            case .closeAndWait(let reason, let wasReady, let cooldown):
                if wasReady { events.yield(.lost(reason)) }
                logger.info("link down", metadata: ["slot": "\(slot)", "reason": "\(reason.rawValue)", "retryIn": "\(cooldown)"])
                do {
                    try await ContinuousClock().sleep(for: cooldown)
                    action = transition { $0.cooldownElapsed() }
                } catch {
                    action = transition { $0.stop() }
                }
            case .closeAndStop(let wasReady):
                if wasReady { events.yield(.lost(.shutdown)) }
                events.finish()
                return
            case .requestConfig, .becomeReady, .none:
                // Session actions are carried out inside `connect`; nothing else can be pending.
                action = transition { $0.failed(.transportClosed) }
                if action == .none { action = transition { $0.stop() } }
            }
        }
    }

    private func isStopAction(_ action: LinkStateMachine.Action) -> Bool {
        if case .closeAndStop = action { return true }
        return false
    }

    /// Applies one event to the machine and publishes the state change it caused.
    private func transition(_ event: (inout LinkStateMachine) -> LinkStateMachine.Action) -> LinkStateMachine.Action {
        let (action, previous, current) = machine.withLock { machine in
            let previous = machine.state
            let action = event(&machine)
            return (action, previous, machine.state)
        }
        if previous != current { events.yield(.stateChanged(current, previous: previous)) }
        return action
    }

    /// One attempt: open, handshake, serve until the link is lost. Returns the next action.
    private func connect(attempt: Int) async -> LinkStateMachine.Action {
        let channel: StreamChannel
        do {
            channel = try await transport.open()
        } catch {
            logger.debug("open failed", metadata: ["slot": "\(slot)", "transport": "\(transport)", "error": "\(error)"])
            return transition { $0.failed(.transportClosed) }
        }
        let nonce = Self.makeNonce()
        guard case .requestConfig = transition({ $0.opened(nonce: nonce) }) else {
            try? await channel.channel.close()
            return transition { $0.stop() }
        }
        let reason = await serve(channel, nonce: nonce, attempt: attempt)
        if Task.isCancelled { return transition { $0.stop() } }
        return transition { $0.failed(reason) }
    }

    /// A random `want_config_id`, never 0 nor the firmware's special 69420/69421.
    static func makeNonce() -> UInt32 {
        var nonce: UInt32
        repeat { nonce = UInt32.random(in: 1...UInt32.max) } while nonce == 69420 || nonce == 69421
        return nonce
    }

    private func serve(_ channel: StreamChannel, nonce: UInt32, attempt: Int) async -> LossReason {
        do {
            return try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(.raw(ByteBuffer(bytes: StreamFraming.wakeSequence)))
                var request = Meshtastic_ToRadio()
                request.wantConfigID = nonce
                try await outbound.write(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
                let (readySignal, readyContinuation) = AsyncStream<Void>.makeStream()
                return await withTaskGroup(of: LossReason.self) { group in
                    group.addTask { await self.read(inbound, attempt: attempt, ready: readyContinuation) }
                    group.addTask { await self.write(outbound, after: readySignal) }
                    group.addTask { await self.initTimer() }
                    let first = await group.next() ?? .transportClosed
                    group.cancelAll()
                    return first
                }
            }
        } catch {
            return .writeFailed
        }
    }

    private func read(_ inbound: NIOAsyncChannelInboundStream<StreamItem>, attempt: Int, ready: AsyncStream<Void>.Continuation) async -> LossReason {
        defer { ready.finish() }
        var info = LinkInfo(myNodeNum: 0, firmware: "", nodeCount: 0, attempt: attempt)
        var isReady = false
        do {
            for try await item in inbound {
                let payload: ByteBuffer
                switch item {
                case .logLine(let line):
                    events.yield(.logLine(line))
                    continue
                case .frame(let frame):
                    payload = frame
                }
                let raw = Array(payload.readableBytesView)
                guard let message = try? Meshtastic_FromRadio(serializedBytes: raw) else {
                    events.yield(.undecodableFrame(length: raw.count))
                    continue
                }
                switch message.payloadVariant {
                case .myInfo(let myInfo): info.myNodeNum = myInfo.myNodeNum
                case .metadata(let metadata): info.firmware = metadata.firmwareVersion
                case .nodeInfo: if !isReady { info.nodeCount += 1 }
                case .rebooted(true): return .radioRebooted
                case .configCompleteID(let id):
                    if case .becomeReady = transition({ $0.configComplete(id: id) }) {
                        isReady = true
                        events.yield(.established(info))
                        ready.yield()
                        logger.info("link ready", metadata: ["slot": "\(slot)", "attempt": "\(attempt)", "nodes": "\(info.nodeCount)"])
                    }
                default: break
                }
                events.yield(.fromRadio(message, raw: raw, backlog: !isReady))
            }
        } catch {
            logger.debug("read failed", metadata: ["slot": "\(slot)", "error": "\(error)"])
        }
        return .transportClosed
    }

    private func write(_ outbound: NIOAsyncChannelOutboundWriter<StreamOutbound>, after ready: AsyncStream<Void>) async -> LossReason {
        var signal = ready.makeAsyncIterator()
        guard await signal.next() != nil else { return .transportClosed }
        while let item = await outbox.next() {
            do {
                var request = Meshtastic_ToRadio()
                request.packet = item.packet
                try await outbound.write(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
                events.yield(.sent(item))
            } catch {
                outbox.requeueFront(item)
                return .writeFailed
            }
        }
        return .transportClosed
    }

    private func initTimer() async -> LossReason {
        do {
            try await ContinuousClock().sleep(for: timing.interfaceInitTimeout)
        } catch {
            return .transportClosed
        }
        if case .ready = state {
            // The handshake finished in time; stay out of the way until the session ends.
            while !Task.isCancelled { try? await ContinuousClock().sleep(for: .seconds(3600)) }
            return .transportClosed
        }
        return .initTimeout
    }
}
