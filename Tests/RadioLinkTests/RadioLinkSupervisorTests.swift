import Logging
import MeshBusTestSupport
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Synchronization
import Testing

/// The supervisor with its timers on a ``MockClock`` and its I/O real (the simulator over
/// loopback TCP): design.md §5's default timings, run in milliseconds.
@Suite(.timeLimit(.minutes(1))) struct RadioLinkSupervisorTests {
    @Test func stalledRadioIsDeclaredDeadAfterTwoUnansweredProbesAtDefaultTimings() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        let timing = LinkTiming()
        try await LinkHarness.run(simulator: simulator, timing: timing, clock: clock) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.faults.stalled = true
            await clock.advance(toSleeperIn: .seconds(12))
            await clock.advance(toSleeperIn: .seconds(8))
            try await harness.log.wait { $0.states.contains(.degraded(attempt: 1, strikes: 1)) }
            await clock.advance(toSleeperIn: .seconds(8))
            try await harness.log.wait { $0.losses == [.probeStrikes] }
            #expect(clock.now.offset == .seconds(28), "healthCheckInterval + maxStrikes × probeTimeout")
            simulator.faults.stalled = false
            let retryIn = try #require(harness.log.events.states.last?.retryIn)
            #expect(retryIn >= .seconds(3) && retryIn <= .seconds(4), "a link that died young backs off, at least the cooldown")
            await clock.advance(toSleeperIn: retryIn)
            try await harness.log.waitForEstablished(2)
            #expect(harness.log.events.after(established: 1).stateNames == ["degraded", "backoff", "connecting", "configuring", "ready"])
        }
    }

    /// Should keep a link ready whose radio answers a probe just before the probe timeout.
    @Test func anAnswerJustInsideTheProbeTimeoutKeepsTheLinkReady() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator, timing: LinkTiming(), clock: clock) { harness in
            try await harness.log.waitForEstablished(1)
            // The radio answers 50 ms of real time late, by which the mock clock already stands
            // 1 ms before the probe's deadline.
            simulator.faults.answerDelay = .milliseconds(50)
            await clock.advance(toSleeperIn: .seconds(12))
            await clock.sleeperScheduled(at: clock.now.advanced(by: .seconds(8)))
            clock.advance(by: .seconds(8) - .milliseconds(1))
            try await harness.log.wait(forCount: 1) { $0.isQueueStatus }
            await clock.sleeperScheduled(at: clock.now.advanced(by: .seconds(12)))
            #expect(!harness.log.events.stateNames.contains("degraded"))
            #expect(harness.link.state == .ready(attempt: 1))
        }
    }

    /// Should give up a handshake that does not finish within the init timeout, back off, and
    /// connect again; `status` says why in words meanwhile, and nothing once ready.
    @Test func aHandshakeThatNeverFinishesTimesOutAndIsRetried() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        let timing = LinkTiming(stableAfter: .zero)
        try await LinkHarness.run(simulator: simulator, timing: timing, clock: clock) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.faults.withholdConfigComplete = true
            simulator.dropClient()
            try await harness.log.wait("the cooldown after the drop") { $0.states.last == .cooldown(attempt: 1, retryIn: .seconds(3)) }
            await clock.advance(toSleeperIn: .seconds(3))
            try await harness.log.wait("the second handshake under way") { $0.states.last?.name == "configuring" && $0.states.last?.attempt == 2 }
            #expect(harness.link.status.lastError == "link lost: transport_closed", "the last reason stands while the next attempt runs")
            await clock.advance(toSleeperIn: .seconds(25))
            try await harness.log.wait("the backoff after the init timeout") { $0.states.last?.name == "backoff" }
            simulator.faults.withholdConfigComplete = false
            #expect(harness.link.status.lastError?.hasSuffix(": no complete handshake within 25 s") == true, "\(String(describing: harness.link.status.lastError))")
            let retryIn = try #require(harness.log.events.states.last?.retryIn)
            #expect(retryIn >= .seconds(1) && retryIn <= .seconds(3), "the first backoff: 2 s ± 1 s")
            await clock.advance(toSleeperIn: retryIn)
            try await harness.log.waitForEstablished(2)
            #expect(harness.log.events.after(established: 1).stateNames == ["cooldown", "connecting", "configuring", "backoff", "connecting", "configuring", "ready"])
            #expect(harness.link.status.lastError == nil, "cleared once ready")
        }
    }

    @Test func answeredProbesKeepTheLinkReadyAndStampTheLastSuccess() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator, timing: LinkTiming(), clock: clock) { harness in
            try await harness.log.waitForEstablished(1)
            for round in 1...3 {
                await clock.advance(toSleeperIn: .seconds(12))
                try await harness.log.wait(forCount: round) { $0.isQueueStatus }
            }
            #expect(simulator.counters.heartbeats == 3)
            #expect(harness.link.state == .ready(attempt: 1))
            await clock.sleeperScheduled(at: clock.now.advanced(by: .seconds(12)))
            #expect(harness.link.status.sinceLastProbeSuccess == .zero)
        }
    }

    @Test func sendsWaitWhileDegradedAndFlowOnceTheRadioAnswers() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator, timing: LinkTiming(), clock: clock) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.faults.stalled = true
            await clock.advance(toSleeperIn: .seconds(12))
            await clock.advance(toSleeperIn: .seconds(8))
            try await harness.log.wait { $0.states.last == .degraded(attempt: 1, strikes: 1) }
            var packet = Meshtastic_MeshPacket()
            packet.id = 77
            packet.decoded.portnum = .textMessageApp
            #expect(harness.link.enqueue(OutgoingPacket(packet: packet, requestID: "degraded")))
            simulator.faults.stalled = false
            simulator.emit(.text)
            try await harness.log.wait { $0.contains { if case .sent = $0 { true } else { false } } }
            let events = harness.log.events
            let readyAgain = try #require(events.lastIndex { if case .stateChanged(.ready, .degraded) = $0 { true } else { false } })
            let sent = try #require(events.firstIndex { if case .sent = $0 { true } else { false } })
            #expect(sent > readyAgain, "written only after the link answered again")
            #expect(events.losses.isEmpty)
        }
    }

    @Test func heartbeatIsSentEveryHeartbeatInterval() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        let timing = LinkTiming(healthCheckInterval: .seconds(3600), heartbeatInterval: .seconds(300))
        try await LinkHarness.run(simulator: simulator, timing: timing, clock: clock) { harness in
            try await harness.log.waitForEstablished(1)
            await clock.advance(toSleeperIn: .seconds(300))
            try await harness.log.wait(forCount: 1) { $0.isQueueStatus }
            await clock.advance(toSleeperIn: .seconds(300))
            try await harness.log.wait(forCount: 2) { $0.isQueueStatus }
            #expect(simulator.counters.heartbeats == 2)
        }
    }

    /// The seed failure: a heartbeat task that threw during a disconnect escaped its loop's
    /// cleanup and left the process disconnected for good. Here the heartbeat, the probe and
    /// a queued write all hit a link that is dropping, over and over; each time the link
    /// must be reported lost once and come back.
    @Test func heartbeatProbeAndWriteFailingAsTheLinkDropsNeverEndTheSupervisor() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        let timing = LinkTiming(healthCheckInterval: .seconds(10), heartbeatInterval: .seconds(10), stableAfter: .zero)
        try await LinkHarness.run(simulator: simulator, timing: timing, clock: clock) { harness in
            let rounds = 20
            for round in 1...rounds {
                try await harness.log.waitForEstablished(round)
                var packet = Meshtastic_MeshPacket()
                packet.id = UInt32(round)
                packet.decoded.portnum = .textMessageApp
                #expect(harness.link.enqueue(OutgoingPacket(packet: packet, requestID: nil)))
                simulator.dropClient()
                await clock.advance(toSleeperIn: .seconds(10))
                try await harness.log.wait { $0.losses.count == round }
                let retryIn = try #require(harness.log.events.states.last?.retryIn)
                await clock.advance(toSleeperIn: retryIn)
            }
            try await harness.log.waitForEstablished(rounds + 1)
            let losses = harness.log.events.losses
            #expect(losses.count == rounds)
            #expect(losses.allSatisfy { $0 == .transportClosed || $0 == .writeFailed }, "\(losses)")
            #expect(harness.log.events.established.count == rounds + 1)
        }
    }

    @Test func shutdownClosesCleanlyReportsTheLossAndEndsTheSupervisor() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        let (link, events) = RadioLink.make(
            slot: "t", transport: TCPRadioTransport(host: "127.0.0.1", port: simulator.port), clock: MockClock(), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        let log = EventLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await simulator.run() }
            group.addTask { for await event in events { log.append(event) } }
            async let supervisor: Void = link.run()
            try await log.waitForEstablished(1)
            link.shutdown()
            await supervisor
            try await log.wait { $0.stateNames.last == "stopped" }
            group.cancelAll()
        }
        #expect(log.events.losses == [.shutdown])
        #expect(link.state == .stopped)
        #expect(simulator.counters.connections == 1)
    }

    /// Should wait idle, saying why, while the transport has no peer to open through, and
    /// open at once (no timer to wait out) when one arrives.
    @Test func aLinkWaitsIdleForItsPeerAndOpensAtOnceWhenOneArrives() async throws {
        let clock = MockClock()
        let simulator = try await RadioSimulator.start(.quiet)
        let transport = PeerGatedTransport(port: simulator.port)
        try await LinkHarness.run(simulator: simulator, transport: transport, timing: LinkTiming(), clock: clock) { harness in
            try await harness.log.wait("the link idle without a peer") { $0.states.last?.name == "idle" }
            #expect(harness.link.status.lastError == "\(transport): no browser holds the radio")
            transport.admit()
            try await harness.log.waitForEstablished(1)
            #expect(harness.log.events.stateNames == ["connecting", "idle", "connecting", "configuring", "ready"])
            #expect(harness.link.status.lastError == nil)
        }
    }
}

/// A transport reached only through a peer, as a browser-held radio is: `open` refuses with
/// `awaitingPeer` until the test admits one, then opens the simulator over TCP.
final class PeerGatedTransport: ChannelRadioTransport {
    let tcp: TCPRadioTransport
    private let present = Mutex(false)
    private let arrivals: AsyncStream<Void>
    private let arrival: AsyncStream<Void>.Continuation

    init(port: Int) {
        tcp = TCPRadioTransport(host: "127.0.0.1", port: port)
        (arrivals, arrival) = AsyncStream<Void>.makeStream()
    }

    var kind: String { "gated" }
    var description: String { "gated://\(tcp.port)" }

    func open() async throws -> StreamChannel {
        guard present.withLock({ $0 }) else { throw RadioTransportError.awaitingPeer("no browser holds the radio") }
        return try await tcp.open()
    }

    func waitForPeer() async {
        if present.withLock({ $0 }) { return }
        for await _ in arrivals { return }
    }

    func admit() {
        present.withLock { $0 = true }
        arrival.yield()
    }
}
