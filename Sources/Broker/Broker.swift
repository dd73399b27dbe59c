import CoreMetrics
import DescriptorBudget
import EventLoopTime
import Logging
import MeshBusModel
import MeshtasticProtocol
import NIOPosix
import RadioLink
import ServiceLifecycle
import SendJournal
import SlotCore
import Synchronization
import WebSerial
import ZeroMQ

/// Where slots publish: the PUB socket, and the broker id every envelope carries.
struct EventSink: Sendable {
    let brokerID: String
    let publisher: EventPublisher
    let hub: EventHub

    /// The start every envelope of `slot` shares (``Envelope/head(broker:slot:)``).
    func envelopeHead(slot: String) -> [UInt8] { Envelope.head(broker: brokerID, slot: slot) }
}

/// The broker's slots run on the continuous clock, their timers on the event loops.
typealias BrokerSlot = Slot<EventLoopClock>

/// The MeshBus broker: owns the slots, publishes their events, answers commands.
///
/// A `Service`: ``run()`` returns when the service group shuts down gracefully (SIGTERM,
/// SIGINT) or the task is cancelled; it does not throw once started. Graceful shutdown stops
/// taking commands, gives the outboxes ``BrokerConfiguration/flushTimeout`` to drain, then
/// closes every radio (`connection.lost` `reason: shutdown`) within ``radioCloseDeadline``.
public final class Broker: Service, Sendable {
    public static let version = "0.1.0"

    /// Random per process: a new value tells consumers the broker restarted.
    public let brokerID: String
    /// The endpoints as bound, with picked ports filled in.
    public let eventEndpoints: [String]
    /// Every slot's events for subscribers in this process (the HTTP streams).
    public let eventHub = EventHub()
    public let commandEndpoints: [String]
    private let context: ZMQContext
    private let authenticator: ZMQAuthenticator
    /// Refuses new ZeroMQ peers while the process is low on file descriptors.
    private let peerGate = DescriptorGate()
    private let publisher: EventPublisher
    private let commands: CommandServer
    private let sink: EventSink
    private let registry: Mutex<Registry>
    /// Slots to run: the initial ones, then those a reload adds. Finished on shutdown.
    private let slotStarts: AsyncStream<BrokerSlot>.Continuation
    private let slotStream: AsyncStream<BrokerSlot>
    private let logger: Logger
    private let started = ContinuousClock.now
    private let commandsAnswered = CoreMetrics.Counter(label: "meshbus_commands_total", dimensions: [("outcome", "ok")])

    /// The configuration in force and the slots made from it, in configuration order.
    private struct Registry {
        var configuration: BrokerConfiguration
        var slots: [String: BrokerSlot]
        var order: [String]
        var shuttingDown = false
        var reloadsApplied = 0
        var reloadsRejected = 0
        var lastReload: JSONValue = .null
    }

