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

/// A slot's bounded queue of packets for the radio. It outlives connections: what was not
/// written before a link dropped is written after it comes back.
///
/// One consumer at a time (the link's writer); any number of producers.
final class Outbox: Sendable {
    private struct State {
        var items = CircularBuffer<OutgoingPacket>()
        var waiter: CheckedContinuation<OutgoingPacket?, Never>?
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { state.withLock { $0.items.count } }

    /// Appends a packet; false if the outbox is full.
    func enqueue(_ item: OutgoingPacket) -> Bool {
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
    func remove(packetID: UInt32) -> Bool {
        state.withLock { state in
            guard let index = state.items.firstIndex(where: { $0.packet.id == packetID }) else { return false }
            state.items.remove(at: index)
            return true
        }
    }

    /// Empties the outbox, oldest first.
    func takeAll() -> [OutgoingPacket] {
        state.withLock { state in
            defer { state.items.removeAll() }
            return Array(state.items)
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
                let ready: OutgoingPacket?? = state.withLock { state in
                    if Task.isCancelled { return .some(nil) }
                    if let first = state.items.popFirst() { return .some(first) }
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
