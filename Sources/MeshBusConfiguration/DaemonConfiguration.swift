import MQTT
import Broker
import Logging

/// Everything `meshbus run --config` reads from its YAML file: the broker's settings and the
/// daemon's own (metrics endpoint, logging).
public struct DaemonConfiguration: Sendable, Equatable {
    public var broker: BrokerConfiguration
    /// Where the Prometheus page is served (`GET /metrics`); nil turns it off.
    public var metrics: HostPort?
    /// Where HTTP clients are served (`POST /api/commands`, `GET /metrics`); nil turns it off.
    public var http: HostPort?
    public var log: LogSettings
    /// For `meshbus mqtt --config`; the broker itself does not read it.
    public var mqtt: MQTTBridgeSettings?

    public init(broker: BrokerConfiguration = BrokerConfiguration(), metrics: HostPort? = nil, http: HostPort? = nil, log: LogSettings = LogSettings()) {
        self.broker = broker
        self.metrics = metrics
        self.http = http
        self.log = log
    }
}

/// A TCP listening address.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` (`[::1]:port` for IPv6); port 0 picks one.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            return nil
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace) else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether only this machine can reach the address.
    public var isLoopback: Bool { SecurityConfiguration.isLoopback("tcp://\(description)") }
}

/// How the daemon logs.
public struct LogSettings: Sendable, Equatable {
    /// Plain text lines for people, or one JSON object per line for log collectors.
    public enum Format: String, Sendable, Equatable, CaseIterable {
        case text, json
    }

    public var level: Logger.Level
    public var format: Format

    public init(level: Logger.Level = .info, format: Format = .text) {
        self.level = level
        self.format = format
    }
}

/// Why a configuration file was refused: every problem found, each naming file, line and key.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One problem, printed as `file:line: key: message`.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var key: String
        public var message: String

        public var description: String {
            key.isEmpty ? "\(file):\(line): \(message)" : "\(file):\(line): \(key): \(message)"
        }
    }

    public var problems: [Problem]

    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// The `mqtt:` section: how `meshbus mqtt --config FILE` reaches the MQTT broker and names its
/// topics (its flags override each key).
public struct MQTTBridgeSettings: Sendable, Equatable {
    public var broker = HostPort(host: "127.0.0.1", port: 1883)
    /// First level of every topic.
    public var prefix = "meshbus"
    /// This host's name among several MeshBus hosts on one MQTT broker; nil for one host.
    public var site: String?
    /// Home Assistant's discovery prefix; nil publishes no discovery.
    public var discoveryPrefix: String? = "homeassistant"
    public var clientID = "meshbus-bridge"
    public var username: String?
    /// A file whose first line is the password (kept out of the config and the process list).
    public var passwordFile: String?
    public var keepAlive: Duration = .seconds(30)
    /// Plain MQTT to a broker on another machine: the password and every packet in clear.
    public var insecure = false
    /// The bridge's own CURVE secret key, towards a MeshBus broker with `security.curve`.
    public var curveSecretKey: String?
    /// TLS towards the MQTT broker; nil is plain MQTT.
    public var tls: MQTTTLS?

    public init() {}

    /// Whether `text` can be one level of a topic prefix or a site: no wildcards, no empty level.
    public static func isTopicPrefix(_ text: String) -> Bool {
        !text.isEmpty && !text.contains(where: { "+#".contains($0) }) && !text.hasPrefix("/") && !text.hasSuffix("/") && !text.contains("//")
    }

    /// Whether `text` is a site name: `[A-Za-z0-9_-]{1,32}`, as a slot name (it is part of ids).
    public static func isSiteName(_ text: String) -> Bool { SlotConfiguration.isValidName(text) }
}