    /// Binds the sockets and prepares the slots (starting in-process simulators). Throws if an
    /// endpoint cannot be bound or the security settings refuse one (``BrokerStartError``).
    public init(configuration: BrokerConfiguration, logger: Logger = Logger(label: "meshbus")) async throws {
        try configuration.security.check(endpoints: configuration.events + configuration.commands)
        // Before anything is bound: a journal directory that cannot be used stops the start.
        if let stateDirectory = configuration.stateDirectory { try SendJournal.prepare(directory: stateDirectory) }
        self.logger = logger
        brokerID = Envelope.makeBrokerID()
        context = try ZMQContext()
        let security = configuration.security
        authenticator = try ZMQAuthenticator(context: context) { [peerGate] request in
            if let refusal = peerGate.check() {
                if refusal.shouldLog {
                    logger.warning(
                        "ZeroMQ peer refused: \(refusal) (logged once a minute; ping counts them in peersRefused)",
                        metadata: ["peer": "\(request.address)", "refused": "\(refusal.total)"]
                    )
                }
                return .refuse("the broker is \(refusal)")
            }
            return security.verdict(on: request)
        }
        if let curve = configuration.security.curve {
            logger.info("CURVE on every endpoint", metadata: ["clients": "\(curve.clients.count)"])
        }
        publisher = try EventPublisher(
            context: context, endpoints: configuration.events, subscriberQueue: configuration.subscriberQueue, security: configuration.security
        )
        commands = try CommandServer(context: context, endpoints: configuration.commands, security: configuration.security)
        eventEndpoints = publisher.endpoints
        commandEndpoints = commands.endpoints
        sink = EventSink(brokerID: brokerID, publisher: publisher, hub: eventHub)
        (slotStream, slotStarts) = AsyncStream<BrokerSlot>.makeStream()
        var slots: [String: BrokerSlot] = [:]
        for slotConfiguration in configuration.slots {
            let slot = try await BrokerSlot(
                configuration: slotConfiguration,
                outboxCapacity: configuration.outboxCapacity,
                replayCapacity: configuration.replayCapacity,
                stateDirectory: configuration.stateDirectory,
                sink: sink,
                clock: EventLoopClock(),
                logger: logger
            )
            slots[slotConfiguration.name] = slot
            slotStarts.yield(slot)
        }
        registry = Mutex(Registry(configuration: configuration, slots: slots, order: configuration.slots.map(\.name)))
    }

    /// Each slot's virtual radio port as bound (`host:port`), in configuration order.
    public var virtualRadioAddresses: [(slot: String, address: String)] {
        registry.withLock { registry in registry.order.compactMap { name in registry.slots[name]?.virtualRadioAddress.map { (name, $0) } } }
    }

    /// The configuration in force (the last one applied).
    public var configuration: BrokerConfiguration { registry.withLock { $0.configuration } }

    /// How long the radios get to close cleanly on shutdown before they are cut off.
    static let radioCloseDeadline = Duration.seconds(8)

    private enum Child {
        case slotsEnded, deadlinePassed, commandsEnded, cancelled
    }

