import RadioLink
import Testing

@Suite struct LinkStateMachineTests {
    var machine = LinkStateMachine(cooldown: .seconds(3))

    @Test mutating func startOpensTheFirstAttempt() {
        #expect(machine.start() == .open(attempt: 1))
        #expect(machine.state == .connecting(attempt: 1))
        #expect(machine.start() == .none, "a second start is ignored")
    }

    @Test mutating func readyOnlyOnTheMatchingNonce() {
        _ = machine.start()
        #expect(machine.opened(nonce: 77) == .requestConfig(nonce: 77))
        #expect(machine.configComplete(id: 76) == .none, "a stale config_complete_id is ignored")
        #expect(machine.state == .configuring(attempt: 1, nonce: 77))
        #expect(machine.configComplete(id: 77) == .becomeReady(attempt: 1))
        #expect(machine.state == .ready(attempt: 1))
    }

    @Test mutating func lossOfAReadyLinkIsReportedAndRetriedAfterCooldown() {
        _ = machine.start()
        _ = machine.opened(nonce: 1)
        _ = machine.configComplete(id: 1)
        #expect(machine.failed(.transportClosed) == .closeAndWait(reason: .transportClosed, wasReady: true, cooldown: .seconds(3)))
        #expect(machine.state == .cooldown(attempt: 1))
        #expect(machine.cooldownElapsed() == .open(attempt: 2))
    }

    @Test mutating func failureBeforeReadyIsNotAReportedLoss() {
        _ = machine.start()
        _ = machine.opened(nonce: 1)
        #expect(machine.failed(.initTimeout) == .closeAndWait(reason: .initTimeout, wasReady: false, cooldown: .seconds(3)))
    }

    @Test mutating func stopFromReadyReportsTheLossAndEndsForGood() {
        _ = machine.start()
        _ = machine.opened(nonce: 1)
        _ = machine.configComplete(id: 1)
        #expect(machine.stop() == .closeAndStop(wasReady: true))
        #expect(machine.state == .stopped)
        #expect(machine.cooldownElapsed() == .none)
        #expect(machine.failed(.transportClosed) == .none)
        #expect(machine.stop() == .none)
    }
}
