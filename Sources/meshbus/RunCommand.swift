import ArgumentParser
import Broker
import Logging
import RadioSimulator
import ServiceLifecycle

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

    @Option(help: "Virtual nodes of the default simulated slot.")
    var simNodes = 6

    @Option(help: "Packets per minute the default simulated slot's nodes send.")
    var simTraffic: Double = 30

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
        if tcpSlots.isEmpty {
            let simulator = SimulatorConfiguration(nodeCount: simNodes, trafficPerMinute: simTraffic)
            configuration.slots = [SlotConfiguration(name: "sim", source: .simulator(simulator))]
        } else {
            configuration.slots = try tcpSlots.map(Self.parseTCPSlot)
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

    static func parseTCPSlot(_ text: String) throws -> SlotConfiguration {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, SlotConfiguration.isValidName(parts[0]) else {
            throw ValidationError("--tcp expects NAME=HOST:PORT with NAME of [A-Za-z0-9_-]{1,32}, got '\(text)'")
        }
        let address = parts[1]
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

    func run() async throws {
        let configuration = SimulatorConfiguration(host: host, port: port, nodeCount: nodes, trafficPerMinute: traffic, seed: seed)
        let simulator = try await RadioSimulator.start(configuration)
        say("simulator listening on \(host):\(simulator.port) with \(simulator.nodes.count) nodes")
        let group = ServiceGroup(
            configuration: .init(services: [SimulatorService(simulator: simulator)], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "meshbus.sim"))
        )
        try await group.run()
    }
}

/// Runs the simulator until the service group shuts down.
struct SimulatorService: Service {
    let simulator: RadioSimulator

    func run() async throws {
        await cancelWhenGracefulShutdown { await simulator.run() }
    }
}
