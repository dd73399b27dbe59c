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
        /// Tasks waiting for the outbox to be empty, by a number of their own.
        var emptyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0

        /// The waiters to resume if the outbox is now empty.
        mutating func takeEmptyWaiters() -> [CheckedContinuation<Void, Never>] {
            guard items.isEmpty, !emptyWaiters.isEmpty else { return [] }
            defer { emptyWaiters.removeAll() }
            return Array(emptyWaiters.values)
        }
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// Packets waiting now.
    public var count: Int { state.withLock { $0.items.count } }

    /// Appends a packet; false if the outbox is full.
    public func enqueue(_ item: OutgoingPacket) -> Bool {
        let outcome: (accepted: Bool, waiter: CheckedContinuation<OutgoingPacket?, Never>?) = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
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

    /// Returns once the outbox is empty (at once if it is), or when the task is cancelled.
    public func waitUntilEmpty() async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state in
                    if state.items.isEmpty || Task.isCancelled { return true }
                    state.emptyWaiters[id] = continuation
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.emptyWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Puts back a packet whose write failed, ahead of everything else.
    func requeueFront(_ item: OutgoingPacket) {
        state.withLock { $0.items.prepend(item) }
    }

    /// The next packet, waiting for one if needed; nil if the calling task is cancelled.
    func next() async -> OutgoingPacket? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<OutgoingPacket?, Never>) in
                let (ready, emptied): (OutgoingPacket??, [CheckedContinuation<Void, Never>]) = state.withLock { state in
                    if Task.isCancelled { return (.some(nil), []) }
                    if let first = state.items.popFirst() { return (.some(first), state.takeEmptyWaiters()) }
                    precondition(state.waiter == nil, "Outbox has one consumer at a time")
                    state.waiter = continuation
                    return (nil, [])
                }
                for waiter in emptied { waiter.resume() }
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
