import NIOCore
import Synchronization

/// The supervisor's inputs, from every child task and caller, taken in order by the one
/// task that runs the link. It replaces an `AsyncStream`, whose storage is generic code in
/// the concurrency runtime that no caller can specialize: about 7,000 instructions per item
/// (callgrind), once for every frame a radio sends. Here an item already queued is taken
/// without suspending, and the queue's code is specialized with the link.
///
/// A producer may also stand in for an idle consumer (``claimIfIdle()``): a frame read on
/// an event loop is then handled right there, with no task woken at all.
final class InputQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer = CircularBuffer<Element>()
        /// The consumer, suspended on an empty queue.
        var waiter: UnsafeContinuation<Element?, Never>?
        var cancelled = false
        /// A producer stands in for the parked consumer: yields queue without waking it.
        var claimed = false
    }

    private enum Taken {
        case element(Element)
        case end
        case wait
    }

    private let state = Mutex(State())

    init() {}

    /// Queues `element`, or hands it straight to the waiting consumer. Dropped once the
    /// consumer was cancelled (nothing will read it).
    func yield(_ element: Element) {
        let waiter = state.withLock { state -> UnsafeContinuation<Element?, Never>? in
            guard !state.cancelled else { return nil }
            if !state.claimed, let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.buffer.append(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    /// The next element in order; nil once the consuming task is cancelled. One consumer only.
    func next() async -> Element? {
        switch take() {
        case .element(let element): return element
        case .end: return nil
        case .wait: break
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Element?, Never>) in
                let taken = state.withLock { state -> Taken in
                    let taken = Self.take(from: &state)
                    if case .wait = taken { state.waiter = continuation }
                    return taken
                }
                switch taken {
                case .element(let element): continuation.resume(returning: element)
                case .end: continuation.resume(returning: nil)
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> UnsafeContinuation<Element?, Never>? in
                state.cancelled = true
                // A claim in progress keeps the consumer parked: it ends on the release.
                guard !state.claimed else { return nil }
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Takes the consumer's place if it is parked with nothing queued, so the caller can do
    /// what the consumer would do with its item, on the caller's thread. True if claimed:
    /// the consumer then stays parked, whatever is yielded, until ``release()``.
    func claimIfIdle() -> Bool {
        state.withLock { state in
            guard !state.cancelled, !state.claimed, state.waiter != nil, state.buffer.isEmpty else { return false }
            state.claimed = true
            return true
        }
    }

    /// Ends a claim: wakes the consumer for what was yielded meanwhile (or for its end, if it
    /// was cancelled meanwhile).
    func release() {
        let wake = state.withLock { state -> (UnsafeContinuation<Element?, Never>, Element?)? in
            precondition(state.claimed, "release() without a claim")
            state.claimed = false
            guard let waiter = state.waiter else { return nil }
            if state.cancelled {
                state.waiter = nil
                return (waiter, nil)
            }
            guard let element = state.buffer.popFirst() else { return nil }
            state.waiter = nil
            return (waiter, element)
        }
        if let (waiter, element) = wake { waiter.resume(returning: element) }
    }

    private func take() -> Taken {
        if Task.isCancelled {
            state.withLock { $0.cancelled = true }
            return .end
        }
        return state.withLock { Self.take(from: &$0) }
    }

    private static func take(from state: inout State) -> Taken {
        if state.cancelled { return .end }
        if let element = state.buffer.popFirst() { return .element(element) }
        return .wait
    }
}
