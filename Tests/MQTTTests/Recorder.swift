import Logging
import MQTT
import Synchronization

/// Everything an async stream yielded, in order, with a bounded wait for a condition on it:
/// tests await what a client reports, never a fixed sleep.
final class Recorder<Element: Sendable>: Sendable {
    struct TimedOut: Error, CustomStringConvertible {
        let description: String
    }

    private struct Waiter {
        let id: Int
        let predicate: @Sendable ([Element]) -> Bool
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var elements: [Element] = []
        var waiters: [Waiter] = []
        var cancelled: Set<Int> = []
        var nextID = 0
    }

    private let state = Mutex(State())

    var elements: [Element] { state.withLock { $0.elements } }

    func append(_ element: Element) {
        let ready = state.withLock { state in
            state.elements.append(element)
            let elements = state.elements
            let ready = state.waiters.filter { $0.predicate(elements) }
            state.waiters.removeAll { $0.predicate(elements) }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns the elements once `predicate` holds for them; throws ``TimedOut`` after `timeout`.
    @discardableResult
    func wait(
        timeout: Duration = .seconds(15),
        _ what: String,
        until predicate: @escaping @Sendable ([Element]) -> Bool
    ) async throws -> [Element] {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.wait(until: predicate) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw TimedOut(description: "timed out after \(timeout) waiting for \(what); got \(self.elements)")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
        return elements
    }

    private func wait(until predicate: @escaping @Sendable ([Element]) -> Bool) async throws {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now: Result<Void, any Error>? = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if predicate(state.elements) { return .success(()) }
                    state.waiters.append(Waiter(id: id, predicate: predicate, continuation: continuation))
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }
}

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
    let client = MQTTClient(configuration: configuration, logger: logger)
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
