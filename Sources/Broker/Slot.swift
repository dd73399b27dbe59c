import Logging
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Synchronization
import VirtualRadio

import struct Foundation.Data

/// One radio slot: its link, node DB, event sequence, replay ring, duplicate window, send
/// ledger and virtual radio port. Nothing is shared between slots.
///
/// Every change of the slot's state and the event that reports it happen under one lock,
/// together with the `seq` the event gets and its hand-over to the publisher, so events go
/// out in `seq` order and a snapshot is exactly current at the `seq` it reports.
final class Slot: Sendable {
    let name: String
    private let control: Mutex<Control>
    private let sink: EventSink
    /// `{"schema":1,"broker":…,"slot":…`, the start of every envelope this slot publishes.
    private let envelopeHead: [UInt8]
    private let outboxCapacity: Int
    private let replayCapacity: Int
    private let state: Mutex<State>
    private let metrics: SlotMetrics
    private let logger: Logger
    /// Existing Meshtastic clients sharing this slot's radio; see ``VirtualRadio``.
    private let virtualRadio: VirtualRadio
    /// The port it listens on now (nil without one), and where a new one goes to be served.
    private let listener: Mutex<VirtualRadioListener?>
    private let listenerStarts: AsyncStream<VirtualRadioListener>.Continuation
    private let listenerStream: AsyncStream<VirtualRadioListener>
    /// Carries every link's events to ``handle(_:)``; a link is made while the slot is still
    /// being initialised (and again on a reload), before `self` can be handed out.
    private let relay = EventRelay()

    /// One link (and its in-process simulator) with the configuration it was made from. A
    /// reload that changes the slot replaces the generation; everything else (seq, node DB,
    /// replay ring, send ledger, waiting packets) carries over.
    private struct Generation: Sendable {
        var configuration: SlotConfiguration
        let link: RadioLink<ContinuousClock>
        let simulator: RadioSimulator?
    }

    /// The running generation, the one to run after it (a reload), and whether the slot
    /// is stopping (with the error its unsettled sends end with). One lock, so a stop and a
    /// replacement can never miss each other.
    private struct Control: Sendable {
        var current: Generation
        var replacement: Generation?
        var stopping: String?
    }

    private struct State {
        var seq: UInt64 = 0
        var ring: ReplayRing
        var nodes: [UInt32: JSONObject] = [:]
        var myInfo: JSONValue = .null
        var metadata: JSONValue = .null
        var channels: [Int: JSONValue] = [:]
        var config = JSONObject()
        var moduleConfig = JSONObject()
        var myNodeNum: UInt32?
        var reconnects = 0
        var established = false
        var duplicates = DuplicateWindow<ContinuousClock.Instant>()
        var duplicateCount = 0
        var undecodableFrames = 0
        var ledger = SendLedger<ContinuousClock.Instant>()
        var sendOutcomes: [String: Int] = [:]
        /// Virtual clients' packets that failed, to be told to their clients once the lock is
        /// released (the virtual radio's lock comes before this one).
        var virtualFailures: [(packetID: UInt32, error: Meshtastic_Routing.Error)] = []
    }

    /// How often sends past their `ttlSeconds` are looked for.
    static let expiryInterval = Duration.milliseconds(250)
    /// How a virtual client's sends are named in `requestId`: `virtualRadio:<address>:<port>`.
    static let virtualRequestPrefix = "virtualRadio:"

    init(configuration: SlotConfiguration, outboxCapacity: Int, replayCapacity: Int, sink: EventSink, logger: Logger) async throws {
        name = configuration.name
        self.sink = sink
        envelopeHead = sink.envelopeHead(slot: configuration.name)
        self.outboxCapacity = outboxCapacity
        self.replayCapacity = replayCapacity
        self.logger = logger
        metrics = SlotMetrics(slot: configuration.name)
        state = Mutex(State(ring: ReplayRing(capacity: replayCapacity)))
        virtualRadio = VirtualRadio(slot: configuration.name, logger: logger)
        (listenerStream, listenerStarts) = AsyncStream<VirtualRadioListener>.makeStream()
        var bound: VirtualRadioListener?
        if let settings = configuration.virtualRadio { bound = try await VirtualRadio.bind(settings) }
        listener = Mutex(bound)
        if let bound { listenerStarts.yield(bound) }
        do {
            control = Mutex(Control(current: try await Self.makeGeneration(configuration, outboxCapacity: outboxCapacity, relay: relay, logger: logger)))
        } catch {
            await bound?.close()
            throw error
        }
        relay.attach(self)
    }

