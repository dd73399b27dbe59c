import ArgumentParser
import Broker
import Foundation
import Logging
import MQTT
import MQTTBridge
import MeshBusClient
import MeshBusConfiguration
import ServiceLifecycle
import ZeroMQ

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

    @Option(help: "The daemon's config file: its mqtt section and its first events and commands endpoints (flags override).")
    var config: String?

    @Option(help: "The broker's PUB endpoint (default \(BrokerConfiguration.defaultEventEndpoint)).")
    var events: String?

    @Option(help: "The broker's command endpoint (default \(BrokerConfiguration.defaultCommandEndpoint)).")
    var commands: String?

    @Option(help: "The MQTT broker, host:port (port 1883 if left out; default 127.0.0.1:1883).")
    var mqtt: String?

    @Option(help: "First level of every MeshBus topic (default meshbus).")
    var prefix: String?

    @Option(help: "This host's name among several MeshBus hosts on one MQTT broker: topics under <prefix>/<site>, Home Assistant ids with the site.")
    var site: String?

    @Option(help: "Home Assistant's discovery prefix (default homeassistant).")
    var discoveryPrefix: String?

    @Flag(help: "Publish no Home Assistant discovery configs.")
    var noDiscovery = false

    @Option(help: "MQTT client id (a second client with the same id takes over the session; default meshbus-bridge).")
    var clientId: String?

    @Option(help: "MQTT user name.")
    var username: String?

    @Option(help: "A file whose first line is the MQTT password (keeps it out of the process list).")
    var passwordFile: String?

    @Option(help: "MQTT keep alive, e.g. 30s; a broker silent for 1.5 times this is taken for dead.")
    var keepAlive: String?

    @Flag(help: "TLS towards the MQTT broker, trusting the system's CAs unless --ca-file is given (port 8883 if left out).")
    var tls = false

    @Option(help: "PEM file of the CAs that sign the MQTT broker's certificate (implies --tls).")
    var caFile: String?

    @Option(help: "PEM client certificate for brokers that authenticate clients by certificate (with --key-file; implies --tls).")
    var certFile: String?

    @Option(help: "PEM key of --cert-file.")
    var keyFile: String?

    @Option(help: "The name the broker's certificate must carry, when it is not the host in --mqtt (implies --tls).")
    var serverName: String?

    @Flag(help: "Allow plain MQTT to a broker on another machine (the password and every packet in clear).")
    var insecure = false

    @Flag(name: .shortAndLong, help: "Log debug detail to stderr.")
    var verbose = false

    func validate() throws {
        if let mqtt, Self.hostPort(mqtt) == nil { throw ValidationError("--mqtt: expected host:port, got '\(mqtt)'") }
        for (flag, value) in [("--prefix", prefix), ("--discovery-prefix", discoveryPrefix)] {
            if let value, !MQTTBridgeSettings.isTopicPrefix(value) {
                throw ValidationError("\(flag): an MQTT topic prefix without '+', '#', empty levels or a leading or trailing '/', got '\(value)'")
            }
        }
        if let site, !MQTTBridgeSettings.isSiteName(site) { throw ValidationError("--site: 1 to 32 of A-Z a-z 0-9 _ -, got '\(site)'") }
        if let keepAlive, Self.duration(keepAlive) == nil { throw ValidationError("--keep-alive: expected a duration such as 30s or 500ms, got '\(keepAlive)'") }
    }

    /// The file's settings (or the defaults), then each flag given over them.
    func settings() throws -> (bridge: MQTTBridgeSettings, events: String, commands: String, curve: MeshBusClient.CurveKeys?) {
        var bridge = MQTTBridgeSettings()
        var events = BrokerConfiguration.defaultEventEndpoint
        var commands = BrokerConfiguration.defaultCommandEndpoint
        var curve: MeshBusClient.CurveKeys?
        if let config {
            let daemon: DaemonConfiguration
            do {
                daemon = try ConfigurationFile.load(path: config)
            } catch {
                throw ValidationError("configuration refused:\n\(error.description)")
            }
            bridge = daemon.mqtt ?? bridge
            if let first = daemon.broker.events.first { events = Self.connectable(first) }
            if let first = daemon.broker.commands.first { commands = Self.connectable(first) }
            // A CURVE broker: its public key from its secret (same file, same host), the bridge's pair from its own secret.
            if let server = daemon.broker.security.curve, let secret = bridge.curveSecretKey {
                curve = MeshBusClient.CurveKeys(
                    serverPublicKey: try ZMQCurveKeyPair.publicKey(forSecret: server.secretKey),
                    publicKey: try ZMQCurveKeyPair.publicKey(forSecret: secret),
                    secretKey: secret
                )
            }
        }
        if let value = self.events { events = value }
        if let value = self.commands { commands = value }
        if tls || caFile != nil || certFile != nil || keyFile != nil || serverName != nil {
            var settings = bridge.tls ?? MQTTTLS()
            if let caFile { settings.caFile = caFile }
            if let certFile { settings.certificateFile = certFile }
            if let keyFile { settings.keyFile = keyFile }
            if let serverName { settings.serverName = serverName }
            if bridge.tls == nil, self.mqtt == nil { bridge.broker.port = 8883 }
            bridge.tls = settings
        }
        if let mqtt, let (host, port) = Self.hostPort(mqtt) {
            let portGiven = mqtt.contains(":") && !mqtt.hasSuffix("]")
            bridge.broker = HostPort(host: host, port: portGiven ? port : (bridge.tls == nil ? 1883 : 8883))
        }
        if let prefix { bridge.prefix = prefix }
        if let site { bridge.site = site }
        if let discoveryPrefix { bridge.discoveryPrefix = discoveryPrefix }
        if noDiscovery { bridge.discoveryPrefix = nil }
        if let clientId { bridge.clientID = clientId }
        if let username { bridge.username = username }
        if let passwordFile { bridge.passwordFile = passwordFile }
        if let keepAlive, let value = Self.duration(keepAlive) { bridge.keepAlive = value }
        if insecure { bridge.insecure = true }
        if bridge.passwordFile != nil, bridge.username == nil {
            throw ValidationError("--password-file needs --username (MQTT 3.1.1 has no password without a user)")
        }
        if !bridge.broker.isLoopback, !bridge.insecure, bridge.tls == nil {
            throw ValidationError(
                "\(bridge.broker) is on another machine and plain MQTT sends the password and every packet in clear; use --tls (mqtt.tls), a loopback broker, or --insecure (mqtt.insecure: true)"
            )
        }
        return (bridge, events, commands, curve)
    }

    /// The MQTT client; TLS files that cannot be used are a usage error, before anything starts.
    static func mqttClient(_ settings: MQTTConfiguration, logger: Logger) throws -> MQTTClient {
        do {
            return try MQTTClient(configuration: settings, logger: logger)
        } catch {
            throw ValidationError("TLS: \(error)")
        }
    }

    /// An endpoint the daemon binds, as a client connects to it (`tcp://*:7710` → `tcp://127.0.0.1:7710`).
    static func connectable(_ endpoint: String) -> String {
        for wildcard in ["tcp://*:", "tcp://0.0.0.0:"] where endpoint.hasPrefix(wildcard) {
            return "tcp://127.0.0.1:" + endpoint.dropFirst(wildcard.count)
        }
        return endpoint
    }

    func run() async throws {
        let level: Logger.Level = verbose ? .debug : .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "meshbus.mqtt")
        let (bridgeSettings, events, commands, curve) = try settings()
        let (host, port) = (bridgeSettings.broker.host, bridgeSettings.broker.port)
        let topics = BridgeTopics(prefix: bridgeSettings.prefix, site: bridgeSettings.site, discoveryPrefix: bridgeSettings.discoveryPrefix)
        var settings = MQTTConfiguration(host: host, port: port, clientID: bridgeSettings.clientID)
        settings.keepAlive = bridgeSettings.keepAlive
        settings.tls = bridgeSettings.tls
        settings.username = bridgeSettings.username
        if let passwordFile = bridgeSettings.passwordFile {
            let contents = try String(contentsOfFile: passwordFile, encoding: .utf8)
            settings.password = contents.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        }
        settings.will = MQTTBridge.lastWill(topics)
        var options = MeshBusClient.Options()
        options.curve = curve
        options.commandTimeout = .seconds(3)  // a local broker answers in milliseconds; this bounds how long a dead one goes unnoticed
        let client = try MeshBusClient(events: events, commands: commands, options: options)
        let bridge = MQTTBridge(
            meshbus: client, mqtt: try Self.mqttClient(settings, logger: logger), topics: topics,
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
