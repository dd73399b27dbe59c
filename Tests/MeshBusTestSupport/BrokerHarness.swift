import Broker
import Foundation
import RadioLink
import RadioSimulator

/// A real broker with one slot, `radio`, on the project's simulated radio over loopback TCP,
/// its sockets on `ipc://` endpoints in a fresh temporary folder: what the broker-level test
/// targets run against.
public enum BrokerHarness {
    /// A quiet radio: four nodes, no background traffic, quick ACKs, no text rate limit.
    public static let quietRadio = SimulatorConfiguration(nodeCount: 4, trafficPerMinute: 0, ackDelay: .milliseconds(20), textRateLimit: .zero)

    /// Runs `body` while the simulator and the broker run, then stops the broker before the
    /// simulator. The slot writes without send spacing unless `adjust` says otherwise.
    public static func run(
        radio: SimulatorConfiguration = quietRadio,
        slot adjust: (inout SlotConfiguration) -> Void = { _ in },
        _ body: (RadioSimulator, Broker) async throws -> Void
    ) async throws {
        let simulator = try await RadioSimulator.start(radio)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var timing = LinkTiming()
        timing.sendSpacing = [:]
        var slot = SlotConfiguration(name: "radio", source: .tcp(host: "127.0.0.1", port: simulator.port), timing: timing)
        adjust(&slot)
        let broker = try await Broker(
            configuration: BrokerConfiguration(events: ["ipc://\(directory.path)/events"], commands: ["ipc://\(directory.path)/commands"], slots: [slot])
        )
        try await run(simulator, broker) { try await body(simulator, broker) }
    }

    /// Runs `body` while `simulator` and `broker` run, then stops the broker before the
    /// simulator: a simulator cancelled while the broker is reconnecting could drop an
    /// accepted connection unserved, which NIO traps on (swift-nio #3481).
    public static func run(_ simulator: RadioSimulator, _ broker: Broker, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { radio in
            radio.addTask { await simulator.run() }
            defer { radio.cancelAll() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await broker.run() }
                defer { group.cancelAll() }
                try await body()
            }
        }
    }
}
