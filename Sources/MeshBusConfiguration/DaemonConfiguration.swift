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
