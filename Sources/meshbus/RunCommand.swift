import ArgumentParser
import Broker
import Logging
import RadioSimulator
import ServiceLifecycle
import MeshtasticProtocol
import ZeroMQ

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the broker. Without radios given, one simulated slot 'sim' shows traffic at once."
    )

    @Option(name: .customLong("events"), help: "PUB endpoint (repeatable; port 0 or * picks one).")
    var events: [String] = []

    @Option(name: .customLong("commands"), help: "ROUTER endpoint for commands (repeatable).")
    var commands: [String] = []

    @Option(name: .customLong("tcp"), help: "A radio's TCP API as NAME=HOST:PORT (repeatable).")
    var tcpSlots: [String] = []

    @Option(name: .customLong("serial"), help: "A radio on a serial line as NAME=PATH (repeatable); polled while the path is absent.")
    var serialSlots: [String] = []

    @Option(help: "Virtual nodes of the default simulated slot.")
    var simNodes = 6

    @Option(help: "Packets per minute the default simulated slot's nodes send.")
    var simTraffic: Double = 30

    @Option(help: "Packets a slot's outbox holds before sends are refused with queue_full.")
    var outboxCapacity = 64

    @Option(help: "Events each slot keeps for the replay command.")
    var replayCapacity = 10_000

    @Flag(help: "Log every link event.")
    var verbose = false

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .debug : .info
            return handler
        }
        let logger = Logger(label: "meshbus")
        var configuration = BrokerConfiguration()
        if !events.isEmpty { configuration.events = events }
        if !commands.isEmpty { configuration.commands = commands }
        guard outboxCapacity > 0, replayCapacity > 0 else { throw ValidationError("--outbox-capacity and --replay-capacity must be positive") }
        configuration.outboxCapacity = outboxCapacity
        configuration.replayCapacity = replayCapacity
        if tcpSlots.isEmpty && serialSlots.isEmpty {
            let simulator = SimulatorConfiguration(nodeCount: simNodes, trafficPerMinute: simTraffic)
            configuration.slots = [SlotConfiguration(name: "sim", source: .simulator(simulator))]
        } else {
            configuration.slots = try tcpSlots.map(Self.parseTCPSlot) + serialSlots.map(Self.parseSerialSlot)
            let names = configuration.slots.map(\.name)
            if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
                throw ValidationError("slot '\(duplicate)' is given twice")
            }
        }
        let broker = try await Broker(configuration: configuration, logger: logger)
        say("meshbus \(Broker.version) broker \(broker.brokerID)")
        for endpoint in broker.eventEndpoints { say("events: \(endpoint)") }
        for endpoint in broker.commandEndpoints { say("commands: \(endpoint)") }
        say("slots: \(configuration.slots.map(\.name).joined(separator: ", "))")
        let events = broker.eventEndpoints.first ?? ""
        say(
            "watch: python3 -c \"import zmq; s=zmq.Context().socket(zmq.SUB); s.connect('\(events)'); "
                + "s.subscribe(b''); [print(s.recv_multipart()[:2]) for _ in iter(int, 1)]\""
        )
        let group = ServiceGroup(
            configuration: .init(services: [broker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }

    /// Splits `NAME=VALUE` of a slot flag, checking the name.
    static func slotArgument(_ text: String, flag: String, value: String) throws -> (name: String, value: String) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, SlotConfiguration.isValidName(parts[0]), !parts[1].isEmpty else {
            throw ValidationError("--\(flag) expects NAME=\(value) with NAME of [A-Za-z0-9_-]{1,32}, got '\(text)'")
        }
        return (parts[0], parts[1])
    }

    static func parseSerialSlot(_ text: String) throws -> SlotConfiguration {
        let (name, path) = try slotArgument(text, flag: "serial", value: "PATH")
        return SlotConfiguration(name: name, source: .serial(path: path))
    }

    static func parseTCPSlot(_ text: String) throws -> SlotConfiguration {
        let (name, address) = try slotArgument(text, flag: "tcp", value: "HOST:PORT")
        let parts = [name, address]
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw ValidationError("--tcp \(parts[0]): expected HOST:PORT, got '\(address)'")
        }
        return SlotConfiguration(name: parts[0], source: .tcp(host: String(address[..<colon]), port: port))
    }
}