    public func run() async {
        await withTaskGroup(of: Child.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { slotGroup in
                    for await slot in self.slotStream { slotGroup.addTask { await slot.run() } }
                }
                return .slotsEnded
            }
            group.addTask {
                await withDiscardingTaskGroup { requests in
                    for await request in self.commands.requests {
                        requests.addTask { await self.answer(request) }
                    }
                }
                return .commandsEnded
            }
            group.addTask {
                // Cancellation skips straight to the end.
                guard (try? await gracefulShutdown()) != nil else { return .cancelled }
                await self.shutDownGracefully()
                guard (try? await Task.sleep(for: Self.radioCloseDeadline)) != nil else { return .cancelled }
                self.logger.warning("radios did not close within the deadline; cutting them off")
                return .deadlinePassed
            }
            // Ends when every slot stopped, the close deadline passed, or on cancellation.
            while let child = await group.next(), child == .commandsEnded {}
            group.cancelAll()
        }
        await commands.stop()
        await publisher.stop()
        await authenticator.stop()
        context.terminate()
        logger.info("broker stopped")
    }

    /// Stops taking commands, lets the outboxes drain for up to the flush timeout, then asks
    /// every radio to close.
    private func shutDownGracefully() async {
        let (slots, flushTimeout) = registry.withLock { registry in
            registry.shuttingDown = true
            return (Array(registry.slots.values), registry.configuration.flushTimeout)
        }
        await commands.stop()
        // Virtual radio clients are command sources too: nothing new comes in while flushing.
        for slot in slots { await slot.closeVirtualRadio() }
        let waiting = slots.reduce(0) { $0 + $1.queueDepth }
        if waiting > 0 {
            logger.info("flushing outboxes", metadata: ["packets": "\(waiting)"])
            // Every outbox empties, or the flush timeout passes: whichever comes first.
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await withDiscardingTaskGroup { outboxes in
                        for slot in slots { outboxes.addTask { await slot.waitUntilOutboxEmpty() } }
                    }
                }
                group.addTask { try? await Task.sleep(for: flushTimeout) }
                await group.next()
                group.cancelAll()
            }
            let left = slots.reduce(0) { $0 + $1.queueDepth }
            if left > 0 { logger.warning("outboxes not flushed in time; their sends fail", metadata: ["packets": "\(left)"]) }
        }
        for slot in slots { slot.stop() }
        slotStarts.finish()
    }

    // MARK: Reload

    /// What applying a new configuration did.
    public struct ReloadReport: Sendable, Equatable, CustomStringConvertible {
        public var added: [String] = []
        public var removed: [String] = []
        public var changed: [String] = []
        public var unchanged: [String] = []
        /// Slots that could not be started (their simulator failed), with why.
        public var failed: [String] = []
        /// Settings that differ but take effect only after a restart.
        public var needRestart: [String] = []

        public var description: String {
            var parts = ["added: \(added)", "removed: \(removed)", "changed: \(changed)", "unchanged: \(unchanged)"]
            if !failed.isEmpty { parts.append("failed: \(failed)") }
            if !needRestart.isEmpty { parts.append("need a restart: \(needRestart)") }
            return parts.joined(separator: ", ")
        }
    }

    /// Applies a new configuration without a restart: added slots start, removed slots close
    /// (`connection.lost` `reason: reload`), changed slots reconnect with their new settings,
    /// unchanged slots are not touched. Endpoints, security and capacities need a restart.
    public func apply(_ new: BrokerConfiguration) async -> ReloadReport {
        var report = ReloadReport()
        guard let (old, current) = registry.withLock({ $0.shuttingDown ? nil : ($0.configuration, $0.slots) }) else { return report }
        if new.events != old.events { report.needRestart.append("events") }
        if new.commands != old.commands { report.needRestart.append("commands") }
        if new.security != old.security { report.needRestart.append("security") }
        if new.outboxCapacity != old.outboxCapacity { report.needRestart.append("outboxCapacity") }
        if new.replayCapacity != old.replayCapacity { report.needRestart.append("replayCapacity") }
        if new.subscriberQueue != old.subscriberQueue { report.needRestart.append("subscriberQueue") }
        if new.stateDirectory != old.stateDirectory { report.needRestart.append("stateDirectory") }
        // Ports that close (removed slots, moved or changed virtual radios) close before any
        // opens, so a port can pass from one slot to another in one reload.
        let newSlots = Dictionary(new.slots.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (name, slot) in current where newSlots[name]?.virtualRadio != slot.configuration.virtualRadio {
            await slot.closeVirtualRadio()
        }
        let newNames = Set(new.slots.map(\.name))
        for name in old.slots.map(\.name) where !newNames.contains(name) {
            guard let slot = current[name] else { continue }
            registry.withLock { registry in
                registry.slots[name] = nil
                registry.order.removeAll { $0 == name }
            }
            slot.stop(removed: true)
            report.removed.append(name)
        }
        for slotConfiguration in new.slots {
            let name = slotConfiguration.name
            if let slot = current[name] {
                guard slot.configuration != slotConfiguration else {
                    report.unchanged.append(name)
                    continue
                }
                do {
                    try await slot.reconfigure(to: slotConfiguration)
                    report.changed.append(name)
                } catch {
                    report.failed.append("\(name): \(error)")
                }
                continue
            }
            do {
                let slot = try await BrokerSlot(
                    configuration: slotConfiguration, outboxCapacity: old.outboxCapacity, replayCapacity: old.replayCapacity,
                    stateDirectory: old.stateDirectory, sink: sink, clock: EventLoopClock(), logger: logger
                )
                registry.withLock { $0.slots[name] = slot }
                slotStarts.yield(slot)
                report.added.append(name)
            } catch {
                report.failed.append("\(name): \(error)")
            }
        }
        registry.withLock { registry in
            var applied = new
            (applied.events, applied.commands, applied.security) = (old.events, old.commands, old.security)
            (applied.outboxCapacity, applied.replayCapacity) = (old.outboxCapacity, old.replayCapacity)
            (applied.subscriberQueue, applied.stateDirectory) = (old.subscriberQueue, old.stateDirectory)
            applied.slots = new.slots.filter { registry.slots[$0.name] != nil }
            registry.configuration = applied
            registry.order = applied.slots.map(\.name)
        }
        return report
    }

    /// The outcome of one reload attempt, for `ping` and the metrics.
    public enum ReloadOutcome: Sendable {
        case applied(ReloadReport)
        /// The file did not parse; these are its problems.
        case rejected([String])
    }

    /// Records a reload attempt (the reloader reads files; the broker only applies them).
    public func noteReload(_ outcome: ReloadOutcome) {
        let result: String
        let summary: JSONObject
        switch outcome {
        case .applied(let report):
            result = "applied"
            let names = { (list: [String]) in JSONValue.array(list.map(JSONValue.string)) }
            summary = [
                "result": .string(result), "added": names(report.added), "removed": names(report.removed), "changed": names(report.changed),
                "failed": names(report.failed), "needRestart": names(report.needRestart),
            ]
        case .rejected(let problems):
            result = "rejected"
            summary = ["result": .string(result), "problems": .array(problems.map(JSONValue.string))]
        }
        CoreMetrics.Counter(label: "meshbus_config_reloads_total", dimensions: [("result", result)]).increment()
        registry.withLock { registry in
            if result == "applied" { registry.reloadsApplied += 1 } else { registry.reloadsRejected += 1 }
            registry.lastReload = .object(summary)
        }
    }

    // MARK: Metrics

    /// Event subscribers connected to the PUB socket.
    public var subscribers: Int { publisher.subscribers }

    /// Sets every gauge from current state; call just before metrics are read.
    public func refreshGauges() {
        for slot in registry.withLock({ Array($0.slots.values) }) { slot.refreshGauges() }
        Gauge(label: "meshbus_event_subscribers").record(publisher.subscribers)
        Gauge(label: "meshbus_slots").record(registry.withLock { $0.slots.count })
    }

    // MARK: Commands

    func answer(_ request: CommandRequest) async {
        let reply = await offTheEventLoopWhenJournaling { self.respond(to: CommandEnvelope(parsing: request.body), role: request.role).reply }
        commands.reply(to: request, with: reply)
    }

    /// Answers one command request body as the command socket does (design.md §4), for the
    /// other ways in (HTTP): the reply object, and the error code when it is a refusal.
    /// `role` is the client's under CURVE or tokens; nil trusts it fully.
    public func respond(toRequest body: [UInt8], role: ClientRole?) async -> (reply: JSONValue, errorCode: String?) {
        await offTheEventLoopWhenJournaling { self.respond(to: CommandEnvelope(parsing: body), role: role) }
    }

    /// With a send journal, a send is answered only once it is on the disk (`fdatasync`),
    /// which on an SD card can take tens of milliseconds: commands are then answered on NIO's
    /// blocking pool, so the event loop that carries radio traffic never waits for a disk.
    private func offTheEventLoopWhenJournaling<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        guard registry.withLock({ $0.configuration.stateDirectory != nil }) else { return work() }
        // It fails only without running `work` (the pool stopped, or the task was cancelled first).
        return (try? await NIOThreadPool.singleton.runIfActive(work)) ?? work()
    }

    private func respond(to envelope: CommandEnvelope, role: ClientRole?) -> (reply: JSONValue, errorCode: String?) {
        var reply = JSONObject()
        if let id = envelope.id { reply["id"] = id }
        let outcome = envelope.command.flatMap { command -> Result<JSONObject, CommandError> in
            if command.reachesRadio, role == .read { return .failure(.unauthorized) }
            return execute(command, requestID: envelope.id)
        }
        switch outcome {
        case .success(let result):
            commandsAnswered.increment()
            reply["ok"] = .bool(true)
            reply["result"] = .object(result)
            return (.object(reply), nil)
        case .failure(let error):
            CoreMetrics.Counter(label: "meshbus_commands_total", dimensions: [("outcome", error.code)]).increment()
            reply["ok"] = .bool(false)
            reply["error"] = .object(["code": .string(error.code), "message": .string(error.message)])
            logger.debug("command refused", metadata: ["code": "\(error.code)", "message": "\(error.message)"])
            return (.object(reply), error.code)
        }
    }

    func execute(_ command: Command, requestID: JSONValue?) -> Result<JSONObject, CommandError> {
        Result { () throws(CommandError) -> JSONObject in
            switch command {
            case .ping:
                let reloads: JSONObject = registry.withLock { registry in
                    ["applied": .int(registry.reloadsApplied), "rejected": .int(registry.reloadsRejected), "last": registry.lastReload]
                }
                var ping = MeshBus.Ping(
                    broker: brokerID, version: Self.version, uptimeSeconds: (ContinuousClock.now - started).inSeconds,
                    subscribers: publisher.subscribers, peersRefused: peerGate.refused
                ).jsonMembers
                ping["reloads"] = .object(reloads)
                return ping
            case .status(let name):
                var result = JSONObject()
                let slots: [BrokerSlot] = if let name { [try slot(named: name)] } else { registry.withLock { r in r.order.compactMap { r.slots[$0] } } }
                for slot in slots { result[slot.name] = slot.status().jsonValue }
                return ["slots": .object(result)]
            case .nodes(let name):
                return try slot(named: name).nodes()
            case .snapshot(let name):
                return try slot(named: name).snapshot()
            case .replay(let name, let since, let limit):
                return try slot(named: name).replay(sinceSeq: since, limit: limit)
            case .send(let send):
                let slot = try slot(named: send.slot)
                let id = requestID.flatMap { $0.stringValue ?? ($0 == .null ? nil : $0.jsonString) }
                let packetID = try slot.send(send, requestID: id)
                return MeshBus.SendReceipt(packetId: packetID).jsonMembers
            case .reconnect(let name):
                let slot = try slot(named: name)
                slot.webSerialPort?.release()
                slot.link.reconnect()
                return ["slot": .string(slot.name), "state": .string(slot.link.state.name)]
            case .disconnectForRestart(let name, let settle):
                let slot = try slot(named: name)
                slot.webSerialPort?.holdForRestart()
                slot.link.disconnectForRestart(settle: .milliseconds(Int64(settle * 1000)))
                return ["slot": .string(slot.name), "settleSeconds": .double(settle)]
            }
        }
    }

    /// What a slot still holds of its events after `seq`, for a stream that resumes.
    public enum HeldEvents: Sendable {
        case events([SlotEvent])
        /// The ring no longer holds them all; its oldest is `oldest`.
        case gap(oldest: UInt64)
        /// The seq asked for is beyond this broker's last: the cursor is from an earlier run
        /// (seqs restart with the broker id), so what it names cannot be told apart.
        case ahead(lastSeq: UInt64)
        case unknownSlot
    }

    /// The events of `slot` after `seq` still held (all of them, oldest first).
    public func heldEvents(slot name: String, after seq: UInt64) -> HeldEvents {
        guard let slot = registry.withLock({ $0.slots[name] }) else { return .unknownSlot }
        let (held, lastSeq) = slot.heldEvents(after: seq)
        if seq > lastSeq { return .ahead(lastSeq: lastSeq) }
        switch held {
        case .success(let window): return .events(window.events)
        case .failure(let gap): return .gap(oldest: gap.oldestSeq)
        }
    }

    /// Where a browser attaches to lend its serial port to slot `name`; nil unless it is a `webserial` slot.
    public func webSerialPort(slot name: String) -> WebSerialPort? {
        registry.withLock { $0.slots[name] }?.webSerialPort
    }

    private func slot(named name: String) throws(CommandError) -> BrokerSlot {
        let (slot, known) = registry.withLock { ($0.slots[name], $0.order) }
        guard let slot else { throw .unknownSlot(name, known: known) }
        return slot
    }
}
