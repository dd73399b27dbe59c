import Synchronization

/// A clock that moves only when a test says so. Sleepers wake in deadline order when
/// ``advance(by:)`` passes their deadline; ``nextSleep()`` waits until something sleeps,
/// so a test waits on a real event instead of yielding in loops.
public final class MockClock: Clock, Sendable {
    public struct Instant: InstantProtocol, CustomStringConvertible {
        public var offset: Duration

        public init(offset: Duration) { self.offset = offset }
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public var description: String { "t+\(offset)" }
        /// `milliseconds` after the clock's start.
        public static func ms(_ milliseconds: Int64) -> Instant { Instant(offset: .milliseconds(milliseconds)) }
    }

    private struct Sleeper {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Int: Sleeper] = [:]
        var nextID = 0
        var sleepWaiters: [CheckedContinuation<Instant, Never>] = []
        var deadlineWaiters: [(deadline: Instant, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    public init() {}

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .zero }

    /// Deadlines of everything sleeping now, soonest first.
    public var pendingDeadlines: [Instant] { state.withLock { $0.sleepers.values.map(\.deadline).sorted() } }

    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: (Result<Void, any Error>?, [CheckedContinuation<Instant, Never>], [CheckedContinuation<Void, Never>]) = state.withLock { state in
                    if Task.isCancelled { return (.failure(CancellationError()), [], []) }
                    if deadline <= state.now { return (.success(()), [], []) }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    let matching = state.deadlineWaiters.filter { $0.deadline == deadline }
                    state.deadlineWaiters.removeAll { $0.deadline == deadline }
                    defer { state.sleepWaiters = [] }
                    return (nil, state.sleepWaiters, matching.map(\.continuation))
                }
                for waiter in outcome.1 { waiter.resume(returning: deadline) }
                for waiter in outcome.2 { waiter.resume() }
                if let result = outcome.0 { continuation.resume(with: result) }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Waits until some task sleeps (returns at once if one already does); returns its deadline.
    @discardableResult
    public func nextSleep() async -> Instant {
        await withCheckedContinuation { continuation in
            let pending: Instant? = state.withLock { state in
                if let soonest = state.sleepers.values.map(\.deadline).min() { return soonest }
                state.sleepWaiters.append(continuation)
                return nil
            }
            if let pending { continuation.resume(returning: pending) }
        }
    }

    /// Waits until some task sleeps until exactly `deadline` (returns at once if one does).
    public func sleeperScheduled(at deadline: Instant) async {
        await withCheckedContinuation { continuation in
            let present = state.withLock { state in
                if state.sleepers.values.contains(where: { $0.deadline == deadline }) { return true }
                state.deadlineWaiters.append((deadline, continuation))
                return false
            }
            if present { continuation.resume() }
        }
    }

    /// Waits for a sleeper at `now + duration`, then moves time there.
    public func advance(toSleeperIn duration: Duration) async {
        await sleeperScheduled(at: now.advanced(by: duration))
        advance(by: duration)
    }

    /// Moves time forward and wakes every sleeper whose deadline is reached.
    public func advance(by duration: Duration) {
        let woken = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for key in due.keys { state.sleepers[key] = nil }
            return due.values.sorted { $0.deadline < $1.deadline }.map(\.continuation)
        }
        for continuation in woken { continuation.resume() }
    }
}
