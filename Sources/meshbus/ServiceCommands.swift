import ArgumentParser
import BluetoothLE
import Broker
import EventLoopTime
import MeshBusConfiguration
import Observability
import ServiceLifecycle
import ZeroMQ

/// `meshbus check`: validates a configuration file without starting anything.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a configuration file; print every problem as FILE:LINE: KEY: MESSAGE and exit 1, or a summary and exit 0."
    )

    @Option(help: "The YAML configuration file.")
    var config: String

    func run() throws {
        do {
            let daemon = try ConfigurationFile.load(path: config)
            say("\(config): ok")
            for slot in daemon.broker.slots {
                let virtual = slot.virtualRadio.map { ", virtual radio \($0.address)\($0.allowAdmin ? " (admin allowed)" : "")" } ?? ""
                say("slot \(slot.name): \(Self.describe(slot.source))\(virtual)")
            }
            say("events: \(daemon.broker.events.joined(separator: ", "))")
            say("commands: \(daemon.broker.commands.joined(separator: ", "))")
            if let metrics = daemon.metrics { say("metrics: http://\(metrics)/metrics") }
            if let http = daemon.http { say("http: http://\(http)/ (status page, /events, /ws, POST /api/commands, /metrics)") }
            let security = daemon.broker.security
            say("security: " + (security.curve.map { "CURVE, \($0.clients.count) client keys" } ?? (security.insecure ? "insecure" : "loopback only")))
            if let tokens = security.tokens { say("http tokens: \(tokens.read.count) read, \(tokens.send.count) send") }
            if let mqtt = daemon.mqtt {
                let topics = [mqtt.prefix, mqtt.site].compactMap { $0 }.joined(separator: "/")
                say("mqtt (meshbus mqtt --config): \(mqtt.broker)\(mqtt.tls == nil ? "" : " over TLS"), topics \(topics)/…, " + (mqtt.discoveryPrefix.map { "discovery \($0)" } ?? "no discovery"))
            }
        } catch {
            for problem in error.problems { sayError(problem.description) }
            throw ExitCode(1)
        }
    }

    static func describe(_ source: RadioSource) -> String {
        switch source {
        case .tcp(let host, let port): "tcp \(HostPort(host: host, port: port))"
        case .serial(let path): "serial \(path)"
        case .simulator(let simulator): "simulator, \(simulator.nodeCount) nodes, \(simulator.trafficPerMinute) packets/min"
        case .webserial: "webserial, lent by a browser at /webserial/<slot> on the HTTP listener"
        case .ble(let ble):
            "ble \(ble.device) on \(ble.adapter), " + (ble.pin == nil ? "no pin (paired beforehand, or none needed)" : "pairs with the configured pin")
        }
    }
}

/// `meshbus keygen`: prints a new CURVE key pair.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Print a new CURVE key pair (Z85): the secret key for security.curve, the public key for clients."
    )

    @Flag(help: "Print a random bearer token for security.tokens (the HTTP listener) instead.")
    var token = false

    func run() throws {
        if token {
            var generator = SystemRandomNumberGenerator()
            let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &generator) }
            say("token: " + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())
            return
        }
        let pair = try ZMQCurveKeyPair.generate()
        say("public: \(pair.publicKey)")
        say("secret: \(pair.secretKey)")
    }
}

/// Keeps systemd informed: `READY=1` once the group runs (sockets bound, slots starting),
/// `WATCHDOG=1` every half watchdog period while the process's scheduler is alive,
/// `STOPPING=1` on graceful shutdown.
struct SystemdService: Service {
    let notifier: SystemdNotifier
    let watchdogInterval: Duration?

    /// Half of `WATCHDOG_USEC`, when systemd set one for this process.
    static func watchdogInterval(_ environment: [String: String]) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0 else { return nil }
        return .microseconds(microseconds / 2)
    }

    func run() async {
        notifier.notify("READY=1\nSTATUS=serving")
        if notifier.isActive, let watchdogInterval {
            await cancelWhenGracefulShutdown {
                let clock = EventLoopClock()
                while (try? await clock.sleep(for: watchdogInterval)) != nil {
                    notifier.notify("WATCHDOG=1")
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        notifier.notify("STOPPING=1\nSTATUS=closing radios")
    }
}

extension LogSettings.Format: ExpressibleByArgument {}
