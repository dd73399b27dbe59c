import Logging
import MeshBusTestSupport
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Synchronization
import Testing

/// Everything a link reported, in order, with bounded waits for a condition on it: tests
/// await what the link says, never a sleep, and a wait that runs out names what it waited for.
typealias EventLog = Recorder<RadioLinkEvent>

extension Recorder where Element == RadioLinkEvent {
    var events: [RadioLinkEvent] { elements }

    /// Returns once `predicate` holds for the events so far; a timeout names this call's place.
    func wait(file: StaticString = #fileID, line: UInt = #line, until predicate: @escaping @Sendable ([RadioLinkEvent]) -> Bool) async throws {
        try await wait("the condition at \(file):\(line)", until: predicate)
    }

    /// Returns once the link has been established `count` times in all.
    func waitForEstablished(_ count: Int) async throws {
        try await wait("the link established \(count) times") { $0.established.count >= count }
    }

    /// Returns once the log holds `count` events matching `predicate`.
    func wait(
        forCount count: Int, file: StaticString = #fileID, line: UInt = #line, of predicate: @escaping @Sendable (RadioLinkEvent) -> Bool
    ) async throws {
        try await wait("\(count) events matching the test at \(file):\(line)") { $0.filter(predicate).count >= count }
    }
}

extension Array where Element == RadioLinkEvent {
    var established: [LinkInfo] {
        compactMap { if case .established(let info) = $0 { info } else { nil } }
    }

    var losses: [LossReason] {
        compactMap { if case .lost(let reason) = $0 { reason } else { nil } }
    }

    /// The state names the link went through, in order.
    var stateNames: [String] {
        compactMap { if case .stateChanged(let state, _) = $0 { state.name } else { nil } }
    }

    var states: [LinkState] {
        compactMap { if case .stateChanged(let state, _) = $0 { state } else { nil } }
    }

    /// Events after the `n`th establishment (n from 1).
    func after(established n: Int) -> [RadioLinkEvent] {
        var seen = 0
        for (index, event) in enumerated() {
            if case .established = event { seen += 1 }
            if seen == n { return Array(self[(index + 1)...]) }
        }
        return []
    }
}

extension Array {
    func partitioned(by belongs: (Element) -> Bool) -> ([Element], [Element]) {
        var yes: [Element] = []
        var no: [Element] = []
        for element in self {
            if belongs(element) { yes.append(element) } else { no.append(element) }
        }
        return (yes, no)
    }
}

extension RadioLinkEvent {
    var isQueueStatus: Bool {
        if case .fromRadio(let message, _, _) = self, case .queueStatus = message.payloadVariant { return true }
        return false
    }

    var isLogLine: Bool {
        if case .logLine = self { return true }
        return false
    }

    var receivedPacket: Meshtastic_MeshPacket? {
        if case .fromRadio(let message, _, _) = self, case .packet(let packet) = message.payloadVariant { return packet }
        return nil
    }
}

/// Timings short enough for tests over real sockets and real time.
extension LinkTiming {
    static let fast = LinkTiming(
        healthCheckInterval: .milliseconds(100),
        probeTimeout: .milliseconds(150),
        maxStrikes: 2,
        reconnectCooldown: .milliseconds(20),
        baseBackoff: .milliseconds(20),
        maxBackoff: .milliseconds(200),
        backoffJitter: .milliseconds(10),
        interfaceInitTimeout: .milliseconds(800),
        disconnectedPollInterval: .milliseconds(50),
        heartbeatInterval: .seconds(1),
        connectTimeout: .milliseconds(500),
        stableAfter: .zero,
        stormWindow: .seconds(10),
        stormLimit: 1000
    )
}

/// A simulator and a link to it, both running, with the link's events logged.
struct LinkHarness<C: Clock>: Sendable where C.Duration == Duration {
    let simulator: RadioSimulator
    let link: RadioLink<C>
    let log: EventLog

    /// Runs `body` with a running simulator and link; stops both afterwards and checks that
    /// the supervisor ended only because it was told to.
    static func run(
        simulator: RadioSimulator,
        transport: (any RadioTransport)? = nil,
        timing: LinkTiming = .fast,
        clock: C,
        seed: UInt64 = 1,
        _ body: (LinkHarness) async throws -> Void
    ) async throws {
        let transport = transport ?? TCPRadioTransport(host: "127.0.0.1", port: simulator.port, connectTimeout: timing.connectTimeout)
        let (link, events) = RadioLink.make(slot: "test", transport: transport, timing: timing, clock: clock, seed: seed, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let log = EventLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await simulator.run() }
            group.addTask {
                await withTaskGroup(of: Void.self) { inner in
                    inner.addTask { await link.run() }
                    for await event in events { log.append(event) }
                }
            }
            try await body(LinkHarness(simulator: simulator, link: link, log: log))
            #expect(link.state != .stopped, "the supervisor is alive until told to stop")
            link.shutdown()
            try await log.wait("the link stopped") { $0.stateNames.last == "stopped" }
            group.cancelAll()
        }
    }
}

extension LinkHarness where C == ContinuousClock {
    static func run(
        simulator: RadioSimulator,
        transport: (any RadioTransport)? = nil,
        timing: LinkTiming = .fast,
        seed: UInt64 = 1,
        _ body: (LinkHarness) async throws -> Void
    ) async throws {
        try await run(simulator: simulator, transport: transport, timing: timing, clock: ContinuousClock(), seed: seed, body)
    }
}

extension SimulatorConfiguration {
    /// A quiet mesh (traffic only on demand) with quick ACKs.
    static let quiet = SimulatorConfiguration(nodeCount: 3, trafficPerMinute: 0, ackDelay: .milliseconds(10))
}
