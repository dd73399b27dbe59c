import Synchronization

/// Opens the outbox to the writer of one session while the link is ready, and closes it
/// while the link is anything else. A writer waits here instead of polling.
final class SendGate: Sendable {
    private struct State {
        var openAttempt: Int?
        var waiters: [Int: (attempt: Int, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    /// Opens the gate for the session of `attempt`, or closes it (nil).
    func set(openFor attempt: Int?) {
        let woken = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.openAttempt = attempt
            guard let attempt else { return [] }
            let matching = state.waiters.filter { $0.value.attempt == attempt }
            for key in matching.keys { state.waiters[key] = nil }
            return matching.values.map(\.continuation)
        }
        for continuation in woken { continuation.resume(returning: true) }
    }

    func isOpen(for attempt: Int) -> Bool {
        state.withLock { $0.openAttempt == attempt }
    }

    /// Waits until the gate is open for `attempt`. False if the calling task is cancelled.
    func waitUntilOpen(for attempt: Int) async -> Bool {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let immediate: Bool? = state.withLock { state in
                    if Task.isCancelled { return false }
                    if state.openAttempt == attempt { return true }
                    state.waiters[id] = (attempt, continuation)
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(returning: false)
        }
    }
}
