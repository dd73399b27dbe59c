import Logging
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Synchronization

/// One radio slot: its link, its node DB, its event sequence. Nothing is shared between
/// slots: each has its own `seq`, nodes and outbox.
final class Slot: Sendable {
    let name: String
    let link: RadioLink<ContinuousClock>
    private let linkEvents: AsyncStream<RadioLinkEvent>
    private let simulator: RadioSimulator?
    private let sink: EventSink
    private let state = Mutex(State())

    private struct State {
        var seq: UInt64 = 0
        var nodes: [UInt32: JSONObject] = [:]
        var myNodeNum: UInt32?
        var reconnects = 0
        var established = false
    }

    init(configuration: SlotConfiguration, outboxCapacity: Int, sink: EventSink, logger: Logger) async throws {
        name = configuration.name
        self.sink = sink
        let transport: any RadioTransport
        switch configuration.source {
        case .tcp(let host, let port):
            simulator = nil
            transport = TCPRadioTransport(host: host, port: port, connectTimeout: configuration.timing.connectTimeout, keepalive: configuration.timing.tcpKeepalive)
        case .serial(let path):
            simulator = nil
            transport = SerialRadioTransport(path: path)
        case .simulator(let simulatorConfiguration):
            let simulator = try await RadioSimulator.start(simulatorConfiguration, logger: logger)
            self.simulator = simulator
            transport = SimulatorTransport(tcp: TCPRadioTransport(host: simulatorConfiguration.host, port: simulator.port))
        }
        (link, linkEvents) = RadioLink.make(
            slot: name,
            transport: transport,
            timing: configuration.timing,
            clock: ContinuousClock(),
            outboxCapacity: outboxCapacity,
            logger: logger
        )
    }

    /// Runs the link (and the in-process simulator) and publishes what it reports, until cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            if let simulator { group.addTask { await simulator.run() } }
            group.addTask { await self.link.run() }
            for await event in linkEvents { handle(event) }
            group.cancelAll()
        }
    }

    // MARK: Events

    private func publish(_ topic: String, port: String? = nil, _ fields: JSONObject, raw: [UInt8]? = nil) {
        let seq = state.withLock { state in
            state.seq += 1
            return state.seq
        }
        sink.publish(slot: name, topic: topic, port: port, seq: seq, fields: fields, raw: raw)
    }

    private func handle(_ event: RadioLinkEvent) {
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
                if state.established { state.reconnects += 1 }
                state.established = true
            }
            publish(Topic.established, ["myNodeNum": .int(info.myNodeNum), "firmware": .string(info.firmware), "nodeCount": .int(info.nodeCount), "attempt": .int(info.attempt)])
        case .lost(let reason):
            publish(Topic.lost, ["reason": .string(reason.rawValue)])
        case .fromRadio(let message, _, let backlog):
            handle(message, backlog: backlog)
        case .sent(let item):
            var fields: JSONObject = ["packet": PacketJSON.packet(item.packet)]
            fields["requestId"] = item.requestID.map(JSONValue.string) ?? .null
            publish(Topic.sent, fields, raw: (try? item.packet.serializedBytes()) ?? [])
        case .logLine(let line):
            publish(Topic.log, ["line": .string(line), "level": .null])
        case .undecodableFrame:
            break
        }
    }

    private func handle(_ message: Meshtastic_FromRadio, backlog: Bool) {
        switch message.payloadVariant {
        case .packet(let packet):
            let json = PacketJSON.packet(packet)
            publish(Topic.receive, port: PacketJSON.portName(ofPacketJSON: json), ["packet": json, "backlog": .bool(backlog)], raw: (try? packet.serializedBytes()) ?? [])
            updateNode(from: packet, json: json)
        case .nodeInfo(let info):
            if let node = PacketJSON.message(info).objectValue { mergeNode(info.num, node) }
        case .logRecord(let record):
            let level = PacketJSON.message(record)["level"] ?? .null
            publish(Topic.log, ["line": .string(record.message), "level": level])
        case .queueStatus(let status):
            publish(Topic.queueStatus, PacketJSON.message(status).objectValue ?? JSONObject())
        case .clientNotification(let notification):
            publish(Topic.clientNotification, PacketJSON.message(notification).objectValue ?? JSONObject())
        default:
            break
        }
    }

    /// Folds what a packet says about its sender into the node DB, like the Python library.
    private func updateNode(from packet: Meshtastic_MeshPacket, json: JSONValue) {
        guard packet.from != 0, packet.from != NodeNumber.broadcast else { return }
        var update: JSONObject = ["num": .int(packet.from)]
        if packet.rxTime != 0 { update["lastHeard"] = .int(packet.rxTime) }
        if packet.rxSnr != 0 { update["snr"] = json["rxSnr"] }
        switch packet.payloadVariant {
        case .decoded(let data) where data.portnum == .nodeinfoApp:
            update["user"] = json["decoded"]?["user"]
        case .decoded(let data) where data.portnum == .positionApp:
            update["position"] = json["decoded"]?["position"]
        case .decoded(let data) where data.portnum == .telemetryApp:
            update["deviceMetrics"] = json["decoded"]?["telemetry"]?["deviceMetrics"]
        default:
            break
        }
        mergeNode(packet.from, update)
    }

    private func mergeNode(_ num: UInt32, _ update: JSONObject) {
        let merged: JSONObject? = state.withLock { state in
            var node = state.nodes[num] ?? ["num": .int(num)]
            let before = node
            for entry in update.entries { node[entry.key] = entry.value }
            guard node != before || state.nodes[num] == nil else { return nil }
            state.nodes[num] = node
            return node
        }
        if let merged { publish(Topic.nodeUpdated, ["node": .object(merged)]) }
    }

    // MARK: Commands

    func status() -> JSONObject {
        let link = link.status
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
                "lastSeq": .int(state.seq),
                "nodeCount": .int(state.nodes.count),
            ]
        }
    }

    /// Accepts a text for the radio. Returns the packet id it will carry.
    func sendText(_ request: Command.SendText, requestID: String?, outboxCapacity: Int) throws(CommandError) -> UInt32 {
        if request.requireReady {
            let state = link.state
            guard state.isReady else { throw .notReady(name, state: state.name) }
        }
        var packet = Meshtastic_MeshPacket()
        packet.to = request.to
        packet.channel = request.channel
        packet.id = UInt32.random(in: 1...UInt32.max)
        packet.wantAck = request.wantAck
        packet.hopLimit = request.hopLimit
        packet.decoded.portnum = .textMessageApp
        packet.decoded.payload = .init(request.text.utf8)
        packet.decoded.replyID = request.replyID
        guard link.enqueue(OutgoingPacket(packet: packet, requestID: requestID)) else {
            throw .queueFull(name, capacity: outboxCapacity)
        }
        return packet.id
    }
}

/// The built-in simulator reached over loopback TCP; `status` reports it as `simulator`.
struct SimulatorTransport: RadioTransport {
    let tcp: TCPRadioTransport
    var kind: String { "simulator" }
    var description: String { "simulator at \(tcp)" }
    func open() async throws -> StreamChannel { try await tcp.open() }
}