struct SimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run the virtual radio alone, serving the Meshtastic TCP API."
    )

    @Option(help: "Port to listen on (0 picks one).")
    var port = 4403

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Virtual nodes besides the local one.")
    var nodes = 6

    @Option(help: "Packets per minute the virtual nodes send.")
    var traffic: Double = 30

    @Option(help: "Seed for node numbers and traffic.")
    var seed: UInt64 = 0x4D45_5348

    @Option(help: "Serve on a pseudo-terminal linked at PATH (a stand-in USB serial radio) instead of TCP.")
    var serial: String?

    @Option(help: "ZeroMQ REP endpoint taking fault-injection requests, e.g. tcp://127.0.0.1:7799 (JSON: {\"fault\": \"drop\"}).")
    var control: String?

    @Flag(help: "Start stalled: the radio never answers until a control request says otherwise.")
    var stalled = false

    func run() async throws {
        let configuration = SimulatorConfiguration(host: host, port: port, nodeCount: nodes, trafficPerMinute: traffic, seed: seed)
        let simulator: RadioSimulator
        if let serial {
            simulator = try RadioSimulator.startSerial(configuration, devicePath: serial)
            say("simulator on serial device \(serial) with \(simulator.nodes.count) nodes")
        } else {
            simulator = try await RadioSimulator.start(configuration)
            say("simulator listening on \(host):\(simulator.port) with \(simulator.nodes.count) nodes")
        }
        simulator.faults.stalled = stalled
        var controlServer: SimulatorControlServer?
        if let control {
            controlServer = try SimulatorControlServer(endpoint: control, simulator: simulator)
            say("control: \(controlServer!.endpoint)")
        }
        let group = ServiceGroup(
            configuration: .init(services: [SimulatorService(simulator: simulator)], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "meshbus.sim"))
        )
        try await group.run()
        await controlServer?.stop()
    }
}

/// Runs the simulator until the service group shuts down.
struct SimulatorService: Service {
    let simulator: RadioSimulator

    func run() async throws {
        await cancelWhenGracefulShutdown { await simulator.run() }
    }
}

/// A ZeroMQ REP socket on its own thread applying ``RadioSimulator/control(_:)`` requests.
final class SimulatorControlServer: Sendable {
    let endpoint: String
    private let context: ZMQContext
    private let thread: ZMQSocketThread

    init(endpoint: String, simulator: RadioSimulator) throws {
        let context = try ZMQContext()
        self.context = context
        (thread, self.endpoint) = try ZMQSocketThread.start(name: "meshbus-sim-control", wakeup: try ZMQWakeup()) { thread, ready in
            let socket = try ZMQSocket(context: context, type: .rep)
            defer { socket.close() }
            try socket.setLinger(milliseconds: 0)
            try socket.bind(endpoint)
            ready(try socket.lastEndpoint)
            let poller = ZMQPoller([.socket(socket), .descriptor(thread.wakeup.descriptor)])
            while !thread.isStopRequested {
                guard let readable = try? poller.poll(timeoutMilliseconds: -1), readable[0] else { continue }
                guard let frames = try? socket.receiveMultipart(dontWait: true) else { continue }
                let reply: JSONValue
                if let body = frames.last, let request = try? JSONValue(parsing: body) {
                    reply = simulator.control(request)
                } else {
                    reply = .object(["ok": .bool(false), "error": .string("request is not JSON")])
                }
                _ = try? socket.send(reply.jsonBytes)
            }
        }
    }

    func stop() async {
        await thread.stop()
        context.terminate()
    }
}
