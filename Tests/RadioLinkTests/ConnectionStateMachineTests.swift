import MeshBusTestSupport
import MeshtasticProtocol
import RadioLink
import Testing

/// Every edge of the connection manager, as pure values: no I/O, no sleeping. Time is a
/// ``MockClock`` instant the test moves by hand.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<MockClock.Instant>
    typealias Timer = Machine.Timer

    static let timing = LinkTiming()
    var machine = Machine(timing: timing, seed: 7)
    var now = MockClock.Instant(offset: .zero)

    // MARK: Helpers

    /// The timer of `kind` among `actions`.
    func timer(_ kind: Timer.Kind, in actions: [Machine.Action]) -> Timer? {
        for case .schedule(let timer) in actions where timer.kind == kind { return timer }
        return nil
    }

    func nonce(in actions: [Machine.Action]) -> UInt32? {
        for case .send(.wantConfig(let nonce)) in actions { return nonce }
        return nil
    }

    /// Drives the machine from idle through one handshake; returns the ready actions.
    @discardableResult
    mutating func becomeReady(attempt: Int = 1) -> [Machine.Action] {
        if attempt == 1 { _ = machine.handle(.start) }
        let nonce = nonce(in: machine.handle(.transportOpened(attempt: attempt)))!
        return machine.handle(.received(.configComplete(id: nonce), attempt: attempt, now: now))
    }

    mutating func elapse(_ duration: Duration) {
        now = now.advanced(by: duration)
    }

    /// Fires the probe timer and lets the probe go unanswered.
    mutating func missProbe(after readyActions: [Machine.Action]) -> [Machine.Action] {
        let probe = timer(.probe, in: readyActions)!
        elapse(probe.delay)
        let sent = machine.handle(.timerFired(probe, now: now))
        #expect(sent.contains(.send(.probe(.heartbeat(nonce: 2)))))
        let timeout = timer(.probeTimeout, in: sent)!
        elapse(timeout.delay)
        return machine.handle(.timerFired(timeout, now: now))
    }

    // MARK: Handshake

    @Test mutating func startOpensTheFirstAttemptUnderTheInitTimeout() {
        let actions = machine.handle(.start)
        #expect(actions.first == .connect(attempt: 1))
        #expect(timer(.initTimeout, in: actions)?.delay == .seconds(25))
        #expect(machine.state == .connecting(attempt: 1))
        #expect(machine.handle(.start).isEmpty, "a second start is ignored")
    }

    @Test mutating func readyOnlyOnTheMatchingNonce() {
        _ = machine.handle(.start)
        let nonce = nonce(in: machine.handle(.transportOpened(attempt: 1)))!
        #expect(nonce != 0 && nonce != 69420 && nonce != 69421)
        #expect(machine.handle(.received(.configComplete(id: nonce &+ 1), attempt: 1, now: now)).isEmpty, "a stale config_complete_id is ignored")
        #expect(machine.state == .configuring(attempt: 1, nonce: nonce))
        let actions = machine.handle(.received(.configComplete(id: nonce), attempt: 1, now: now))
        #expect(actions.first == .established(attempt: 1))
        #expect(timer(.probe, in: actions)?.delay == .seconds(12))
        #expect(timer(.heartbeat, in: actions)?.delay == .seconds(300))
        #expect(machine.state == .ready(attempt: 1))
    }

    @Test mutating func initTimeoutCountsAsFailedAttempt() {
        let start = machine.handle(.start)
        _ = machine.handle(.transportOpened(attempt: 1))
        elapse(.seconds(25))
        let actions = machine.handle(.timerFired(timer(.initTimeout, in: start)!, now: now))
        #expect(actions.contains(.closeSession(goodbye: false)))
        #expect(!actions.contains { if case .lost = $0 { true } else { false } }, "a link that never was ready is not reported lost")
        #expect(machine.failures == 1)
        guard case .backoff(1, let delay) = machine.state else { Issue.record("expected backoff, got \(machine.state)"); return }
        #expect(delay >= .seconds(3), "an opened transport gets at least the cooldown")
    }

    @Test mutating func initTimeoutIsCancelledByReadiness() {
        let start = machine.handle(.start)
        becomeReady()
        elapse(.seconds(25))
        #expect(machine.handle(.timerFired(timer(.initTimeout, in: start)!, now: now)).isEmpty)
        #expect(machine.state == .ready(attempt: 1))
    }

    @Test mutating func rebootDuringHandshakeIsAFailedAttempt() {
        _ = machine.handle(.start)
        _ = machine.handle(.transportOpened(attempt: 1))
        let actions = machine.handle(.received(.rebooted, attempt: 1, now: now))
        #expect(actions.contains(.closeSession(goodbye: false)))
        #expect(machine.state.name == "backoff")
    }

    @Test mutating func transportClosedDuringHandshakeIsAFailedAttempt() {
        _ = machine.handle(.start)
        _ = machine.handle(.transportOpened(attempt: 1))
        let actions = machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now))
        #expect(!actions.contains(.closeSession(goodbye: false)), "the session already ended")
        #expect(machine.failures == 1)
        #expect(machine.state.name == "backoff")
    }

    @Test mutating func openedEventOfAnotherAttemptIsIgnored() {
        _ = machine.handle(.start)
        #expect(machine.handle(.transportOpened(attempt: 2)).isEmpty)
        #expect(machine.state == .connecting(attempt: 1))
    }

    // MARK: Probes

    @Test mutating func firstMissedProbeDegradesAndProbesAgainWithAdminRequest() {
        let ready = becomeReady()
        let actions = missProbe(after: ready)
        #expect(machine.state == .degraded(attempt: 1, strikes: 1))
        #expect(actions.contains { if case .send(.probe(.deviceMetadata)) = $0 { true } else { false } })
        #expect(timer(.probeTimeout, in: actions)?.delay == .seconds(8))
        #expect(!machine.state.isReady, "sends pause while degraded")
        #expect(machine.state.isUp)
    }

    @Test mutating func secondMissedProbeDeclaresLinkDead() {
        let ready = becomeReady()
        let first = missProbe(after: ready)
        elapse(.seconds(8))
        let actions = machine.handle(.timerFired(timer(.probeTimeout, in: first)!, now: now))
        #expect(actions.first == .lost(.probeStrikes))
        #expect(actions.contains(.closeSession(goodbye: false)))
        #expect(machine.state.name == "backoff", "a link that died within stableAfter backs off")
    }

    @Test mutating func successfulProbeResetsStrikes() {
        let ready = becomeReady()
        _ = missProbe(after: ready)
        #expect(machine.state.strikes == 1)
        elapse(.seconds(1))
        let actions = machine.handle(.received(.other, attempt: 1, now: now))
        #expect(machine.state == .ready(attempt: 1))
        #expect(machine.lastProbeSuccess == now)
        #expect(timer(.probe, in: actions)?.delay == .seconds(12), "the next probe follows the interval")
    }

    @Test mutating func answeredProbeReportsItsRoundTrip() {
        let ready = becomeReady()
        let probe = timer(.probe, in: ready)!
        elapse(probe.delay)
        _ = machine.handle(.timerFired(probe, now: now))
        elapse(.milliseconds(340))
        let actions = machine.handle(.received(.other, attempt: 1, now: now))
        #expect(actions.contains(.probeAnswered(roundTrip: .milliseconds(340))))
        #expect(machine.lastProbeRoundTrip == .milliseconds(340), "kept for status")
        elapse(.seconds(1))
        #expect(machine.handle(.received(.other, attempt: 1, now: now)).isEmpty, "a frame with no probe in flight reports nothing")
    }

    @Test mutating func answeredProbeCancelsItsTimeout() {
        let ready = becomeReady()
        let probe = timer(.probe, in: ready)!
        elapse(probe.delay)
        let sent = machine.handle(.timerFired(probe, now: now))
        _ = machine.handle(.received(.other, attempt: 1, now: now))
        elapse(.seconds(8))
        #expect(machine.handle(.timerFired(timer(.probeTimeout, in: sent)!, now: now)).isEmpty, "a stale timeout is ignored")
        #expect(machine.state == .ready(attempt: 1))
    }

    @Test mutating func strikesFollowMaxStrikes() {
        machine = Machine(timing: LinkTiming(maxStrikes: 3), seed: 1)
        var actions = missProbe(after: becomeReady())
        for strike in 2...3 {
            #expect(machine.state.strikes == strike - 1)
            elapse(.seconds(8))
            actions = machine.handle(.timerFired(timer(.probeTimeout, in: actions)!, now: now))
        }
        #expect(actions.first == .lost(.probeStrikes))
    }

    @Test mutating func heartbeatRepeatsWhileUp() {
        let ready = becomeReady()
        let heartbeat = timer(.heartbeat, in: ready)!
        elapse(heartbeat.delay)
        let actions = machine.handle(.timerFired(heartbeat, now: now))
        #expect(actions.first == .send(.heartbeat(nonce: 2)), "nonce 1 would ask the radio to broadcast its node info")
        #expect(timer(.heartbeat, in: actions)?.delay == .seconds(300))
        elapse(.seconds(300))
        let next = machine.handle(.timerFired(timer(.heartbeat, in: actions)!, now: now))
        #expect(next.first == .send(.heartbeat(nonce: 3)), "over BLE the firmware drops a write identical to the last")
    }

    @Test mutating func framesOfAnOldSessionAreIgnored() {
        becomeReady()
        _ = machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now))
        #expect(machine.handle(.received(.rebooted, attempt: 1, now: now)).isEmpty)
        #expect(machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now)).isEmpty)
    }

    // MARK: Losses, cooldown, backoff

    @Test mutating func lossAfterAStableLinkCoolsDownAndReconnects() {
        becomeReady()
        elapse(.seconds(31))
        let actions = machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now))
        #expect(actions.first == .lost(.transportClosed))
        #expect(!actions.contains(.closeSession(goodbye: false)), "the session already ended")
        #expect(machine.state == .cooldown(attempt: 1, retryIn: .seconds(3)))
        #expect(machine.failures == 0)
        let retry = timer(.retry, in: actions)!
        elapse(retry.delay)
        #expect(machine.handle(.timerFired(retry, now: now)).first == .connect(attempt: 2))
    }

    @Test mutating func rebootedRadioIsALossWithItsReason() {
        becomeReady()
        let actions = machine.handle(.received(.rebooted, attempt: 1, now: now))
        #expect(actions.first == .lost(.radioRebooted))
        #expect(actions.contains(.closeSession(goodbye: false)))
    }

    @Test mutating func closesTransportBeforeNextAttempt() {
        let ready = becomeReady()
        var actions = missProbe(after: ready)
        elapse(.seconds(8))
        actions = machine.handle(.timerFired(timer(.probeTimeout, in: actions)!, now: now))
        #expect(machine.sessionActive, "the session is still closing")
        let retry = timer(.retry, in: actions)!
        elapse(retry.delay)
        #expect(machine.handle(.timerFired(retry, now: now)).isEmpty, "no new attempt while the old transport is open")
        #expect(machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now)).first == .connect(attempt: 2))
    }

    @Test func backoffDoublesUntilCapWithJitterBounds() {
        let timing = LinkTiming()
        var generator = SeededGenerator(seed: 42)
        for failures in 1...10 {
            let nominal = min(Duration.seconds(2) * (1 << (failures - 1)), .seconds(15))
            for _ in 0..<50 {
                let delay = timing.backoff(failures: failures, using: &generator)
                #expect(delay >= nominal - .seconds(1) && delay <= nominal + .seconds(1), "failure \(failures): \(delay)")
            }
        }
        var noJitter = LinkTiming()
        noJitter.backoffJitter = .zero
        #expect((1...6).map { noJitter.backoff(failures: $0, using: &generator) } == [2, 4, 8, 15, 15, 15].map { .seconds($0) })
    }

    @Test mutating func sameSeedGivesTheSameDelays() {
        var other = Machine(timing: Self.timing, seed: 7)
        _ = machine.handle(.start)
        _ = other.handle(.start)
        _ = machine.handle(.sessionEnded(.unreachable, attempt: 1, now: now))
        _ = other.handle(.sessionEnded(.unreachable, attempt: 1, now: now))
        #expect(machine.state == other.state)
        #expect(machine.state.retryIn != nil)
    }

    @Test mutating func failedAttemptsGrowTheBackoffAndNeverGiveUp() {
        _ = machine.handle(.start)
        var delays: [Duration] = []
        for attempt in 1...12 {
            let actions = machine.handle(.sessionEnded(.unreachable, attempt: attempt, now: now))
            let retry = timer(.retry, in: actions)!
            delays.append(retry.delay)
            elapse(retry.delay)
            #expect(machine.handle(.timerFired(retry, now: now)).first == .connect(attempt: attempt + 1))
        }
        #expect(machine.failures == 12)
        #expect(delays[0] <= .seconds(3) && delays[3] >= .seconds(14) && delays.last! <= .seconds(16))
    }

    @Test mutating func stableLinkResetsTheBackoff() {
        _ = machine.handle(.start)
        for attempt in 1...3 {
            let retry = timer(.retry, in: machine.handle(.sessionEnded(.unreachable, attempt: attempt, now: now)))!
            _ = machine.handle(.timerFired(retry, now: now))
        }
        #expect(machine.failures == 3)
        becomeReady(attempt: 4)
        elapse(.seconds(30))
        _ = machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 4, now: now))
        #expect(machine.failures == 0)
        #expect(machine.state == .cooldown(attempt: 4, retryIn: .seconds(3)))
    }

    @Test mutating func flappingRadioBacksOffThenStormGuardHoldsAtMaximum() {
        var states: [String] = []
        var delays: [Duration] = []
        _ = machine.handle(.start)
        for attempt in 1...8 {
            becomeReady(attempt: attempt)
            elapse(.seconds(1))
            let actions = machine.handle(.sessionEnded(.lost(.transportClosed), attempt: attempt, now: now))
            states.append(machine.state.name)
            let retry = timer(.retry, in: actions)!
            delays.append(retry.delay)
            elapse(.milliseconds(100))
            _ = machine.handle(.timerFired(retry, now: now))
        }
        #expect(states.allSatisfy { $0 == "backoff" }, "a link that dies at once is never given a plain cooldown")
        #expect(delays.dropFirst(4).allSatisfy { $0 >= .seconds(14) }, "after stormLimit losses in the window: \(delays)")
    }

    @Test mutating func absentDeviceIsPolledWithoutGrowingTheBackoff() {
        _ = machine.handle(.start)
        for attempt in 1...5 {
            let actions = machine.handle(.sessionEnded(.deviceAbsent, attempt: attempt, now: now))
            #expect(machine.state == .backoff(attempt: attempt, retryIn: .seconds(5)))
            _ = machine.handle(.timerFired(timer(.retry, in: actions)!, now: now))
        }
        #expect(machine.failures == 0)
    }

    /// Should wait idle, with no timer and no failure counted, while a transport has no peer
    /// to open through, and open at once when one arrives.
    @Test mutating func aTransportWithoutItsPeerWaitsIdleAndOpensWhenOneArrives() {
        _ = machine.handle(.start)
        let waiting = machine.handle(.sessionEnded(.awaitingPeer, attempt: 1, now: now))
        #expect(waiting == [.awaitPeer], "no retry timer: the peer's arrival is the trigger")
        #expect(machine.state == .idle && machine.failures == 0)
        #expect(machine.handle(.start).first == .connect(attempt: 2), "a peer (or a reconnect) opens the next attempt at once")
        let ready = becomeReady(attempt: 2)
        #expect(machine.state == .ready(attempt: 2) && timer(.probe, in: ready) != nil)
        #expect(machine.handle(.peerAvailable).isEmpty, "a late report changes nothing once open")
    }

    /// Should wait for the peer after losing it, and reopen as soon as one is back instead of
    /// waiting out the cooldown.
    @Test mutating func aLostPeerIsAwaitedAndItsReturnCutsTheCooldownShort() {
        becomeReady()
        let lost = machine.handle(.sessionEnded(.lost(.browserClosed), attempt: 1, now: now))
        #expect(lost.contains(.lost(.browserClosed)) && lost.last == .awaitPeer)
        #expect([.cooldown, .backoff].contains(machine.state.published), "the pause after a loss, as for any link")
        #expect(machine.handle(.peerAvailable).first == .connect(attempt: 2), "no cooldown to wait out")
        #expect(machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 2, now: now)).contains(.awaitPeer) == false,
                "other losses wait their timers as before")
    }

    /// Should leave the idle wait for a shutdown or a hold as from any other state.
    @Test mutating func anIdleWaitEndsOnShutdownOrAHold() {
        _ = machine.handle(.start)
        _ = machine.handle(.sessionEnded(.awaitingPeer, attempt: 1, now: now))
        _ = machine.handle(.disconnectForRestart(settle: .seconds(3)))
        #expect(machine.state == .disconnectedForRestart(attempt: 1), "numbered after the last attempt, so a reconnect opens a new one")
        #expect(machine.handle(.peerAvailable).isEmpty, "a held link stays held")
        #expect(machine.handle(.shutdown(reason: .shutdown)).isEmpty, "nothing was up, nothing is lost")
        #expect(machine.state == .stopped && machine.isFinished)
    }

    // MARK: Commands

    @Test mutating func reconnectOfAReadyLinkReportsManualLossAndCoolsDown() {
        becomeReady()
        let actions = machine.handle(.reconnect)
        #expect(actions.prefix(2) == [.lost(.manual), .closeSession(goodbye: true)])
        #expect(machine.state == .cooldown(attempt: 1, retryIn: .seconds(3)))
    }

    @Test mutating func reconnectDuringHandshakeClosesAndCoolsDownWithoutALoss() {
        _ = machine.handle(.start)
        _ = machine.handle(.transportOpened(attempt: 1))
        let actions = machine.handle(.reconnect)
        #expect(actions.first == .closeSession(goodbye: true))
        #expect(!actions.contains { if case .lost = $0 { true } else { false } })
        #expect(machine.state == .cooldown(attempt: 1, retryIn: .seconds(3)))
        let retry = timer(.retry, in: actions)!
        #expect(machine.handle(.timerFired(retry, now: now)).isEmpty, "waits for the session to close")
        #expect(machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now)).first == .connect(attempt: 2))
    }

    @Test mutating func degradedLinkWhoseTransportClosesIsLostWithThatReason() {
        _ = missProbe(after: becomeReady())
        let actions = machine.handle(.sessionEnded(.lost(.writeFailed), attempt: 1, now: now))
        #expect(actions.first == .lost(.writeFailed))
    }

    @Test mutating func reconnectDuringBackoffConnectsOnceTheSessionClosed() {
        _ = machine.handle(.start)
        _ = machine.handle(.sessionEnded(.unreachable, attempt: 1, now: now))
        let actions = machine.handle(.reconnect)
        #expect(actions.first == .connect(attempt: 2))
        #expect(timer(.initTimeout, in: actions) != nil)
    }

    @Test mutating func disconnectForRestartHoldsUntilReconnectAfterSettle() {
        becomeReady()
        let actions = machine.handle(.disconnectForRestart(settle: .seconds(3)))
        #expect(actions.prefix(2) == [.lost(.manual), .closeSession(goodbye: true)])
        #expect(machine.state == .disconnectedForRestart(attempt: 1))
        #expect(machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now)).isEmpty, "held closed")
        #expect(machine.handle(.reconnect).isEmpty, "not before settle")
        elapse(.seconds(3))
        #expect(machine.handle(.timerFired(timer(.settle, in: actions)!, now: now)).first == .connect(attempt: 2))
    }

    @Test mutating func disconnectForRestartIgnoresTheOldRetryTimer() {
        _ = machine.handle(.start)
        let failed = machine.handle(.sessionEnded(.unreachable, attempt: 1, now: now))
        _ = machine.handle(.disconnectForRestart(settle: .zero))
        #expect(machine.handle(.timerFired(timer(.retry, in: failed)!, now: now)).isEmpty)
        #expect(machine.state == .disconnectedForRestart(attempt: 1))
    }

    @Test mutating func shutdownFromReadyReportsTheLossClosesCleanlyAndEndsForGood() {
        let ready = becomeReady()
        #expect(machine.handle(.shutdown(reason: .shutdown)) == [.lost(.shutdown), .closeSession(goodbye: true)])
        #expect(machine.state == .stopped)
        #expect(!machine.isFinished, "finished once the session closed")
        _ = machine.handle(.sessionEnded(.lost(.transportClosed), attempt: 1, now: now))
        #expect(machine.isFinished)
        #expect(machine.handle(.timerFired(timer(.probe, in: ready)!, now: now)).isEmpty)
        #expect(machine.handle(.reconnect).isEmpty)
        #expect(machine.handle(.shutdown(reason: .shutdown)).isEmpty)
    }

    @Test func publishedNamesMatchTheDesign() {
        let states: [LinkState] = [
            .idle, .connecting(attempt: 1), .configuring(attempt: 1, nonce: 1), .ready(attempt: 1), .degraded(attempt: 1, strikes: 1),
            .cooldown(attempt: 1, retryIn: .seconds(1)), .backoff(attempt: 1, retryIn: .seconds(1)), .disconnectedForRestart(attempt: 1), .stopped,
        ]
        #expect(states.map(\.name) == ["idle", "connecting", "configuring", "ready", "degraded", "cooldown", "backoff", "disconnectedForRestart", "stopped"])
    }
}

