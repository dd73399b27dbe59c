import MeshBusModel
import MeshtasticProtocol
import RadioLink

/// One published event, exactly as its frames go out: the topic frame, the envelope, and for
/// packets the raw `MeshPacket`. The replay ring keeps these.
public struct SlotEvent: Sendable, Equatable {
    public var seq: UInt64
    public var topic: [UInt8]
    public var envelope: [UInt8]
    public var raw: [UInt8]?

    public init(seq: UInt64, topic: [UInt8], envelope: [UInt8], raw: [UInt8]?) {
        self.seq = seq
        self.topic = topic
        self.envelope = envelope
        self.raw = raw
    }

    /// The multipart message: topic, envelope, and the raw packet where there is one.
    public var frames: [[UInt8]] {
        if let raw { return [topic, envelope, raw] }
        return [topic, envelope]
    }
}

/// Totals of one slot since it started, read by the metrics at scrape time.
public struct SlotCounters: Sendable, Equatable {
    public var packetsReceived = 0
    public var eventsPublished = 0
    public var duplicates = 0
    public var undecodableFrames = 0
    public var reconnects = 0
    /// Link losses by reason (`probe_strikes`, …).
    public var losses: [String: Int] = [:]
    /// Sends by terminal status (`acked`, `expired`, …).
    public var sends: [String: Int] = [:]

    public init() {}
}

