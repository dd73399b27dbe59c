/// The life of every accepted send of one slot, from `queued` to exactly one terminal
/// status (design.md §4): `acked`, `nak` (with the routing error), `expired` (its
/// `ttlSeconds` passed first), `failed` (the radio refused it, or the broker shut down),
/// or `sent` for a send without `wantAck`, which has nothing more to wait for.
///
/// A pure value: time comes in with the calls, the outbox is reached through a closure, so
/// every path is a plain unit test.
struct SendLedger<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    enum Status: String, Sendable {
        case queued, sent, acked, nak, expired, failed
    }

    /// One status change to publish on `meshtastic.send.status`.
    struct Update: Sendable, Equatable {
        var packetID: UInt32
        var requestID: String?
        var status: Status
        var error: String?
        /// Whether this is the send's last status: every one but `queued`, and `sent` of a
        /// send that waits for an ACK.
        var isTerminal: Bool

        init(packetID: UInt32, requestID: String? = nil, status: Status, error: String? = nil, isTerminal: Bool = true) {
            self.packetID = packetID
            self.requestID = requestID
            self.status = status
            self.error = error
            self.isTerminal = isTerminal
        }
    }

    private struct Entry: Sendable {
        var requestID: String?
        var wantAck: Bool
        var deadline: Instant
        var written: Bool
    }

    private var entries: [UInt32: Entry] = [:]

    /// Sends not yet at a terminal status.
    var pending: Int { entries.count }

    /// Whether `packetID` is in use by a send still in flight (ids must stay unique).
    func contains(_ packetID: UInt32) -> Bool { entries[packetID] != nil }

    mutating func accept(packetID: UInt32, requestID: String?, wantAck: Bool, ttl: Duration, now: Instant) -> Update {
        entries[packetID] = Entry(requestID: requestID, wantAck: wantAck, deadline: now.advanced(by: ttl), written: false)
        return Update(packetID: packetID, requestID: requestID, status: .queued, isTerminal: false)
    }

    /// The packet was written to the radio: `sent`, which ends a send without `wantAck`.
    mutating func written(packetID: UInt32) -> Update? {
        guard var entry = entries[packetID], !entry.written else { return nil }
        entry.written = true
        if entry.wantAck { entries[packetID] = entry } else { entries[packetID] = nil }
        return Update(packetID: packetID, requestID: entry.requestID, status: .sent, isTerminal: !entry.wantAck)
    }

    /// A Routing reply whose `request_id` names a packet of ours: `error` nil (or `NONE`)
    /// is an ACK, anything else a NAK.
    mutating func routingReply(requestID packetID: UInt32, error: String?) -> Update? {
        guard let entry = entries[packetID], entry.written else { return nil }
        entries[packetID] = nil
        if let error, error != "NONE" {
            return Update(packetID: packetID, requestID: entry.requestID, status: .nak, error: error)
        }
        return Update(packetID: packetID, requestID: entry.requestID, status: .acked)
    }

    /// The radio refused the packet (a `queueStatus` with a non-zero `res` for it).
    mutating func refused(packetID: UInt32, error: String) -> Update? {
        guard let entry = entries.removeValue(forKey: packetID) else { return nil }
        return Update(packetID: packetID, requestID: entry.requestID, status: .failed, error: error)
    }

    /// Every send whose deadline passed: `expired`. One still waiting in the outbox is taken
    /// out of it first (`removeFromOutbox` returns false if the writer holds it right now;
    /// such a send is left for its `sent`, and expires on a later call if no answer comes).
    mutating func expire(now: Instant, removeFromOutbox: (UInt32) -> Bool) -> [Update] {
        var updates: [Update] = []
        for (packetID, entry) in entries where entry.deadline <= now {
            if !entry.written, !removeFromOutbox(packetID) { continue }
            entries[packetID] = nil
            updates.append(Update(packetID: packetID, requestID: entry.requestID, status: .expired))
        }
        return updates.sorted { $0.packetID < $1.packetID }
    }

    /// Ends every send still in flight as `failed` with `error` (shutdown).
    mutating func failAll(error: String) -> [Update] {
        defer { entries.removeAll() }
        return entries.map { Update(packetID: $0.key, requestID: $0.value.requestID, status: .failed, error: error) }
            .sorted { $0.packetID < $1.packetID }
    }
}
