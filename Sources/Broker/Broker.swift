import Logging
import MeshtasticProtocol
import RadioLink
import ServiceLifecycle
import ZeroMQ

/// Turns slot events into ZeroMQ messages: topic frame, envelope, optional raw protobuf.
struct EventSink: Sendable {
    let brokerID: String
    let publisher: EventPublisher

    /// Publishes one event; returns it as the replay ring keeps it.
    func publish(slot: String, topic: String, port: String?, seq: UInt64, fields: JSONObject, raw: [UInt8]?) -> ReplayRing.Entry {
        let envelope = Envelope.make(broker: brokerID, slot: slot, topic: topic, seq: seq, time: Envelope.now(), fields: fields)
        let entry = ReplayRing.Entry(seq: seq, topic: Array(Topic.frame(topic, slot: slot, port: port).utf8), envelope: envelope.jsonBytes, raw: raw)
        var frames = [entry.topic, entry.envelope]
        if let raw { frames.append(raw) }
        publisher.publish(frames)
        return entry
    }
}

/// The MeshBus broker: owns the slots, publishes their events, answers commands.
///
/// A `Service`: ``run()`` returns when the service group shuts down gracefully (SIGTERM,
/// SIGINT) or the task is cancelled; it does not throw once started.
public final class Broker: Service, Sendable {
    public static let version = "0.1.0"

    public let configuration: BrokerConfiguration
    /// Random per process: a new value tells consumers the broker restarted.
    public let brokerID: String
    /// The endpoints as bound, with picked ports filled in.
    public let eventEndpoints: [String]
    public let commandEndpoints: [String]
    private let context: ZMQContext
    private let publisher: EventPublisher
    private let commands: CommandServer
    private let slots: [String: Slot]
    private let slotOrder: [String]
    private let logger: Logger
    private let started = ContinuousClock.now

    /// Binds the sockets and prepares the slots (starting in-process simulators). Throws if an
    /// endpoint cannot be bound.
    public init(configuration: BrokerConfiguration, logger: Logger = Logger(label: "meshbus")) async throws {
        self.configuration = configuration
        self.logger = logger
        brokerID = Envelope.makeBrokerID()
        context = try ZMQContext()
        publisher = try EventPublisher(context: context, endpoints: configuration.events)
        commands = try CommandServer(context: context, endpoints: configuration.commands)
        eventEndpoints = publisher.endpoints
        commandEndpoints = commands.endpoints
        let sink = EventSink(brokerID: brokerID, publisher: publisher)
        var slots: [String: Slot] = [:]
        for slotConfiguration in configuration.slots {
            slots[slotConfiguration.name] = try await Slot(
                configuration: slotConfiguration,
                outboxCapacity: configuration.outboxCapacity,
                replayCapacity: configuration.replayCapacity,
                sink: sink,
                logger: logger
            )
        }
        self.slots = slots
        slotOrder = configuration.slots.map(\.name)
    }

    /// How long the radios get to close cleanly on shutdown before they are cut off.
    static let radioCloseDeadline = Duration.seconds(8)

    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { slotGroup in
                    for slot in self.slots.values { slotGroup.addTask { await slot.run() } }
                }
            }
            group.addTask {
                await withDiscardingTaskGroup { requests in
                    for await request in self.commands.requests {
                        requests.addTask { self.answer(request) }
                    }
                }
            }
            group.addTask {
                // Graceful shutdown (SIGTERM, SIGINT): close every radio cleanly, within a deadline.
                // Cancellation skips straight to the end.
                guard (try? await gracefulShutdown()) != nil else { return }
                for slot in self.slots.values { slot.link.shutdown() }
                try? await Task.sleep(for: Self.radioCloseDeadline)
                self.logger.warning("radios did not close within the deadline; cutting them off")
            }
            // The first to end: all slots stopped, the close deadline passed, or cancellation.
            await group.next()
            group.cancelAll()
        }
        await commands.stop()
        await publisher.stop()
        context.terminate()
        logger.info("broker stopped")
    }

    // MARK: Commands

    func answer(_ request: CommandRequest) {
        let envelope = CommandEnvelope(parsing: request.body)
        var reply = JSONObject()
        if let id = envelope.id { reply["id"] = id }
        switch envelope.command.flatMap({ execute($0, requestID: envelope.id) }) {
        case .success(let result):
            reply["ok"] = .bool(true)
            reply["result"] = .object(result)
        case .failure(let error):
            reply["ok"] = .bool(false)
            reply["error"] = .object(["code": .string(error.code), "message": .string(error.message)])
            logger.debug("command refused", metadata: ["code": "\(error.code)", "message": "\(error.message)"])
        }
        commands.reply(to: request, with: .object(reply))
    }

    func execute(_ command: Command, requestID: JSONValue?) -> Result<JSONObject, CommandError> {
        Result { () throws(CommandError) -> JSONObject in
            switch command {
            case .ping:
                return [
                    "broker": .string(brokerID),
                    "version": .string(Self.version),
                    "uptimeSeconds": .double((ContinuousClock.now - started).inSeconds),
                ]
            case .status(let name):
                var result = JSONObject()
                var names = slotOrder
                if let name { names = [try slot(named: name).name] }
                for slotName in names {
                    result[slotName] = .object(slots[slotName]!.status())
                }
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
                return ["packetId": .int(packetID), "status": .string("queued")]
            case .reconnect(let name):
                let slot = try slot(named: name)
                slot.link.reconnect()
                return ["slot": .string(slot.name), "state": .string(slot.link.state.name)]
            case .disconnectForRestart(let name, let settle):
                let slot = try slot(named: name)
                slot.link.disconnectForRestart(settle: .milliseconds(Int64(settle * 1000)))
                return ["slot": .string(slot.name), "settleSeconds": .double(settle)]
            }
        }
    }

    private func slot(named name: String) throws(CommandError) -> Slot {
        guard let slot = slots[name] else { throw .unknownSlot(name, known: slotOrder) }
        return slot
    }
}
