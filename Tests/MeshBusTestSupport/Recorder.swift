import Synchronization

/// Everything an async stream yielded, in order, with a bounded wait for a condition on it:
/// tests await what a client reports, never a fixed sleep.
public final class Recorder<Element: Sendable>: Sendable {
    /// A wait that ran out, naming what it waited for and what had come by then.
    public struct TimedOut: Error, CustomStringConvertible {
        public let description: String
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

    public init() {}

    public var elements: [Element] { state.withLock { $0.elements } }

    public func append(_ element: Element) {
        let ready = state.withLock { state in
            state.elements.append(element)
            let elements = state.elements
            let ready = state.waiters.filter { $0.predicate(elements) }
            state.waiters.removeAll { $0.predicate(elements) }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns the elements once `predicate` holds for them; throws ``TimedOut`` naming
    /// `what` after `timeout`.
    @discardableResult
    public func wait(
        timeout: Duration = .seconds(30),
        _ what: String,
        until predicate: @escaping @Sendable ([Element]) -> Bool
    ) async throws -> [Element] {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.wait(until: predicate) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw TimedOut(description: "timed out after \(timeout) waiting for \(what); got \(self.elements.count) elements, the last: \(self.elements.suffix(5))")
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

