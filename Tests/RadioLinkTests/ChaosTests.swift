import Foundation
import Logging
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Synchronization
import Testing

/// Seeded random faults against several slots at once, over real sockets and real time.
///
/// After every fault the slot must be ready again (each wait bounded, naming the fault), and
/// at the end every supervisor must still be running. `MESHBUS_CHAOS_FAULTS` (default 300)
/// and `MESHBUS_CHAOS_SEED` (default ``defaultSeed``, so CI repeats one run; always printed)
/// steer it; `scripts/chaos` runs a long version with a random seed.
@Suite(.timeLimit(.minutes(60))) struct ChaosTests {
    enum Fault: CaseIterable {
        case drop, stall, reboot, offline, garbage, slowAnswers, neverFinishHandshake, evict, reconnect, disconnectForRestart

        var losesTheLink: Bool {
            switch self {
            case .garbage, .slowAnswers: false
            default: true
            }
        }
    }

    struct Slot: Sendable {
        let simulator: RadioSimulator
        let link: RadioLink<ContinuousClock>
        let log: EventLog
        let events: AsyncStream<RadioLinkEvent>
        /// Cleared when the supervisor's `run()` returns.
        let alive: Flag
    }

    final class Worst: Sendable {
        private let state = Mutex(Duration.zero)
        var value: Duration { state.withLock { $0 } }
        func record(_ duration: Duration) { state.withLock { $0 = max($0, duration) } }
    }

    final class Notes: Sendable {
        private let state = Mutex<[String]>([])
        var all: [String] { state.withLock { $0 } }
        func record(_ note: String) { state.withLock { $0.append(note) } }
    }

    final class Flag: Sendable {
        private let value = Mutex(true)
        var isSet: Bool { value.withLock { $0 } }
        func clear() { value.withLock { $0 = false } }
    }

    static let slotCount = 4
    static let timing = LinkTiming.fast
    /// The seed a run without `MESHBUS_CHAOS_SEED` uses.
    static let defaultSeed: UInt64 = 20_261_129

    @Test func slotsAlwaysComeBackFromRandomFaults() async throws {
        let environment = ProcessInfo.processInfo.environment
        let faultCount = environment["MESHBUS_CHAOS_FAULTS"].flatMap(Int.init) ?? 300
        let seed = environment["MESHBUS_CHAOS_SEED"].flatMap(UInt64.init) ?? Self.defaultSeed
        print("chaos: \(faultCount) faults over \(Self.slotCount) slots, seed \(seed) (MESHBUS_CHAOS_SEED=\(seed) repeats it)")

        var slots: [Slot] = []
        for index in 0..<Self.slotCount {
            // Every slot's virtual mesh has the same seed: same node numbers, same packet ids.
            let simulator = try await RadioSimulator.start(.quiet)
            let (link, events) = RadioLink.make(
                slot: "chaos\(index)", transport: TCPRadioTransport(host: "127.0.0.1", port: simulator.port, connectTimeout: Self.timing.connectTimeout),
                timing: Self.timing, clock: ContinuousClock(), seed: seed &+ UInt64(index), logger: Logger(label: "chaos", factory: { _ in SwiftLogNoOpLogHandler() })
            )
            slots.append(Slot(simulator: simulator, link: link, log: EventLog(), events: events, alive: Flag()))
        }
        let slotList = slots
        let worstRecovery = Worst()
        let unexpectedLosses = Notes()

        try await withThrowingTaskGroup(of: Void.self) { group in
            for slot in slotList {
                group.addTask { await slot.simulator.run() }
                group.addTask {
                    await slot.link.run()
                    slot.alive.clear()
                }
                group.addTask { for await event in slot.events { slot.log.append(event) } }
            }
            try await withThrowingTaskGroup(of: Void.self) { drivers in
                for (index, slot) in slotList.enumerated() {
                    let share = faultCount / Self.slotCount + (index < faultCount % Self.slotCount ? 1 : 0)
                    drivers.addTask {
                        var generator = SeededGenerator(seed: seed &+ 1000 &+ UInt64(index))
                        try await slot.log.waitForEstablished(1)
                        for _ in 1...max(share, 1) {
                            let fault = Fault.allCases.randomElement(using: &generator)!
                            worstRecovery.record(try await Self.inject(fault, into: slot, generator: &generator, ridden: unexpectedLosses))
                        }
                    }
                }
                try await drivers.waitForAll()
            }
            for (index, slot) in slotList.enumerated() {
                #expect(slot.alive.isSet, "supervisor \(index) is alive")
                #expect(slot.link.state.isUp, "slot \(index) ends up: \(slot.link.state)")
                Self.checkInvariants(slot.log.events, slot: index)
                slot.link.shutdown()
                try await slot.log.wait("slot \(index) stopped") { $0.stateNames.last == "stopped" }
            }
            group.cancelAll()
        }
        let losses = slotList.map { $0.log.events.losses.count }.reduce(0, +)
        print("chaos: \(faultCount) faults, \(losses) link losses, all slots ready again; worst recovery \(worstRecovery.value)")
        let unexpected = unexpectedLosses.all
        print("chaos: \(unexpected.count) of the faults meant to be ridden out cost the link\(unexpected.isEmpty ? "" : ": " + unexpected.joined(separator: "; "))")
    }

    /// Applies one fault, ends it, and returns how long the slot took to be ready again
    /// once the radio was healthy (zero for faults the link rides out).
    static func inject(_ fault: Fault, into slot: Slot, generator: inout SeededGenerator, ridden: Notes) async throws -> Duration {
        let simulator = slot.simulator
        let lossesBefore = slot.log.events.losses.count
        let establishedBefore = slot.log.events.established.count
        switch fault {
        case .drop: simulator.dropClient()
        case .stall: simulator.faults.stalled = true
        case .reboot: simulator.reboot()
        case .offline: simulator.goOffline(for: .milliseconds(Int64.random(in: 20...300, using: &generator)))
        case .evict:
            let intruder = try await TCPRadioTransport(host: "127.0.0.1", port: simulator.port).open()
            try await intruder.channel.close()
        case .neverFinishHandshake:
            simulator.faults.withholdConfigComplete = true
            simulator.dropClient()
        case .reconnect: slot.link.reconnect()
        case .disconnectForRestart: slot.link.disconnectForRestart(settle: .milliseconds(Int64.random(in: 0...50, using: &generator)))
        case .garbage:
            simulator.sendGarbage((0..<Int.random(in: 1...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        case .slowAnswers:
            simulator.faults.answerDelay = .milliseconds(Int64.random(in: 10...(timing.probeTimeout.components.attoseconds / 2_000_000_000_000_000), using: &generator))
        }
        if fault.losesTheLink {
            try await slot.log.wait("\(fault): the link lost") { $0.losses.count > lossesBefore }
            if fault == .neverFinishHandshake {
                // Let at least one handshake time out before the radio finishes them again.
                try await slot.log.wait("\(fault): a handshake timed out") {
                    $0.after(established: establishedBefore).stateNames.filter { $0 == "backoff" }.count >= 1
                }
            }
        } else {
            let answers = slot.log.events.filter(\.isQueueStatus).count
            try await slot.log.wait("\(fault): three more probe answers") { $0.filter(\.isQueueStatus).count >= answers + 3 }
        }
        simulator.faults = SimulatorFaults()
        if fault == .disconnectForRestart { slot.link.reconnect() }
        let healthy = ContinuousClock.now
        if fault.losesTheLink {
            try await slot.log.wait("\(fault): ready again") { $0.established.count > establishedBefore }
        } else if slot.log.events.losses.count > lossesBefore {
            // Noise or slow answers are meant to be ridden out, but with 100 ms probes on a
            // loaded machine a late answer can be a real miss. Then the slot must recover
            // like after any loss; the run counts and prints these.
            let reasons = slot.log.events.losses.dropFirst(lossesBefore).map(\.rawValue)
            ridden.record("\(fault): \(reasons.joined(separator: ","))")
            try await slot.log.wait("\(fault): ready again") { $0.established.count > establishedBefore }
        }
        return healthy.duration(to: .now)
    }

    /// What the event log must show whatever happened: packets republished only while the
    /// link was up, `established` only on entering ready, `lost` only from up, and the two
    /// alternating.
    static func checkInvariants(_ events: [RadioLinkEvent], slot: Int) {
        var state: LinkState = .idle
        var up = false
        for event in events {
            switch event {
            case .stateChanged(let current, _): state = current
            case .fromRadio(let message, _, let backlog):
                if case .packet = message.payloadVariant, !backlog {
                    #expect(state.isUp, "slot \(slot): a packet republished while \(state.name)")
                }
            case .established:
                #expect(state.isReady && !up, "slot \(slot): established while \(state.name)")
                up = true
            case .lost:
                #expect(up, "slot \(slot): lost without established")
                up = false
            default: break
            }
        }
    }
}
