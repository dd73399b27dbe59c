import Logging
import MeshBusTestSupport
import MeshtasticProtocol
import NIOPosix
import Testing

@testable import MQTT

@Suite struct MQTTReconnectMachineTests {
    typealias Machine = MQTTReconnectMachine<MockClock.Instant, SeededGenerator>

    var machine = Machine(initialDelay: .seconds(1), maximumDelay: .seconds(30), generator: SeededGenerator(seed: 7))

    /// The retry delay of the action list, which must be a single `.retry`.
    func retryDelay(of actions: [Machine.Action]) -> Duration? {
        guard actions.count == 1, case .retry(_, _, let delay, _) = actions[0] else { return nil }
        return delay
    }

    /// Should double the wait per failure up to the maximum, and scale it by the jitter.
    @Test func delayDoublesUpToTheMaximumAndJitterScalesIt() {
        let delays = (1...7).map { Machine.delay(afterFailures: $0, initial: .seconds(1), maximum: .seconds(30), jitter: 1) }
        #expect(delays == [1, 2, 4, 8, 16, 30, 30].map { .seconds($0) })
        #expect(Machine.delay(afterFailures: 1, initial: .seconds(1), maximum: .seconds(30), jitter: 0.75) == .milliseconds(750))
        #expect(Machine.delay(afterFailures: 100, initial: .seconds(1), maximum: .seconds(30), jitter: 1.25) == .milliseconds(37_500))
    }

    /// Should connect at once on start, and wait a jittered, growing delay after each failed connect.
    @Test mutating func failedConnectsBackOffWithinTheJitterAndNeverGiveUp() {
        #expect(machine.handle(.start) == [.connect(attempt: 1)])
        var now = MockClock.Instant.ms(0)
        for attempt in 1...8 {
            let actions = machine.handle(.connectionEnded(attempt: attempt, reason: "refused", wasLive: false, now: now))
            let base = Machine.delay(afterFailures: attempt, initial: .seconds(1), maximum: .seconds(30), jitter: 1)
            let delay = try! #require(retryDelay(of: actions))
            #expect(delay >= base * 0.8 && delay <= base * 1.2, "attempt \(attempt): \(delay) within ±20 % of \(base)")
            let retryAt = now.advanced(by: delay)
            #expect(machine.handle(.retryDue(now: now)) == [.wait(until: retryAt)], "woken too early: it waits out the rest")
            now = retryAt
            #expect(machine.handle(.retryDue(now: now)) == [.connect(attempt: attempt + 1)])
        }
    }

    /// Should start counting afresh after a connection the broker had accepted.
    @Test mutating func aLiveConnectionResetsTheBackoff() {
        _ = machine.handle(.start)
        for attempt in 1...4 {
            _ = machine.handle(.connectionEnded(attempt: attempt, reason: "refused", wasLive: false, now: .ms(0)))
            _ = machine.handle(.retryDue(now: .ms(1_000_000)))
        }
        #expect(machine.failures == 4)
        let actions = machine.handle(.connectionEnded(attempt: 5, reason: "keep alive timeout", wasLive: true, now: .ms(0)))
        #expect(machine.failures == 1)
        #expect(retryDelay(of: actions).map { $0 <= .milliseconds(1_200) } == true)
    }

    /// Should give the same delays for the same seed.
    @Test func sameSeedGivesTheSameDelays() {
        func delays(seed: UInt64) -> [Duration] {
            var machine = Machine(initialDelay: .seconds(1), maximumDelay: .seconds(30), generator: SeededGenerator(seed: seed))
            _ = machine.handle(.start)
            return (1...5).compactMap { attempt in
                let actions = machine.handle(.connectionEnded(attempt: attempt, reason: "x", wasLive: false, now: .ms(0)))
                _ = machine.handle(.retryDue(now: .ms(1_000_000)))
                return retryDelay(of: actions)
            }
        }
        #expect(delays(seed: 3) == delays(seed: 3))
        #expect(delays(seed: 3) != delays(seed: 4))
    }

    /// Should ignore the end of a connection that is not the current one, and stop for good.
    @Test mutating func staleEndsAreIgnoredAndStopIsFinal() {
        _ = machine.handle(.start)
        #expect(machine.handle(.connectionEnded(attempt: 9, reason: "x", wasLive: false, now: .ms(0))).isEmpty)
        #expect(machine.handle(.stop).isEmpty)
        #expect(machine.handle(.connectionEnded(attempt: 1, reason: "x", wasLive: false, now: .ms(0))).isEmpty)
        #expect(machine.state == .stopped)
    }
}

/// The client's reconnect loop on a mock clock, its connects real: a loopback port that
/// refuses them. Each wait is exactly the machine's seeded delay; nothing waits on real time.
@Suite struct MQTTClientReconnectTests {
    @Test func refusedConnectsAreRetriedAtTheSeededDelaysOnTheMockClock() async throws {
        // A port that was free a moment ago: connecting to it is refused at once.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress!.port!
        try await probe.close()
        var configuration = MQTTConfiguration(host: "127.0.0.1", port: port, clientID: "reconnect-test")
        configuration.initialReconnectDelay = .milliseconds(100)
        configuration.maximumReconnectDelay = .milliseconds(400)
        let client = try! MQTTClient(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let clock = MockClock()
        let events = Recorder<MQTTClientEvent>()

        // The delays the client must wait, from a machine with the same seed.
        var expected = MQTTReconnectMachine<MockClock.Instant, SeededGenerator>(
            initialDelay: .milliseconds(100), maximumDelay: .milliseconds(400), generator: SeededGenerator(seed: 11)
        )
        _ = expected.handle(.start)

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run(clock: clock, generator: SeededGenerator(seed: 11)) }
            group.addTask { for await event in client.events { events.append(event) } }
            for attempt in 1...5 {
                let deadline = await clock.nextSleep()
                guard case .retry(_, _, _, let retryAt) = expected.handle(
                    .connectionEnded(attempt: attempt, reason: "", wasLive: false, now: clock.now)
                ).first else {
                    Issue.record("the machine did not retry after attempt \(attempt)")
                    return
                }
                #expect(deadline == retryAt, "attempt \(attempt) waits until \(retryAt), not \(deadline)")
                _ = expected.handle(.retryDue(now: retryAt))
                try await events.wait("the end of connect attempt \(attempt)") { $0.count >= attempt }
                clock.advance(by: clock.now.duration(to: deadline))
            }
            group.cancelAll()
        }
        #expect(events.elements.prefix(5).allSatisfy { if case .disconnected(let reason) = $0 { reason.hasPrefix("connect failed") } else { false } })
    }
}
