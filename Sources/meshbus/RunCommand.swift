import ArgumentParser
import BluetoothLE
import Broker
import DescriptorBudget
import Foundation
import HTTPGateway
import Logging
import MeshBusConfiguration
import MeshBusModel
import MeshtasticProtocol
import Metrics
import Observability
import Prometheus
import RadioSimulator
import ServiceLifecycle
import UnixSignals
import VirtualRadio
import ZeroMQ

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the broker. Without a config file or radios given, one simulated slot 'sim' shows traffic at once.",
        discussion: """
            Endpoints come from the config file, then MESHBUS_EVENTS / MESHBUS_COMMANDS (comma-separated) \
            MESHBUS_METRICS and MESHBUS_HTTP in the environment, then the flags, each overriding the one before. \
            With --config the file is watched: a change (or SIGHUP) is applied without a restart.
            """
    )

    @Option(help: "YAML configuration file (see meshbus check).")
    var config: String?

    @Option(name: .customLong("events"), help: "PUB endpoint (repeatable; port 0 or * picks one).")
    var events: [String] = []

    @Option(name: .customLong("commands"), help: "ROUTER endpoint for commands (repeatable).")
    var commands: [String] = []

    @Option(help: "Serve Prometheus metrics over HTTP at HOST:PORT (/metrics; port 0 picks one).")
    var metrics: String?

    @Option(help: "Serve HTTP clients at HOST:PORT: POST /api/commands and GET /metrics (port 0 picks one).")
    var http: String?

    @Option(name: .customLong("tcp"), help: "A radio's TCP API as NAME=HOST:PORT (repeatable; not with --config).")
    var tcpSlots: [String] = []

    @Option(name: .customLong("serial"), help: "A radio on a serial line as NAME=PATH (repeatable; not with --config).")
    var serialSlots: [String] = []

    @Option(name: .customLong("ble"), help: "A Bluetooth LE radio as NAME=DEVICE[,pin=PIN], DEVICE an address or advertised name (repeatable; not with --config).")
    var bleSlots: [String] = []

    @Option(
        name: .customLong("virtual-radio"),
        help: "Open a slot's virtual radio port for Meshtastic clients as [NAME=]HOST:PORT (repeatable; NAME may be left out with one slot; not with --config)."
    )
    var virtualRadios: [String] = []

    @Option(help: "Virtual nodes of the default simulated slot.")
    var simNodes = 6

    @Option(help: "Packets per minute the default simulated slot's nodes send.")
    var simTraffic: Double = 30

    @Option(help: "Packets a slot's outbox holds before sends are refused with queue_full.")
    var outboxCapacity: Int?

    @Option(help: "Events each slot keeps for the replay command.")
    var replayCapacity: Int?

    @Option(help: "Log format: text or json (one object per line).")
    var logFormat: LogSettings.Format?

    @Flag(help: "Log every link event.")
    var verbose = false

    func validate() throws {
        if config != nil && !(tcpSlots.isEmpty && serialSlots.isEmpty && bleSlots.isEmpty && virtualRadios.isEmpty) {
            throw ValidationError("--tcp, --serial, --ble and --virtual-radio define slots without a file; with --config, list the slots in the file")
        }
        if let outboxCapacity, outboxCapacity <= 0 { throw ValidationError("--outbox-capacity must be positive") }
        if let replayCapacity, replayCapacity <= 0 { throw ValidationError("--replay-capacity must be positive") }
    }

    func run() async throws {
        var daemon = try loadConfiguration()
        let environment = ProcessInfo.processInfo.environment
        try applyOverrides(to: &daemon, environment: environment)
        let settings = daemon.log
        let level: Logger.Level = verbose ? .debug : settings.level
        LoggingSystem.bootstrap { label in
            switch settings.format {
            case .json:
                return JSONLogHandler(label: label, level: level)
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "meshbus")
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["meshbus_probe_round_trip_seconds"] = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8),
        ]
        MetricsSystem.bootstrap(factory)
        // SIGHUP asks for a reload; trap it before anything says the daemon is up.
        let hangups = config == nil ? nil : await UnixSignalsSequence(trapping: .sighup)

        if let raised = DescriptorBudget.raiseSoftLimit() {
            logger.info("file descriptor limit raised to the hard limit", metadata: ["from": "\(raised.from)", "to": "\(raised.to)"])
        }
        let broker: Broker
        do {
            broker = try await Broker(configuration: daemon.broker, logger: logger)
        } catch let error as BrokerStartError {
            throw ValidationError(error.description)
        }
        var services: [any Service] = [broker]
        let metricsEndpoint: MetricsEndpoint?
        if let address = daemon.metrics {
            let endpoint = try await MetricsEndpoint.bind(host: address.host, port: address.port, registry: registry) {
                broker.refreshGauges()
            }
            metricsEndpoint = endpoint
            services.append(endpoint)
        } else {
            metricsEndpoint = nil
        }
        if let address = daemon.http {
            services.append(
                HTTPGateway(
                    host: address.host, port: address.port, broker: broker, tokens: daemon.broker.security.tokens, registry: registry, beforeScrape: { broker.refreshGauges() },
                    logger: logger
                ) { port in say("http: http://\(HostPort(host: address.host, port: port))/") }
            )
        }
        if let config, let hangups {
            let overrides = self
            services.append(
                ConfigurationReloader(path: config, broker: broker, signals: hangups, logger: logger) { configuration in
                    try? overrides.applyOverrides(to: &configuration, environment: environment)
                }
            )
        }
        let systemd = SystemdNotifier(environment: environment)
        services.append(SystemdService(notifier: systemd, watchdogInterval: SystemdService.watchdogInterval(environment)))

        say("meshbus \(Broker.version) broker \(broker.brokerID)")
        for endpoint in broker.eventEndpoints { say("events: \(endpoint)") }
        for endpoint in broker.commandEndpoints { say("commands: \(endpoint)") }
        if let metricsEndpoint { say("metrics: http://\(HostPort(host: metricsEndpoint.host, port: metricsEndpoint.port))/metrics") }
        if let config { say("config: \(config) (watched; SIGHUP reloads)") }
        if daemon.broker.slots.isEmpty, let config {
            say("slots: none yet; add radios under slots: in \(config) (it is watched, no restart needed)")
        } else {
            say("slots: \(daemon.broker.slots.map(\.name).joined(separator: ", "))")
        }
        for (slot, address) in broker.virtualRadioAddresses { say("virtual radio \(slot): \(address)") }
        let events = broker.eventEndpoints.first ?? ""
        say(
            "watch: python3 -c \"import zmq; s=zmq.Context().socket(zmq.SUB); s.connect('\(events)'); "
                + "s.subscribe(b''); [print(s.recv_multipart()[:2]) for _ in iter(int, 1)]\""
        )
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }

    /// The file's settings, or (without --config) the flags' slots or the default simulator.
    func loadConfiguration() throws -> DaemonConfiguration {
        if let config {
            do {
                return try ConfigurationFile.load(path: config)
            } catch {
                throw ValidationError("configuration refused:\n\(error.description)")
            }
        }
        var daemon = DaemonConfiguration()
        if tcpSlots.isEmpty && serialSlots.isEmpty && bleSlots.isEmpty {
            let simulator = SimulatorConfiguration(nodeCount: simNodes, trafficPerMinute: simTraffic)
            daemon.broker.slots = [SlotConfiguration(name: "sim", source: .simulator(simulator))]
        } else {
            daemon.broker.slots = try tcpSlots.map(Self.parseTCPSlot) + serialSlots.map(Self.parseSerialSlot) + bleSlots.map(Self.parseBLESlot)
            let names = daemon.broker.slots.map(\.name)
            if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
                throw ValidationError("slot '\(duplicate)' is given twice")
            }
        }
        for argument in virtualRadios { try addVirtualRadio(argument, to: &daemon.broker.slots) }
        return daemon
    }

    /// `--virtual-radio [NAME=]HOST:PORT`: loopback only, since the Meshtastic API has no authentication.
    private func addVirtualRadio(_ argument: String, to slots: inout [SlotConfiguration]) throws {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        let name = parts.count == 2 ? parts[0] : nil
        guard let address = HostPort(parsing: parts.last ?? "") else {
            throw ValidationError("--virtual-radio: expected [NAME=]HOST:PORT, got '\(argument)'")
        }
        guard address.isLoopback else {
            throw ValidationError("--virtual-radio: \(address) is reachable from other machines; use a config file with security.insecure: true for that")
        }
        let index: Int
        if let name {
            guard let found = slots.firstIndex(where: { $0.name == name }) else {
                throw ValidationError("--virtual-radio: no slot named '\(name)'; slots: \(slots.map(\.name).joined(separator: ", "))")
            }
            index = found
        } else {
            guard slots.count == 1 else { throw ValidationError("--virtual-radio: name the slot (NAME=HOST:PORT) when there are several") }
            index = 0
        }
        slots[index].virtualRadio = VirtualRadioConfiguration(host: address.host, port: address.port)
    }

    /// Environment, then flags, over the file: endpoints, metrics address, capacities, log format.
    func applyOverrides(to daemon: inout DaemonConfiguration, environment: [String: String]) throws {
        func list(_ name: String) -> [String]? {
            environment[name].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.flatMap { $0.isEmpty ? nil : $0 }
        }
        if let endpoints = list("MESHBUS_EVENTS") { daemon.broker.events = endpoints }
        if let endpoints = list("MESHBUS_COMMANDS") { daemon.broker.commands = endpoints }
        if !events.isEmpty { daemon.broker.events = events }
        if !commands.isEmpty { daemon.broker.commands = commands }
        if let text = metrics ?? environment["MESHBUS_METRICS"] { daemon.metrics = try Self.listener(text, "metrics", daemon) }
        if let text = http ?? environment["MESHBUS_HTTP"] { daemon.http = try Self.listener(text, "http", daemon) }
        if let outboxCapacity { daemon.broker.outboxCapacity = outboxCapacity }
        if let replayCapacity { daemon.broker.replayCapacity = replayCapacity }
        if let logFormat { daemon.log.format = logFormat }
    }

    /// A listening address given by flag or environment, refused beyond loopback without `security.insecure`.
    static func listener(_ text: String, _ what: String, _ daemon: DaemonConfiguration) throws -> HostPort {
        guard let address = HostPort(parsing: text) else { throw ValidationError("\(what) address: expected HOST:PORT, got '\(text)'") }
        guard address.isLoopback || daemon.broker.security.insecure || (what == "http" && daemon.broker.security.tokens != nil) else {
            let remedy = what == "http" ? ", security.tokens" : ""
            throw ValidationError("\(what) address \(text) is reachable from other machines; use loopback\(remedy) or security.insecure: true")
        }
        return address
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

    static func parseBLESlot(_ text: String) throws -> SlotConfiguration {
        let (name, value) = try slotArgument(text, flag: "ble", value: "DEVICE[,pin=PIN]")
        let parts = value.split(separator: ",", maxSplits: 1).map(String.init)
        var pin: UInt32?
        if parts.count == 2 {
            guard parts[1].hasPrefix("pin="), let number = UInt32(parts[1].dropFirst(4)), number <= 999_999 else {
                throw ValidationError("--ble \(name): expected DEVICE or DEVICE,pin=PIN (PIN 0 to 999999), got '\(value)'")
            }
            pin = number
        }
        return SlotConfiguration(name: name, source: .ble(BLEConfiguration(device: parts[0], pin: pin)))
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
