import ArgumentParser
import Broker
import Foundation
import Logging
import MQTT
import MQTTBridge
import MeshBusClient
import MeshBusConfiguration
import ServiceLifecycle

struct MQTTBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mqtt",
        abstract: "Bridge a running broker to an MQTT broker, with Home Assistant discovery.",
        discussion: """
            A separate process and an ordinary MeshBus consumer: an MQTT broker that is down or \
            slow never reaches the radios. Topics: <prefix>/<slot>/<topic> for every event, \
            retained <prefix>/<slot>/link and <prefix>/<slot>/node/<id>, <prefix>/<slot>/send \
            for texts (replies on <prefix>/<slot>/send/reply) and <prefix>/status (online/offline).
            """
    )

    @Option(help: "The broker's PUB endpoint.")
    var events = BrokerConfiguration.defaultEventEndpoint

    @Option(help: "The broker's command endpoint.")
    var commands = BrokerConfiguration.defaultCommandEndpoint

    @Option(help: "The MQTT broker, host:port (port 1883 if left out).")
    var mqtt = "127.0.0.1:1883"

    @Option(help: "First level of every MeshBus topic.")
    var prefix = "meshbus"

    @Option(help: "Home Assistant's discovery prefix.")
    var discoveryPrefix = "homeassistant"

    @Flag(help: "Publish no Home Assistant discovery configs.")
    var noDiscovery = false

    @Option(help: "MQTT client id (a second client with the same id takes over the session).")
    var clientId = "meshbus-bridge"

    @Option(help: "MQTT user name.")
    var username: String?

    @Option(help: "A file whose first line is the MQTT password (keeps it out of the process list).")
    var passwordFile: String?

    @Option(help: "MQTT keep alive, e.g. 30s; a broker silent for 1.5 times this is taken for dead.")
    var keepAlive = "30s"

    @Flag(name: .shortAndLong, help: "Log debug detail to stderr.")
    var verbose = false

    func validate() throws {
        guard Self.hostPort(mqtt) != nil else { throw ValidationError("--mqtt: expected host:port, got '\(mqtt)'") }
        for (flag, value) in [("--prefix", prefix), ("--discovery-prefix", discoveryPrefix)] {
            guard !value.isEmpty, !value.contains(where: { "+#".contains($0) }), !value.hasPrefix("/"), !value.hasSuffix("/") else {
                throw ValidationError("\(flag): an MQTT topic prefix without '+', '#' or a leading or trailing '/', got '\(value)'")
            }
        }
        guard Self.duration(keepAlive) != nil else { throw ValidationError("--keep-alive: expected a duration such as 30s or 500ms, got '\(keepAlive)'") }
        if passwordFile != nil, username == nil { throw ValidationError("--password-file needs --username (MQTT 3.1.1 has no password without a user)") }
    }

    func run() async throws {
        let level: Logger.Level = verbose ? .debug : .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "meshbus.mqtt")
        let (host, port) = Self.hostPort(mqtt)!
        let topics = BridgeTopics(prefix: prefix, discoveryPrefix: noDiscovery ? nil : discoveryPrefix)
        var settings = MQTTConfiguration(host: host, port: port, clientID: clientId)
        settings.keepAlive = Self.duration(keepAlive)!
        settings.username = username
        if let passwordFile {
            let contents = try String(contentsOfFile: passwordFile, encoding: .utf8)
            settings.password = contents.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        }
        settings.will = MQTTBridge.lastWill(topics)
        var options = MeshBusClient.Options()
        options.commandTimeout = .seconds(3)  // a local broker answers in milliseconds; this bounds how long a dead one goes unnoticed
        let client = try MeshBusClient(events: events, commands: commands, options: options)
        let bridge = MQTTBridge(
            meshbus: client, mqtt: MQTTClient(configuration: settings, logger: logger), topics: topics,
            version: Broker.version, logger: logger
        ) { report in
            switch report {
            case .mqttConnected: say("mqtt bridge connected to \(host):\(port)")
            case .mqttLost(let reason): say("mqtt bridge lost \(host):\(port): \(reason)")
            case .following(let slot, let seq): say("mqtt bridge following \(slot) at seq \(seq)")
            }
        }
        let group = ServiceGroup(
            configuration: .init(services: [BridgeService(bridge: bridge)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
        await client.close()
    }

    static func hostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":") else { return text.isEmpty ? nil : (text, 1883) }
        guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port), colon != text.startIndex else { return nil }
        return (String(text[..<colon]), port)
    }

    static func duration(_ text: String) -> Duration? {
        if text.hasSuffix("ms"), let value = Int(text.dropLast(2)) { return .milliseconds(value) }
        if text.hasSuffix("s"), let value = Int(text.dropLast()) { return .seconds(value) }
        if text.hasSuffix("m"), let value = Int(text.dropLast()) { return .seconds(value * 60) }
        return Int(text).map { .seconds($0) }
    }
}

/// Runs the bridge until a graceful shutdown (SIGTERM, SIGINT), then says `offline` and stops.
struct BridgeService: Service {
    let bridge: MQTTBridge

    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await bridge.run() }
            try? await gracefulShutdown()
            await bridge.stop()
            group.cancelAll()
        }
    }
}