/// Everything a slot knows and decides, as one pure value: the event sequence and replay
/// ring, the node DB, the duplicate window and the send ledger. One function takes each input
/// (what the radio link reported, an outbox answer, a timer) and appends what must happen as
/// ``Action`` values; the driver (``Broker``'s `Slot`) holds it behind one lock and carries
/// the actions out after releasing it, in order.
///
/// Generic over the instant, so its timing (send expiry, the duplicate window) is tested on a
/// mock clock in milliseconds; the wall-clock text of envelopes comes in with each input.
public struct SlotCore<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// What a slot is made with.
    public struct Settings: Sendable {
        public var name: String
        /// `{"schema":1,"broker":…,"slot":…`, the start of every envelope of this slot.
        public var envelopeHead: [UInt8]
        public var replayCapacity: Int
        /// Seeds the packet ids the slot gives sends (random in the broker, fixed in tests).
        public var seed: UInt64

        public init(name: String, envelopeHead: [UInt8], replayCapacity: Int, seed: UInt64) {
            self.name = name
            self.envelopeHead = envelopeHead
            self.replayCapacity = replayCapacity
            self.seed = seed
        }
    }

    /// When an input happens: the instant, for deadlines, and the wall-clock text envelopes carry.
    public struct Moment: Sendable {
        public var instant: Instant
        public var time: String
        /// What `time` was written from, kept in 8 bytes by the replay ring.
        var eventTime: EventTime

        public init(instant: Instant, time: String) {
            self.instant = instant
            self.time = time
            eventTime = .text(time)
        }

        /// `time` written from milliseconds since 1970, as the broker does.
        public init(instant: Instant, millisecondsSince1970: Int64) {
            self.instant = instant
            time = Envelope.timestamp(millisecondsSince1970: millisecondsSince1970)
            eventTime = .milliseconds(millisecondsSince1970)
        }
    }

    public enum Input: Sendable {
        /// Something the slot's radio link reported.
        case link(RadioLinkEvent)
        /// The outbox took a reserved send (see ``reserve(_:requestID:ttl:keepingID:at:)``).
        case accepted(packetID: UInt32)
        /// The outbox was full; the reserved send is dropped unreported (the caller says `queue_full`).
        case refused(packetID: UInt32)
        /// The expiry timer scheduled for this deadline fired.
        case expiryDue(Instant)
        /// A send past its deadline was taken out of the outbox (`removed`), or the writer
        /// held it at that moment (it will be `sent`).
        case removedFromOutbox(packetID: UInt32, removed: Bool)
        /// The slot stops: every send still in flight fails with `error`.
        case stop(error: String)
    }

    public enum Action: Sendable, Equatable {
        /// Hand the event to the PUB socket (it is already in the replay ring).
        case publish(SlotEvent)
        /// Call back with ``Input/expiryDue(_:)`` at this instant. A later schedule replaces
        /// nothing: a timer that fires after a newer one was set is harmless.
        case scheduleExpiry(at: Instant)
        /// Take these sends out of the outbox and answer each with ``Input/removedFromOutbox(packetID:removed:)``.
        case removeFromOutbox([UInt32])
        /// Tell the slot's virtual radio port.
        case virtualRadio(VirtualRadioNotice)
        /// The send reached its terminal status (published just before): the send journal
        /// may forget it.
        case settled(packetID: UInt32)
    }

    /// What the virtual radio port must hear of, in the order it happened.
    public enum VirtualRadioNotice: Sendable, Equatable {
        case linkReady
        case linkLost
        case radio(Meshtastic_FromRadio, raw: [UInt8])
        /// The outbox may have room again.
        case outboxChanged
        /// A client's packet will never reach the radio.
        case sendFailed(packetID: UInt32, error: Meshtastic_Routing.Error)
    }

    /// How a virtual client's sends are named in `requestId`: `virtualRadio:<address>:<port>`.
    public static var virtualRequestPrefix: String { "virtualRadio:" }

    public let settings: Settings
    public private(set) var seq: UInt64 = 0
    public private(set) var nodes = NodeStore()
    public private(set) var counters = SlotCounters()
    public private(set) var myNodeNum: UInt32?
    private var ring: ReplayRing
    private var myInfo: JSONValue = .null
    private var metadata: JSONValue = .null
    private var channels: [Int: JSONValue] = [:]
    private var config = JSONObject()
    private var moduleConfig = JSONObject()
    private var established = false
    private var duplicates = DuplicateWindow<Instant>()
    private var ledger = SendLedger<Instant>()
    /// The deadline an expiry timer is set for, nil if none.
    private var scheduledExpiry: Instant?
    private var generator: SeededGenerator
    /// The last link states with the time each began, oldest first (at most `historyLimit`).
    private var history: [MeshBus.LinkStateSpan] = []
    /// How many state changes `status` reports: an hour of a link that changes once a minute.
    public static var historyLimit: Int { 64 }

    public init(settings: Settings) {
        self.settings = settings
        ring = ReplayRing(capacity: settings.replayCapacity)
        generator = SeededGenerator(seed: settings.seed)
    }

    /// Sends not yet at a terminal status.
    public var pendingSends: Int { ledger.pending }

    /// Events the replay ring holds now.
    public var replayHeld: Int { ring.count }

    // MARK: Inputs

    /// Takes one input; appends what must happen to `actions`, in order. Pre-specialized for
    /// the wall clock the broker runs on: called across modules, the generic form looked up
    /// the metadata of every generic type inside (the ledger, the window, their entries) per
    /// event.
    @_specialize(exported: true, where Instant == ContinuousClock.Instant)
    public mutating func handle(_ input: Input, at now: Moment, into actions: inout [Action]) {
        switch input {
        case .link(let event):
            handle(event, at: now, into: &actions)
        case .accepted(let packetID):
            for update in ledger.accept(packetID: packetID) { publishStatus(update, at: now, into: &actions) }
        case .refused(let packetID):
            ledger.release(packetID: packetID)
        case .expiryDue(let deadline):
            if scheduledExpiry == deadline { scheduledExpiry = nil }
            let (expired, waiting) = ledger.expire(now: now.instant)
            for update in expired { publishStatus(update, at: now, into: &actions) }
            if !waiting.isEmpty { actions.append(.removeFromOutbox(waiting)) }
            if !expired.isEmpty { actions.append(.virtualRadio(.outboxChanged)) }
        case .removedFromOutbox(let packetID, let removed):
            guard removed else {
                ledger.heldByWriter(packetID: packetID, now: now.instant)
                break
            }
            guard let update = ledger.removedFromOutbox(packetID: packetID) else { break }
            publishStatus(update, at: now, into: &actions)
            actions.append(.virtualRadio(.outboxChanged))
        case .stop(let error):
            for update in ledger.failAll(error: error) { publishStatus(update, at: now, into: &actions) }
        }
        scheduleExpiry(into: &actions)
    }

    /// Ends a send accepted before a restart that will not go out again (its `ttlSeconds`
    /// ran out while the broker was down: `expired`; or it cannot be queued: `failed`).
    public mutating func settleRecovered(
        packetID: UInt32, requestID: String?, status: MeshBus.SendState, error: String? = nil, at now: Moment, into actions: inout [Action]
    ) {
        publishStatus(.init(packetID: packetID, requestID: requestID, status: status, error: error), at: now, into: &actions)
    }

    /// Takes an id for a send about to be offered to the outbox: a fresh one, or the packet's
    /// own when `keepingID` and no send in flight holds it. Answer with ``Input/accepted(packetID:)``
    /// or ``Input/refused(packetID:)``.
    @_specialize(exported: true, where Instant == ContinuousClock.Instant)
    public mutating func reserve(
        _ packet: Meshtastic_MeshPacket, requestID: String?, ttl: Duration, keepingID: Bool, at now: Instant
    ) -> Meshtastic_MeshPacket {
        var packet = packet
        if !keepingID || packet.id == 0 || ledger.contains(packet.id) {
            repeat { packet.id = UInt32.random(in: 1...UInt32.max, using: &generator) } while ledger.contains(packet.id)
        }
        ledger.reserve(packetID: packet.id, requestID: requestID, wantAck: packet.wantAck, ttl: ttl, now: now)
        return packet
    }

    private mutating func handle(_ event: RadioLinkEvent, at now: Moment, into actions: inout [Action]) {
        switch event {
        case .stateChanged(let current, let previous):
            let change = MeshBus.LinkStateChange(
                state: current.published, previous: previous.published,
                strikes: current.strikes, attempt: current.attempt, retryInSeconds: current.retryIn.map { $0.inSeconds }
            )
            publish(MeshBus.Topic.state, change, at: now, into: &actions)
            if history.count == Self.historyLimit { history.removeFirst() }
            history.append(MeshBus.LinkStateSpan(state: change.state, since: now.time))
        case .established(let info):
            myNodeNum = info.myNodeNum
            if established { counters.reconnects += 1 }
            established = true
            let fields = MeshBus.LinkEstablished(myNodeNum: info.myNodeNum, firmware: info.firmware, nodeCount: info.nodeCount, attempt: info.attempt)
            publish(MeshBus.Topic.established, fields, at: now, into: &actions)
            actions.append(.virtualRadio(.linkReady))
        case .lost(let reason):
            counters.losses[reason.rawValue, default: 0] += 1
            publish(MeshBus.Topic.lost, MeshBus.LinkLost(reason: MeshBus.LossReason(rawValue: reason.rawValue)), at: now, into: &actions)
            actions.append(.virtualRadio(.linkLost))
        case .probeAnswered:
            break
        case .fromRadio(let message, let raw, let backlog):
            handle(message, raw: raw, backlog: backlog, at: now, into: &actions)
            actions.append(.virtualRadio(.radio(message, raw: raw)))
        case .sent(let item):
            let raw = (try? item.packet.serializedBytes() as [UInt8]) ?? []
            publish(MeshBus.Topic.sent, raw: raw, record: .sent(packet: raw, requestID: item.requestID), at: now, into: &actions) {
                EventFields.sent(item.packet, requestID: item.requestID, to: &$0)
            }
            if let update = ledger.written(packetID: item.packet.id) { publishStatus(update, at: now, into: &actions) }
            actions.append(.virtualRadio(.outboxChanged))
        case .logLine(let line):
            publish(MeshBus.Topic.log, ["line": .string(line), "level": .null], at: now, into: &actions)
        case .undecodableFrame:
            counters.undecodableFrames += 1
        }
    }

    private mutating func handle(_ message: Meshtastic_FromRadio, raw: [UInt8], backlog: Bool, at now: Moment, into actions: inout [Action]) {
        switch message.payloadVariant {
        case .packet(let packet):
            counters.packetsReceived += 1
            guard !duplicates.isDuplicate(from: packet.from, id: packet.id, now: now.instant) else {
                counters.duplicates += 1
                return
            }
            // Frame 3 is the packet as the radio sent it, cut out of the frame; encoding it
            // again is the fallback for a frame that carries it in parts.
            let packetBytes = ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: raw).map(Array.init)
                ?? (try? packet.serializedBytes()) ?? []
            let summary = publish(
                MeshBus.Topic.receive, port: PacketJSON.portName(packet), raw: packetBytes,
                record: .receive(packet: packetBytes, backlog: backlog), at: now, into: &actions
            ) { EventFields.receive(packet, backlog: backlog, to: &$0) }
            settleSend(from: packet, summary: summary, at: now, into: &actions)
            if nodes.fold(packet) { publishNode(packet.from, at: now, into: &actions) }
        case .myInfo(let info):
            myInfo = PacketJSON.message(info)
        case .metadata(let value):
            metadata = PacketJSON.message(value)
        case .channel(let channel):
            channels[Int(channel.index)] = PacketJSON.message(channel)
        case .config(let value):
            Self.merge(PacketJSON.message(value), into: &config)
        case .moduleConfig(let value):
            Self.merge(PacketJSON.message(value), into: &moduleConfig)
        case .nodeInfo(let info):
            if nodes.merge(info) { publishNode(info.num, at: now, into: &actions) }
        case .logRecord(let record):
            let level = PacketJSON.message(record)["level"] ?? .null
            publish(MeshBus.Topic.log, ["line": .string(record.message), "level": level], at: now, into: &actions)
        case .queueStatus(let status):
            publish(MeshBus.Topic.queueStatus, PacketJSON.message(status).objectValue ?? JSONObject(), at: now, into: &actions)
            if status.res != 0, status.meshPacketID != 0,
                let update = ledger.refused(packetID: status.meshPacketID, error: "queue_status_res_\(status.res)")
            {
                publishStatus(update, at: now, into: &actions)
            }
        case .clientNotification(let notification):
            var fields = PacketJSON.message(notification).objectValue ?? JSONObject()
            // Its own `time` (seconds since 1970) would clash with the envelope's `time`.
            if let time = fields["time"] {
                fields["time"] = nil
                fields["notificationTime"] = time
            }
            publish(MeshBus.Topic.clientNotification, fields, at: now, into: &actions)
        default:
            break
        }
    }

    /// Adds the sections of one config message (`{"lora": {…}}`) to the handshake's config.
    private static func merge(_ section: JSONValue, into config: inout JSONObject) {
        for entry in section.objectValue?.entries ?? [] { config[entry.key] = entry.value }
    }

    /// A Routing reply to one of our sends settles it: ACK or NAK with the error's name.
    private mutating func settleSend(from packet: Meshtastic_MeshPacket, summary: PacketJSONSummary, at now: Moment, into actions: inout [Action]) {
        guard case .decoded(let data)? = packet.payloadVariant, data.portnum == .routingApp, data.requestID != 0 else { return }
        let error = summary[payload: "routing"]?["errorReason"]?.stringValue
        if let update = ledger.routingReply(requestID: data.requestID, error: error) { publishStatus(update, at: now, into: &actions) }
    }

    /// Sets the expiry timer when the soonest deadline is earlier than the one set, or none is.
    private mutating func scheduleExpiry(into actions: inout [Action]) {
        guard let next = ledger.nextDeadline else { return }
        if let scheduled = scheduledExpiry, scheduled <= next { return }
        scheduledExpiry = next
        actions.append(.scheduleExpiry(at: next))
    }

    // MARK: Publishing

    /// Gives the event the next `seq`, keeps it for replay and hands it on. `writeFields`
    /// appends the event's fields as `,"key":value` members; its result is returned. The
    /// ring keeps `record`, or without one the fields as written.
    @discardableResult
    private mutating func publish<Result>(
        _ topic: String, port: String? = nil, raw: [UInt8]? = nil, record: ReplayRecord? = nil, at now: Moment,
        into actions: inout [Action], writeFields: (inout [UInt8]) -> Result
    ) -> Result {
        seq += 1
        counters.eventsPublished += 1
        let (envelope, fieldsStart, result) = Envelope.write(
            head: settings.envelopeHead, topic: topic, seq: seq, time: now.time, writeFields: writeFields
        )
        let event = SlotEvent(seq: seq, topic: MeshBus.Topic.frame(topic, slot: settings.name, port: port), envelope: envelope, raw: raw)
        ring.append(seq: seq, time: now.eventTime, record: record ?? .other(topic: topic, fields: Array(envelope[fieldsStart..<envelope.count - 1])))
        actions.append(.publish(event))
        return result
    }

    private mutating func publish(_ topic: String, _ fields: JSONObject, at now: Moment, into actions: inout [Action]) {
        publish(topic, at: now, into: &actions) { Envelope.writeMembers(fields, to: &$0) }
    }

    private mutating func publish(_ topic: String, _ model: some JSONValueConvertible, at now: Moment, into actions: inout [Action]) {
        publish(topic, model.jsonMembers, at: now, into: &actions)
    }

    private mutating func publishNode(_ num: UInt32, at now: Moment, into actions: inout [Action]) {
        guard let node = nodes[num] else { return }
        let record = (try? node.serializedBytes() as [UInt8]).map { ReplayRecord.nodeUpdated(node: $0) }
        publish(MeshBus.Topic.nodeUpdated, record: record, at: now, into: &actions) { EventFields.nodeUpdated(node, to: &$0) }
    }

    private mutating func publishStatus(_ update: SendLedger<Instant>.Update, at now: Moment, into actions: inout [Action]) {
        let status = update.status
        if update.isTerminal {
            counters.sends[status.status.rawValue, default: 0] += 1
            if status.requestId?.hasPrefix(Self.virtualRequestPrefix) == true, status.status == .expired || status.status == .failed {
                // A radio that gives up on a packet says so with a NAK; so does MeshBus.
                actions.append(.virtualRadio(.sendFailed(packetID: status.packetId, error: status.status == .expired ? .timeout : .noInterface)))
            }
        }
        publish(MeshBus.Topic.sendStatus, status, at: now, into: &actions)
        if update.isTerminal { actions.append(.settled(packetID: status.packetId)) }
    }

    // MARK: Reads
    // Each read takes only what it needs, so the driver copies little under its lock and a
    // copy it still holds makes the next change copy little.

    /// The figures `status` and the metrics report.
    public var figures: SlotFigures {
        SlotFigures(
            seq: seq, counters: counters, myNodeNum: myNodeNum, pendingSends: ledger.pending, replayHeld: ring.count,
            replayCapacity: ring.capacity, nodeCount: nodes.count, history: history
        )
    }

    /// What `snapshot` and `nodes` are rendered from, current at its `seq`.
    public var snapshotSource: SlotSnapshot {
        SlotSnapshot(
            seq: seq, nodes: nodes, myInfo: myInfo, metadata: metadata, channels: channels, config: config, moduleConfig: moduleConfig
        )
    }

    /// The events after `seq` still held, oldest first, at most `limit`: taken in compact
    /// form, to be written out (``ReplayWindow/events``) after the caller's lock is released.
    public func events(after seq: UInt64, limit: Int) throws(ReplayGapTooOld) -> ReplayWindow {
        try ring.events(after: seq, limit: limit, head: settings.envelopeHead, slot: settings.name)
    }
}

