import Logging
import MQTT
import MQTTWire
import MeshBusTestSupport
import Synchronization

/// A client whose ``MQTTClient/run()`` runs for the length of ``withClient(_:_:)``, its streams recorded.
struct RunningClient: Sendable {
    let client: MQTTClient
    let events: Recorder<MQTTClientEvent>
    let messages: Recorder<MQTTMessage>

    /// Returns once the broker has accepted the client `count` times in all.
    func waitUntilConnected(times count: Int = 1) async throws {
        try await events.wait("connect #\(count)") { $0.connects >= count }
    }

    /// Returns once a connection the broker had accepted has ended `count` times in all.
    func waitUntilConnectionLost(times count: Int = 1) async throws {
        try await events.wait("loss #\(count)") { $0.losses.count >= count }
    }

    /// Returns the messages on `topic` once there are at least `count`.
    @discardableResult
    func waitForMessages(on topic: String, count: Int = 1) async throws -> [MQTTMessage] {
        try await messages.wait("\(count) message(s) on \(topic)") { $0.count { $0.topic == topic } >= count }.filter { $0.topic == topic }
    }
}

extension Array where Element == MQTTClientEvent {
    var connects: Int { count { if case .connected = $0 { true } else { false } } }

    /// Reasons of the connections that ended after being accepted (not of failed attempts).
    var losses: [String] {
        var connected = false
        var reasons: [String] = []
        for event in self {
            switch event {
            case .connected: connected = true
            case .disconnected(let reason):
                if connected { reasons.append(reason) }
                connected = false
            }
        }
        return reasons
    }
}

/// Runs a client for the length of `body`, then cancels it (it sends DISCONNECT) and waits for it to stop.
func withClient<Result: Sendable>(
    _ configuration: MQTTConfiguration,
    _ body: (RunningClient) async throws -> Result
) async throws -> Result {
    var logger = Logger(label: "mqtt-test")
    logger.logLevel = .error
    let client = try! MQTTClient(configuration: configuration, logger: logger)
    let running = RunningClient(client: client, events: Recorder(), messages: Recorder())
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        group.addTask { for await event in client.events { running.events.append(event) } }
        group.addTask { for await message in client.messages { running.messages.append(message) } }
        defer { group.cancelAll() }
        return try await body(running)
    }
}

/// A configuration for a broker on this machine, with timings shrunk so tests run fast.
func testConfiguration(_ broker: Mosquitto, clientID: String) -> MQTTConfiguration {
    var configuration = MQTTConfiguration(host: "127.0.0.1", port: broker.port, clientID: clientID)
    configuration.keepAlive = .seconds(2)
    configuration.connectTimeout = .seconds(2)
    configuration.initialReconnectDelay = .milliseconds(100)
    configuration.maximumReconnectDelay = .milliseconds(500)
    return configuration
}