    private static func makeGeneration(
        _ configuration: SlotConfiguration, outboxCapacity: Int, relay: EventRelay, logger: Logger
    ) async throws -> Generation {
        let transport: any RadioTransport
        var simulator: RadioSimulator?
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
        }
        let link = RadioLink(
            slot: configuration.name,
            transport: transport,
            timing: configuration.timing,
            clock: ContinuousClock(),
            outboxCapacity: outboxCapacity,
            logger: logger,
            onEvent: relay.deliver
        )
        return Generation(configuration: configuration, link: link, simulator: simulator)
    }

    /// The running link.
    var link: RadioLink<ContinuousClock> { control.withLock { $0.current.link } }

    /// The configuration the running link was made from.
    var configuration: SlotConfiguration { control.withLock { $0.current.configuration } }

    /// Runs link after link (a reload may replace one) and publishes what they report, until
    /// the slot is stopped or removed. Sends still in flight then end `failed`.
    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.expireSends() }
            group.addTask {
                await withDiscardingTaskGroup { listeners in
                    for await listener in self.listenerStream { listeners.addTask { await self.virtualRadio.serve(listener, host: self) } }
                }
            }
            var generation = control.withLock { $0.current }
            var failure = "shutdown"
            while true {
                await run(generation)
                let upcoming: Generation? = control.withLock { control in
                    guard control.stopping == nil, let replacement = control.replacement else { return nil }
                    // Waiting packets move to the new link under the lock that publishes it, so
                    // a send accepted meanwhile lands in one outbox or the other, never lost.
                    for item in control.current.link.takeOutbox() { _ = replacement.link.enqueue(item) }
                    control.current = replacement
                    control.replacement = nil
                    return replacement
                }
                guard let upcoming else {
                    failure = control.withLock { $0.stopping } ?? failure
                    break
                }
                generation = upcoming
                virtualRadio.outboxDrained(room: outboxRoom)
            }
            state.withLock { state in
                for update in state.ledger.failAll(error: failure) { publishStatus(update, in: &state) }
            }
            tellVirtualClientsOfFailures()
            listenerStarts.finish()
            group.cancelAll()
        }
    }

    /// Runs one link until it stops; its events reach ``handle(_:)`` on this task.
    private func run(_ generation: Generation) async {
        await withDiscardingTaskGroup { group in
            if let simulator = generation.simulator { group.addTask { await simulator.run() } }
            await generation.link.run()
            group.cancelAll()
        }
    }

    /// Applies a reload that changed the slot. A changed radio or timing replaces the link: the
    /// old one closes with `connection.lost` `reason: reload`, the new one connects. A changed
    /// virtual radio port is closed (its clients with it) and opened anew, the link untouched.
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
            control.withLock { $0.current.configuration = configuration }
            return
        }
        let replacement = try await Self.makeGeneration(configuration, outboxCapacity: outboxCapacity, relay: relay, logger: logger)
        let running = control.withLock { control in
            control.replacement = replacement
            return control.current.link
        }
        running.shutdown(reason: .reload)
    }

    /// Closes the virtual radio port and its clients; returns once the port is free.
    func closeVirtualRadio() async {
        await listener.withLock { $0.take() }?.close()
    }

    private func openVirtualRadio(_ settings: VirtualRadioConfiguration?) async throws {
        guard let settings else { return }
        let bound = try await VirtualRadio.bind(settings)
        listener.withLock { $0 = bound }
        listenerStarts.yield(bound)
    }

    /// Closes the radio for good. `removed` means the slot left the configuration: a ready
    /// link reports `reload`, sends in flight fail with `slot_removed`.
    func stop(removed: Bool = false) {
        listener.withLock { $0.take() }?.beginClosing()
        let running = control.withLock { control in
            control.stopping = removed ? "slot_removed" : "shutdown"
            return control.current.link
        }
        if removed {
            metrics.destroyGauges()
            virtualRadio.destroyGauges()
        }
        running.shutdown(reason: removed ? .reload : .shutdown)
    }

    private func expireSends() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: Self.expiryInterval) } catch { return }
            let expired = state.withLock { state in
                let updates = state.ledger.expire(now: .now) { link.removeFromOutbox(packetID: $0) }
                for update in updates { publishStatus(update, in: &state) }
                return !updates.isEmpty
            }
            if expired {
                tellVirtualClientsOfFailures()
                virtualRadio.outboxDrained(room: outboxRoom)
            }
        }
    }

    /// Sends the Routing NAKs for virtual clients' failed packets, outside the state lock.
    private func tellVirtualClientsOfFailures() {
        let failures = state.withLock { state in
            defer { state.virtualFailures.removeAll() }
            return state.virtualFailures
        }
        for failure in failures { virtualRadio.sendFailed(radioPacketID: failure.packetID, error: failure.error) }
    }

    // MARK: Events

    /// Gives the event the next `seq`, hands it to the publisher and keeps it for replay.
    /// `writeFields` appends the event's fields as `,"key":value` members; its result is returned.
    @discardableResult
    private func publish<Result>(
        _ topic: String, port: String? = nil, raw: [UInt8]? = nil, in state: inout State, writeFields: (inout [UInt8]) -> Result
    ) -> Result {
        state.seq += 1
        metrics.eventsPublished.increment()
        let (entry, result) = sink.publish(slot: name, head: envelopeHead, topic: topic, port: port, seq: state.seq, raw: raw, writeFields: writeFields)
        state.ring.append(entry)
        return result
    }

    private func publish(_ topic: String, _ fields: JSONObject, in state: inout State) {
        publish(topic, in: &state) { Envelope.writeMembers(fields, to: &$0) }
    }

    private func publish(_ topic: String, _ fields: JSONObject) {
        state.withLock { publish(topic, fields, in: &$0) }
    }

    private func publishStatus(_ update: SendLedger<ContinuousClock.Instant>.Update, in state: inout State) {
        var fields: JSONObject = [
            "packetId": .int(update.packetID),
            "requestId": update.requestID.map(JSONValue.string) ?? .null,
            "status": .string(update.status.rawValue),
        ]
        if let error = update.error { fields["error"] = .string(error) }
        if update.isTerminal {
            state.sendOutcomes[update.status.rawValue, default: 0] += 1
            metrics.sendFinished(update.status.rawValue)
            if update.requestID?.hasPrefix(Self.virtualRequestPrefix) == true, update.status == .expired || update.status == .failed {
                // A radio that gives up on a packet says so with a NAK; so does MeshBus.
                state.virtualFailures.append((update.packetID, update.status == .expired ? .timeout : .noInterface))
            }
        }
        publish(Topic.sendStatus, fields, in: &state)
    }

    fileprivate func handle(_ event: RadioLinkEvent) {
        switch event {
        case .stateChanged(let current, let previous):
            publish(Topic.state, [
                "state": .string(current.name),
                "previous": .string(previous.name),
                "strikes": .int(current.strikes),
                "attempt": .int(current.attempt),
                "retryInSeconds": current.retryIn.map { .double($0.inSeconds) } ?? .null,
            ])
        case .established(let info):
            state.withLock { state in
                state.myNodeNum = info.myNodeNum
                if state.established {
                    state.reconnects += 1
                    metrics.reconnects.increment()
                }
                state.established = true
                publish(Topic.established, [
                    "myNodeNum": .int(info.myNodeNum), "firmware": .string(info.firmware), "nodeCount": .int(info.nodeCount), "attempt": .int(info.attempt),
                ], in: &state)
            }
            virtualRadio.linkReady()
        case .lost(let reason):
            metrics.lost(reason)
            publish(Topic.lost, ["reason": .string(reason.rawValue)])
            virtualRadio.linkLost()
        case .probeAnswered(let roundTrip):
            metrics.probeRoundTrip.record(duration: roundTrip)
        case .fromRadio(let message, let raw, let backlog):
            handle(message, raw: raw, backlog: backlog)
            virtualRadio.radio(message, raw: raw)
        case .sent(let item):
            state.withLock { state in
                publish(Topic.sent, raw: (try? item.packet.serializedBytes()) ?? [], in: &state) { out in
                    out.append(contentsOf: ",\"packet\":".utf8)
                    PacketJSON.write(item.packet, to: &out)
                    Envelope.writeMember("requestId", item.requestID.map(JSONValue.string) ?? .null, to: &out)
                }
                if let update = state.ledger.written(packetID: item.packet.id) { publishStatus(update, in: &state) }
            }
            virtualRadio.outboxDrained(room: outboxRoom)
        case .logLine(let line):
            publish(Topic.log, ["line": .string(line), "level": .null])
        case .undecodableFrame(let length):
            state.withLock { $0.undecodableFrames += 1 }
            metrics.undecodableFrames.increment()
            logger.debug("undecodable frame dropped", metadata: ["slot": "\(name)", "length": "\(length)"])
        }
    }

    private func handle(_ message: Meshtastic_FromRadio, raw: [UInt8], backlog: Bool) {
        switch message.payloadVariant {
        case .packet(let packet):
            metrics.packetsReceived.increment()
            state.withLock { state in
                guard !state.duplicates.isDuplicate(from: packet.from, id: packet.id, now: .now) else {
                    state.duplicateCount += 1
                    metrics.duplicates.increment()
                    return
                }
                // Frame 3 is the packet as the radio sent it, cut out of the frame; encoding
                // it again is the fallback for a frame that carries it in parts.
                let packetBytes = ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: raw).map(Array.init) ?? (try? packet.serializedBytes()) ?? []
                let summary = publish(Topic.receive, port: PacketJSON.portName(packet), raw: packetBytes, in: &state) { out in
                    out.append(contentsOf: ",\"packet\":".utf8)
                    let summary = PacketJSON.write(packet, to: &out)
                    out.append(contentsOf: (backlog ? ",\"backlog\":true" : ",\"backlog\":false").utf8)
                    return summary
                }
                settleSend(from: packet, summary: summary, in: &state)
                updateNode(from: packet, summary: summary, in: &state)
            }
        case .myInfo(let info):
            state.withLock { $0.myInfo = PacketJSON.message(info) }
        case .metadata(let metadata):
            state.withLock { $0.metadata = PacketJSON.message(metadata) }
        case .channel(let channel):
            state.withLock { $0.channels[Int(channel.index)] = PacketJSON.message(channel) }
        case .config(let config):
            state.withLock { Self.merge(PacketJSON.message(config), into: &$0.config) }
        case .moduleConfig(let config):
            state.withLock { Self.merge(PacketJSON.message(config), into: &$0.moduleConfig) }
        case .nodeInfo(let info):
            if let node = PacketJSON.message(info).objectValue { state.withLock { mergeNode(info.num, node.entries, in: &$0) } }
        case .logRecord(let record):
            let level = PacketJSON.message(record)["level"] ?? .null
            publish(Topic.log, ["line": .string(record.message), "level": level])
        case .queueStatus(let status):
            let refused = state.withLock { state in
                publish(Topic.queueStatus, PacketJSON.message(status).objectValue ?? JSONObject(), in: &state)
                guard status.res != 0, status.meshPacketID != 0,
                    let update = state.ledger.refused(packetID: status.meshPacketID, error: "queue_status_res_\(status.res)")
                else { return false }
                publishStatus(update, in: &state)
                return true
            }
            // Every probe answer is a queue status; only a refusal can have failed a client's packet.
            if refused { tellVirtualClientsOfFailures() }
        case .clientNotification(let notification):
            var fields = PacketJSON.message(notification).objectValue ?? JSONObject()
            // Its own `time` (seconds since 1970) would clash with the envelope's `time`.
            if let time = fields["time"] {
                fields["time"] = nil
                fields["notificationTime"] = time
            }
            publish(Topic.clientNotification, fields)
        default:
            break
        }
    }

    /// Adds the sections of one config message (`{"lora": {…}}`) to the handshake's config.
    private static func merge(_ section: JSONValue, into config: inout JSONObject) {
        for entry in section.objectValue?.entries ?? [] { config[entry.key] = entry.value }
    }

    /// A Routing reply to one of our sends settles it: ACK or NAK with the error's name.
    private func settleSend(from packet: Meshtastic_MeshPacket, summary: PacketJSONSummary, in state: inout State) {
        guard case .decoded(let data)? = packet.payloadVariant, data.portnum == .routingApp, data.requestID != 0 else { return }
        let error = summary[payload: "routing"]?["errorReason"]?.stringValue
        if let update = state.ledger.routingReply(requestID: data.requestID, error: error) { publishStatus(update, in: &state) }
    }

    /// Folds what a packet says about its sender into the node DB, like the Python library.
    private func updateNode(from packet: Meshtastic_MeshPacket, summary: PacketJSONSummary, in state: inout State) {
        guard packet.from != 0, packet.from != NodeNumber.broadcast else { return }
        var update: [(key: String, value: JSONValue)] = []
        if packet.rxTime != 0 { update.append(("lastHeard", .int(packet.rxTime))) }
        if packet.rxSnr != 0 { update.append(("snr", PacketJSON.float(packet.rxSnr))) }
        switch packet.payloadVariant {
        case .decoded(let data) where data.portnum == .nodeinfoApp:
            if let user = summary[payload: "user"] { update.append(("user", user)) }
        case .decoded(let data) where data.portnum == .positionApp:
            if let position = summary[payload: "position"] { update.append(("position", position)) }
        case .decoded(let data) where data.portnum == .telemetryApp:
            if let metrics = summary[payload: "telemetry"]?["deviceMetrics"] { update.append(("deviceMetrics", metrics)) }
        default:
            break
        }
        mergeNode(packet.from, update, in: &state)
    }

    /// Sets the update's keys on the node (creating it); publishes `node.updated` if that
    /// created or changed it. Only the updated keys are compared, in place in the DB.
    private func mergeNode(_ num: UInt32, _ update: [(key: String, value: JSONValue)], in state: inout State) {
        var changed = false
        if state.nodes[num] == nil {
            state.nodes[num] = ["num": .int(num)]
            changed = true
        }
        Self.apply(update, to: &state.nodes[num, default: JSONObject()], changed: &changed)
        guard changed, let node = state.nodes[num] else { return }
        publish(Topic.nodeUpdated, in: &state) { Envelope.writeMember("node", .object(node), to: &$0) }
    }

    /// Sets each non-null value whose key differs, in place (the node is not copied out of the DB).
    private static func apply(_ update: [(key: String, value: JSONValue)], to node: inout JSONObject, changed: inout Bool) {
        for (key, value) in update where value != .null && node[key] != value {
            node[key] = value
            changed = true
        }
    }

    // MARK: Commands

    /// Sets the slot's gauges from its current state (just before a metrics scrape).
    func refreshGauges() {
        let (linkState, outboxDepth) = control.withLock { ($0.current.link.state, $0.current.link.queueDepth) }
        let reading = state.withLock { state in
            SlotMetrics.Reading(
                state: linkState, outboxDepth: outboxDepth, pendingSends: state.ledger.pending, replayHeld: state.ring.count,
                replayCapacity: replayCapacity, nodes: state.nodes.count
            )
        }
        metrics.record(reading)
    }

    func status() -> JSONObject {
        let link = link.status
        // Read before the state lock: the virtual radio takes its own lock, then the slot's.
        let (virtualClients, virtualRadio) = (self.virtualRadio.clientCount, virtualRadioStatus())
        return state.withLock { state in
            [
                "state": .string(link.state.name),
                "ready": .bool(link.state.isReady),
                "strikes": .int(link.state.strikes),
                "lastProbeOkAgoSeconds": link.sinceLastProbeSuccess.map { .double($0.inSeconds) } ?? .null,
                "attempt": .int(link.state.attempt),
                "retryInSeconds": link.state.retryIn.map { .double($0.inSeconds) } ?? .null,
                "reconnects": .int(state.reconnects),
                "transport": .string(self.link.transport.kind),
                "myNodeNum": state.myNodeNum.map { .int($0) } ?? .null,
                "queueDepth": .int(self.link.queueDepth),
                "pendingSends": .int(state.ledger.pending),
                "sends": .object(JSONObject(uniqueKeysWithValues: state.sendOutcomes.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
                "lastSeq": .int(state.seq),
                "replayHeld": .int(state.ring.count),
                "nodeCount": .int(state.nodes.count),
                "duplicates": .int(state.duplicateCount),
                "undecodableFrames": .int(state.undecodableFrames),
                "virtualClients": .int(virtualClients),
                "virtualRadio": virtualRadio,
            ]
        }
    }

    /// Where the virtual radio port listens (`host:port`, the bound port), nil without one.
    var virtualRadioAddress: String? {
        listener.withLock { $0?.address }
    }

    /// The virtual radio port's address and counters, null without one.
    private func virtualRadioStatus() -> JSONValue {
        guard let listener = listener.withLock({ $0 }) else { return .null }
        let counters = virtualRadio.counters
        return .object([
            "address": virtualRadioAddress.map(JSONValue.string) ?? .null,
            "allowAdmin": .bool(listener.configuration.allowAdmin),
            "clients": .int(virtualRadio.clientCount),
            "connections": .int(counters.connections),
            "turnedAway": .int(counters.turnedAway),
            "handshakes": .int(counters.handshakes),
            "packets": .int(counters.packets),
            "outboxFull": .int(counters.outboxFull),
            "adminRefused": .int(counters.adminRefused),
            "framesDropped": .int(counters.framesDropped),
            "undecodable": .int(counters.undecodable),
            "ignored": .int(counters.ignored),
            "failedSends": .int(counters.failedSends),
        ])
    }

    /// The node DB keyed by node id (`!%08x`), like the Python library's `nodes`.
    private static func nodeTable(_ nodes: [UInt32: JSONObject]) -> JSONValue {
        .object(JSONObject(uniqueKeysWithValues: nodes.sorted { $0.key < $1.key }.map { (NodeNumber.id($0.key), .object($0.value)) }))
    }

    func nodes() -> JSONObject {
        state.withLock { ["nodes": Self.nodeTable($0.nodes), "seq": .int($0.seq)] }
    }

    /// Everything a consumer needs to start from, current at `seq`: apply events with a
    /// greater `seq` on top.
    func snapshot() -> JSONObject {
        let linkState = link.state
        return state.withLock { state in
            [
                "seq": .int(state.seq),
                "state": .string(linkState.name),
                "myInfo": state.myInfo,
                "metadata": state.metadata,
                "nodes": Self.nodeTable(state.nodes),
                "channels": .array(state.channels.sorted { $0.key < $1.key }.map(\.value)),
                "config": .object(state.config),
                "moduleConfig": .object(state.moduleConfig),
            ]
        }
    }

    /// The events after `sinceSeq` still held, each as its frames: `topic`, `envelope`, and
    /// `raw` (base64 of frame 3) where the event has one.
    func replay(sinceSeq: UInt64, limit: Int) throws(CommandError) -> JSONObject {
        let (entries, lastSeq): ([ReplayRing.Entry], UInt64) = try state.withLock { state throws(CommandError) in
            do {
                return (try state.ring.events(after: sinceSeq, limit: limit), state.seq)
            } catch let gap as ReplayRing.GapTooOld {
                throw .gapTooOld(name, sinceSeq: sinceSeq, oldest: gap.oldestSeq)
            } catch {
                throw .internalError("replay failed: \(error)")
            }
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
        return try state.withLock { state throws(CommandError) -> UInt32 in
            var packet = Meshtastic_MeshPacket()
            packet.to = request.to
            packet.channel = request.channel
            packet.id = Self.freshPacketID(avoiding: state.ledger)
            packet.wantAck = request.wantAck
            packet.hopLimit = request.hopLimit
            packet.decoded.portnum = request.portnum
            packet.decoded.payload = Data(request.payload)
            packet.decoded.replyID = request.replyID
            let ttl = Duration.milliseconds(Int64((request.ttlSeconds * 1000).rounded()))
            guard enqueue(packet, requestID: requestID, ttl: ttl, in: &state) else { throw .queueFull(name, capacity: outboxCapacity) }
            return packet.id
        }
    }

    /// Puts a packet in the outbox and opens its ledger entry (`queued`); false if the
    /// outbox is full. Under the state lock, so its `sent` cannot be handled before.
    private func enqueue(_ packet: Meshtastic_MeshPacket, requestID: String?, ttl: Duration, in state: inout State) -> Bool {
        guard control.withLock({ $0.current.link.enqueue(OutgoingPacket(packet: packet, requestID: requestID)) }) else { return false }
        publishStatus(state.ledger.accept(packetID: packet.id, requestID: requestID, wantAck: packet.wantAck, ttl: ttl, now: .now), in: &state)
        return true
    }

    private static func freshPacketID(avoiding ledger: SendLedger<ContinuousClock.Instant>) -> UInt32 {
        var packetID: UInt32
        repeat { packetID = UInt32.random(in: 1...UInt32.max) } while ledger.contains(packetID)
        return packetID
    }
}

/// A virtual radio client's packets are sends of the slot like any other: paced, tracked
/// and published, with `requestId` naming the client (`virtualRadio:<address>:<port>`).
extension Slot: VirtualRadioHost {
    func submit(_ packet: Meshtastic_MeshPacket, client: String, ttl: Duration) -> VirtualRadioSubmission {
        state.withLock { state in
            var packet = packet
            if packet.id == 0 || state.ledger.contains(packet.id) { packet.id = Self.freshPacketID(avoiding: state.ledger) }
            packet.from = 0
            guard enqueue(packet, requestID: Self.virtualRequestPrefix + client, ttl: ttl, in: &state) else {
                return .full(room: outboxRoom)
            }
            return .queued(radioPacketID: packet.id, room: outboxRoom)
        }
    }

    var outboxRoom: OutboxRoom {
        OutboxRoom(free: max(0, outboxCapacity - link.queueDepth), capacity: outboxCapacity)
    }
}

/// The built-in simulator reached over loopback TCP; `status` reports it as `simulator`.
struct SimulatorTransport: RadioTransport {
    let tcp: TCPRadioTransport
    var kind: String { "simulator" }
    var description: String { "simulator at \(tcp)" }
    func open() async throws -> StreamChannel { try await tcp.open() }
}

/// Hands a link's events to the slot that owns it. Links are made before their slot is
/// whole (and again on a reload), so they are given this instead of the slot itself. It
/// holds the slot weakly (the slot holds it), and holds no closure: a closure kept in a
/// generic container and read through `inout` gains a reabstraction thunk on every access.
private final class EventRelay: Sendable {
    private struct Target { weak var slot: Slot? }
    private let target = Mutex(Target())

    func attach(_ slot: Slot) {
        target.withLock { $0.slot = slot }
    }

    @Sendable func deliver(_ event: RadioLinkEvent) {
        target.withLock { $0.slot }?.handle(event)
    }
}
