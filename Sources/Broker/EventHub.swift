import NIOCore
import SlotCore
import Synchronization

/// Every slot's events for the subscribers inside the process (HTTP streams), each with a
/// bounded queue of its own: a subscriber that falls behind its limits is marked overflowed
/// and gets nothing more, so it never holds unbounded memory and never delays the radio or
/// the other subscribers. Subscriptions filter by topic prefix, as ZeroMQ's do.
///
/// ``publish(_:)`` is called by each slot in `seq` order; it only appends to queues and
/// resumes waiters, after its lock is released.
public final class EventHub: Sendable {
    /// How much one subscriber may have waiting before it is cut off (design.md §8).
    public struct Limits: Sendable {
        public var events: Int
        public var bytes: Int

        public init(events: Int = 1000, bytes: Int = 1 << 20) {
            self.events = events
            self.bytes = bytes
        }
    }

    private struct Subscriber {
        var prefixes: [[UInt8]]
        let limits: Limits
        var queue = CircularBuffer<SlotEvent>()
        var bytes = 0
        var overflowed = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Asked to wake its waiter for something other than an event (see ``Subscription/wake()``).
        var woken = false
        /// Waiting for this subscriber to overflow (to close its connection at once).
        var overflowWaiter: CheckedContinuation<Void, Never>?
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())
    /// Subscribers now, read without the lock so that publishing with none costs one load.
    private let active = Atomic(0)

    public init() {}

    /// Hands `event` to every subscriber whose prefixes match its topic frame.
    func publish(_ event: SlotEvent) {
        guard active.load(ordering: .relaxed) > 0 else { return }
        let size = event.topic.count + event.envelope.count + (event.raw?.count ?? 0)
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { state in
            var woken: [CheckedContinuation<Void, Never>] = []
            // Changed in place, through the values' indices: no copy of the table per event.
            var index = state.subscribers.values.startIndex
            while index != state.subscribers.values.endIndex {
                defer { index = state.subscribers.values.index(after: index) }
                guard !state.subscribers.values[index].overflowed, Self.matches(event.topic, state.subscribers.values[index].prefixes) else { continue }
                Self.offer(event, size: size, to: &state.subscribers.values[index], waking: &woken)
            }
            return woken
        }
        for waiter in woken { waiter.resume() }
    }

    private static func offer(_ event: SlotEvent, size: Int, to subscriber: inout Subscriber, waking woken: inout [CheckedContinuation<Void, Never>]) {
        if subscriber.queue.count >= subscriber.limits.events || subscriber.bytes + size > subscriber.limits.bytes {
            subscriber.overflowed = true
            subscriber.queue.removeAll()
            subscriber.bytes = 0
            if let overflowWaiter = subscriber.overflowWaiter {
                woken.append(overflowWaiter)
                subscriber.overflowWaiter = nil
            }
        } else {
            subscriber.queue.append(event)
            subscriber.bytes += size
        }
        if let waiter = subscriber.waiter {
            woken.append(waiter)
            subscriber.waiter = nil
        }
    }

    /// A new subscriber to topics starting with any of `prefixes` (`""`: everything; none:
    /// nothing until ``Subscription/setPrefixes(_:)``).
    public func subscribe(prefixes: [String], limits: Limits = Limits()) -> Subscription {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.subscribers[state.nextID] = Subscriber(prefixes: prefixes.map { Array($0.utf8) }, limits: limits)
            return state.nextID
        }
        active.add(1, ordering: .relaxed)
        return Subscription(hub: self, id: id)
    }

    /// Whether a topic frame starts with one of `prefixes` (as ZeroMQ's: `""` matches every
    /// topic, no prefix none).
    public static func matches(_ topic: [UInt8], _ prefixes: [[UInt8]]) -> Bool {
        prefixes.contains { topic.starts(with: $0) }
    }

    /// One subscriber's side: take what waits, wait for more, leave.
    public final class Subscription: Sendable {
        /// What a subscriber gets next.
        public enum Item: Sendable {
            case event(SlotEvent)
            /// It fell behind its limits; nothing more comes.
            case overflowed
        }

        private let hub: EventHub
        private let id: Int
        private let cancelled = Atomic(false)

        fileprivate init(hub: EventHub, id: Int) {
            self.hub = hub
            self.id = id
        }

        deinit { cancel() }

        /// The next item if one waits (without waiting); nil if none does.
        public func take() -> Item? {
            hub.state.withLock { state in
                guard var subscriber = state.subscribers[id] else { return nil }
                if subscriber.overflowed { return .overflowed }
                guard let event = subscriber.queue.popFirst() else { return nil }
                subscriber.bytes -= event.topic.count + event.envelope.count + (event.raw?.count ?? 0)
                state.subscribers[id] = subscriber
                return .event(event)
            }
        }

        /// Returns once an item waits, or the task is cancelled.
        public func waitForItem() async {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = hub.state.withLock { state in
                        guard let subscriber = state.subscribers[id], !Task.isCancelled else { return true }
                        if subscriber.overflowed || !subscriber.queue.isEmpty || subscriber.woken {
                            state.subscribers[id]?.woken = false
                            return true
                        }
                        state.subscribers[id]?.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                let waiter = hub.state.withLock { state in
                    defer { state.subscribers[id]?.waiter = nil }
                    return state.subscribers[id]?.waiter
                }
                waiter?.resume()
            }
        }

        /// Returns once the subscriber overflowed (or left, or the task is cancelled).
        public func waitForOverflow() async {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = hub.state.withLock { state in
                        guard let subscriber = state.subscribers[id], !Task.isCancelled, !subscriber.overflowed else { return true }
                        state.subscribers[id]?.overflowWaiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                let waiter = hub.state.withLock { state in
                    defer { state.subscribers[id]?.overflowWaiter = nil }
                    return state.subscribers[id]?.overflowWaiter
                }
                waiter?.resume()
            }
        }

        /// Ends a wait (or the next one) early: its owner has other work for it.
        public func wake() {
            let waiter = hub.state.withLock { state in
                state.subscribers[id]?.woken = true
                defer { state.subscribers[id]?.waiter = nil }
                return state.subscribers[id]?.waiter
            }
            waiter?.resume()
        }

        /// The prefixes it receives now.
        public var prefixes: [String] {
            hub.state.withLock { state in (state.subscribers[id]?.prefixes ?? []).map { String(decoding: $0, as: UTF8.self) } }
        }

        /// Replaces the prefixes it receives (a WebSocket's subscribe and unsubscribe).
        public func setPrefixes(_ prefixes: [String]) {
            hub.state.withLock { $0.subscribers[id]?.prefixes = prefixes.map { Array($0.utf8) } }
        }

        /// Leaves the hub; what waited is dropped. Calling it again does nothing.
        public func cancel() {
            guard !cancelled.exchange(true, ordering: .relaxed) else { return }
            let removed = hub.state.withLock { $0.subscribers.removeValue(forKey: id) }
            hub.active.subtract(1, ordering: .relaxed)
            removed?.waiter?.resume()
            removed?.overflowWaiter?.resume()
        }
    }
}
