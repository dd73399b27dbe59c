import NIOCore
import Synchronization

/// The supervisor's inputs, from every child task and caller, taken in order by the one
/// task that runs the link. It replaces an `AsyncStream`, whose storage is generic code in
/// the concurrency runtime that no caller can specialize: about 7,000 instructions per item
/// (callgrind), once for every frame a radio sends. Here an item already queued is taken
/// without suspending, and the queue's code is specialized with the link.
final class InputQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer = CircularBuffer<Element>()
        /// The consumer, suspended on an empty queue.
        var waiter: UnsafeContinuation<Element?, Never>?
        var cancelled = false
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
            if let waiter = state.waiter {
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
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
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
