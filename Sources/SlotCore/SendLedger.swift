import MeshBusModel

/// The life of every accepted send of one slot, from `queued` to exactly one terminal
/// status (design.md §4): `acked`, `nak` (with the routing error), `expired` (its
/// `ttlSeconds` passed first), `failed` (the radio refused it, or the broker shut down),
/// or `sent` for a send without `wantAck`, which has nothing more to wait for.
///
/// A send is first *reserved* (its id is taken) and then *accepted* once the outbox took
/// it, or released if the outbox was full: the outbox is another module's, so the slot
/// does not hold its lock while asking it. A `sent` that overtakes the acceptance is kept
/// and reported right after `queued`.
///
/// A pure value: time comes in with the calls.
struct SendLedger<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// One status change to publish on `meshtastic.send.status`.
    struct Update: Sendable, Equatable {
        var status: MeshBus.SendStatus
        /// Whether this is the send's last status: every one but `queued`, and `sent` of a
        /// send that waits for an ACK.
        var isTerminal: Bool

        init(packetID: UInt32, requestID: String? = nil, status: MeshBus.SendState, error: String? = nil, isTerminal: Bool = true) {
            self.status = MeshBus.SendStatus(packetId: packetID, requestId: requestID, status: status, error: error)
            self.isTerminal = isTerminal
        }
    }

    private struct Entry: Sendable {
        var requestID: String?
        var wantAck: Bool
        var deadline: Instant
        var accepted = false
        var written = false
        /// Past its deadline while still waiting to be written: being taken out of the outbox.
        var expiring = false
        /// The slot stopped while the send was reserved: it fails with this once accepted.
        var failure: String?

        /// Whether its deadline still needs a timer.
        var awaitsDeadline: Bool { accepted && (written || !expiring) }
    }

    private var entries: [UInt32: Entry] = [:]

    /// Sends not yet at a terminal status.
    var pending: Int { entries.count }

    /// Whether `packetID` is in use by a send still in flight (ids must stay unique).
    func contains(_ packetID: UInt32) -> Bool { entries[packetID] != nil }

    /// The soonest deadline of an accepted send, nil if none waits. Asked after every input,
    /// so it is a plain loop: key paths into a generic type are built at run time per use.
    var nextDeadline: Instant? {
        var soonest: Instant?
        for entry in entries.values where entry.awaitsDeadline {
            if let current = soonest, current <= entry.deadline { continue }
            soonest = entry.deadline
        }
        return soonest
    }

    /// Takes the id for a send about to be offered to the outbox.
    mutating func reserve(packetID: UInt32, requestID: String?, wantAck: Bool, ttl: Duration, now: Instant) {
        entries[packetID] = Entry(requestID: requestID, wantAck: wantAck, deadline: now.advanced(by: ttl))
    }

    /// How long after the writer held a send at its deadline it is looked at again.
    static var recheckDelay: Duration { .milliseconds(250) }

    /// The outbox took the send: `queued`, then `sent` if it was written meanwhile (or
    /// `failed` if the slot stopped meanwhile).
    mutating func accept(packetID: UInt32) -> [Update] {
        guard var entry = entries[packetID], !entry.accepted else { return [] }
        entry.accepted = true
        entries[packetID] = entry
        var updates = [Update(packetID: packetID, requestID: entry.requestID, status: .queued, isTerminal: false)]
        if let failure = entry.failure {
            entries[packetID] = nil
            updates.append(Update(packetID: packetID, requestID: entry.requestID, status: .failed, error: failure))
            return updates
        }
        if entry.written {
            entry.written = false
            entries[packetID] = entry
            if let sent = written(packetID: packetID) { updates.append(sent) }
        }
        return updates
    }

    /// The outbox was full: the id is free again and nothing was reported.
    mutating func release(packetID: UInt32) {
        if entries[packetID]?.accepted == false { entries[packetID] = nil }
    }

    /// The packet was written to the radio: `sent`, which ends a send without `wantAck`.
    mutating func written(packetID: UInt32) -> Update? {
        guard var entry = entries[packetID], !entry.written else { return nil }
        entry.written = true
        guard entry.accepted else {
            entries[packetID] = entry
            return nil
        }
        if entry.wantAck { entries[packetID] = entry } else { entries[packetID] = nil }
        return Update(packetID: packetID, requestID: entry.requestID, status: .sent, isTerminal: !entry.wantAck)
    }

    /// A Routing reply whose `request_id` names a packet of ours: `error` nil (or `NONE`)
    /// is an ACK, anything else a NAK.
    mutating func routingReply(requestID packetID: UInt32, error: String?) -> Update? {
        guard let entry = entries[packetID], entry.accepted, entry.written else { return nil }
        entries[packetID] = nil
        if let error, error != "NONE" {
            return Update(packetID: packetID, requestID: entry.requestID, status: .nak, error: error)
        }
        return Update(packetID: packetID, requestID: entry.requestID, status: .acked)
    }

    /// The radio refused the packet (a `queueStatus` with a non-zero `res` for it).
    mutating func refused(packetID: UInt32, error: String) -> Update? {
        guard let entry = entries[packetID], entry.accepted else { return nil }
        entries[packetID] = nil
        return Update(packetID: packetID, requestID: entry.requestID, status: .failed, error: error)
    }

    /// Accepted sends whose deadline passed. Those already written expire now; those still
    /// in the outbox are returned in `waiting`, to be taken out of it first (see
    /// ``removedFromOutbox(packetID:)``).
    mutating func expire(now: Instant) -> (expired: [Update], waiting: [UInt32]) {
        var expired: [Update] = []
        var waiting: [UInt32] = []
        for (packetID, entry) in entries where entry.awaitsDeadline && entry.deadline <= now {
            if entry.written {
                entries[packetID] = nil
                expired.append(Update(packetID: packetID, requestID: entry.requestID, status: .expired))
            } else {
                entries[packetID]?.expiring = true
                waiting.append(packetID)
            }
        }
        return (expired.sorted { $0.status.packetId < $1.status.packetId }, waiting.sorted())
    }

    /// The writer held a send past its deadline when it was to be taken out: it is looked at
    /// again after ``recheckDelay`` (by then written, and expired if unanswered; or back in
    /// the outbox, its write having failed or been put off, and taken out then).
    mutating func heldByWriter(packetID: UInt32, now: Instant) {
        guard var entry = entries[packetID], entry.expiring else { return }
        entry.expiring = false
        entry.deadline = now.advanced(by: Self.recheckDelay)
        entries[packetID] = entry
    }

    /// A send past its deadline was taken out of the outbox: `expired`.
    mutating func removedFromOutbox(packetID: UInt32) -> Update? {
        guard let entry = entries[packetID], entry.accepted, !entry.written else { return nil }
        entries[packetID] = nil
        return Update(packetID: packetID, requestID: entry.requestID, status: .expired)
    }

    /// Ends every send in flight as `failed` with `error` (shutdown); one still being offered
    /// to the outbox fails once accepted.
    mutating func failAll(error: String) -> [Update] {
        var updates: [Update] = []
        for (packetID, entry) in entries {
            if entry.accepted {
                entries[packetID] = nil
                updates.append(Update(packetID: packetID, requestID: entry.requestID, status: .failed, error: error))
            } else {
                entries[packetID]?.failure = error
            }
        }
        return updates.sorted { $0.status.packetId < $1.status.packetId }
    }
}