/// A slot's figures at one moment.
public struct SlotFigures: Sendable {
    public var seq: UInt64
    public var counters: SlotCounters
    public var myNodeNum: UInt32?
    public var pendingSends: Int
    public var replayHeld: Int
    public var replayCapacity: Int
    public var nodeCount: Int
    /// The last link states, oldest first.
    public var history: [MeshBus.LinkStateSpan]
}

/// A slot's node DB and radio at one `seq`, rendered on demand outside the slot's lock.
public struct SlotSnapshot: Sendable {
    public var seq: UInt64
    public var nodes: NodeStore
    var myInfo: JSONValue
    var metadata: JSONValue
    var channels: [Int: JSONValue]
    var config: JSONObject
    var moduleConfig: JSONObject

    /// The `nodes` result: the node DB keyed by node id, and the `seq` it is current at.
    public var nodeTable: JSONObject {
        ["nodes": nodes.table, "seq": .int(seq)]
    }

    /// The `snapshot` result: apply events with a greater `seq` on top. `state` is the link's now.
    public func render(state: String) -> JSONObject {
        [
            "seq": .int(seq),
            "state": .string(state),
            "myInfo": myInfo,
            "metadata": metadata,
            "nodes": nodes.table,
            "channels": .array(channels.sorted { $0.key < $1.key }.map(\.value)),
            "config": .object(config),
            "moduleConfig": .object(moduleConfig),
        ]
    }
}
