import MeshtasticProtocol
import NIOCore
import Synchronization

/// A packet waiting to be written to the radio, with the id of the command that asked for it.
public struct OutgoingPacket: Sendable, Equatable {
    public var packet: Meshtastic_MeshPacket
    public var requestID: String?

    public init(packet: Meshtastic_MeshPacket, requestID: String?) {
        self.packet = packet
        self.requestID = requestID
    }
}

/// A slot's bounded queue of packets for the radio. It outlives connections, and the links
/// of a slot share it across reloads: what was not written before a link dropped (or was
/// replaced) is written by the next one.
///
/// One consumer at a time (the running link's writer); any number of producers. It calls
/// nothing while holding its lock.
public final class Outbox: Sendable {
    private struct State {
        var items = CircularBuffer<OutgoingPacket>()
        var waiter: CheckedContinuation<OutgoingPacket?, Never>?
        /// The writer took a packet and has not yet written it or put it back.
        var held = false
        /// Tasks waiting for the outbox to be empty, by a number of their own.
        var emptyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0

        /// Nothing waits and the writer holds nothing.
        var isDrained: Bool { items.isEmpty && !held }

        /// The waiters to resume if the outbox is now drained.
        mutating func takeEmptyWaiters() -> [CheckedContinuation<Void, Never>] {
            guard isDrained, !emptyWaiters.isEmpty else { return [] }
            defer { emptyWaiters.removeAll() }
            return Array(emptyWaiters.values)
        }
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// Packets waiting now (not counting one the writer holds).
    public var count: Int { state.withLock { $0.items.count } }

    /// Whether no packet waits and the writer holds none: what ``waitUntilEmpty()`` waits for.
    var isDrained: Bool { state.withLock { $0.isDrained } }

    /// Appends a packet; false if the outbox is full.
    public func enqueue(_ item: OutgoingPacket) -> Bool {
        let outcome: (accepted: Bool, waiter: CheckedContinuation<OutgoingPacket?, Never>?) = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                state.held = true
                return (true, waiter)
            }
            guard state.items.count < capacity else { return (false, nil) }
            state.items.append(item)
            return (true, nil)
        }
        outcome.waiter?.resume(returning: item)
        return outcome.accepted
    }

    /// Takes the packet with `packetID` out if it is still waiting; false if it is not (the
    /// writer holds it, or it was written).
    public func remove(packetID: UInt32) -> Bool {
        let (removed, emptied) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
            guard let index = state.items.firstIndex(where: { $0.packet.id == packetID }) else { return (false, []) }
            state.items.remove(at: index)
            return (true, state.takeEmptyWaiters())
        }
        for waiter in emptied { waiter.resume() }
        return removed
    }

    /// Returns once no packet waits and the writer holds none (at once if so), or when the
    /// task is cancelled: everything accepted was written or taken out.
    public func waitUntilEmpty() async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state in
                    if state.isDrained || Task.isCancelled { return true }
                    state.emptyWaiters[id] = continuation
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.emptyWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Puts back the packet the writer took (too soon, gate closed, or its write failed),
    /// ahead of everything else.
    func requeueFront(_ item: OutgoingPacket) {
        state.withLock { state in
            state.items.prepend(item)
            state.held = false
        }
    }

    /// The packet the writer took is written.
    func written() {
        let emptied = state.withLock { state in
            state.held = false
            return state.takeEmptyWaiters()
        }
        for waiter in emptied { waiter.resume() }
    }

    /// The next packet, waiting for one if needed; nil if the calling task is cancelled.
    func next() async -> OutgoingPacket? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<OutgoingPacket?, Never>) in
                let ready: OutgoingPacket?? = state.withLock { state in
                    if Task.isCancelled { return .some(nil) }
                    if let first = state.items.popFirst() {
                        state.held = true
                        return .some(first)
                    }
                    precondition(state.waiter == nil, "Outbox has one consumer at a time")
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
