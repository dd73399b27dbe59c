/// Recognises a packet heard again: the same (`from`, `id`) within `window` on one slot
/// (a mesh rebroadcast, or the radio flushing its backlog again after a reconnect).
///
/// A pure value: time comes in with each call. Bounded by `capacity` keys; past that the
/// oldest are forgotten early (at LoRa rates this takes far more than 10 minutes of traffic).
struct DuplicateWindow<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    private struct Key: Hashable, Sendable {
        var from: UInt32
        var id: UInt32
    }

    let window: Duration
    let capacity: Int
    private var lastHeard: [Key: Instant] = [:]
    /// Keys in the order first heard, for expiry; may hold keys already refreshed.
    private var order: [(key: Key, at: Instant)] = []
    private var orderStart = 0

    init(window: Duration = .seconds(600), capacity: Int = 100_000) {
        self.window = window
        self.capacity = max(1, capacity)
    }

    var count: Int { lastHeard.count }

    /// Records the packet; true if it was heard within the window before. Packets without
    /// an id (0) are never duplicates.
    mutating func isDuplicate(from: UInt32, id: UInt32, now: Instant) -> Bool {
        guard id != 0 else { return false }
        expire(now: now)
        let key = Key(from: from, id: id)
        if lastHeard[key] != nil { return true }
        lastHeard[key] = now
        order.append((key, now))
        if lastHeard.count > capacity { forgetOldest() }
        return false
    }

    private mutating func expire(now: Instant) {
        while orderStart < order.count, order[orderStart].at.duration(to: now) >= window {
            forgetOldest()
        }
        if orderStart > 1024, orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            orderStart = 0
        }
    }

    private mutating func forgetOldest() {
        guard orderStart < order.count else { return }
        let oldest = order[orderStart]
        orderStart += 1
        if lastHeard[oldest.key] == oldest.at { lastHeard[oldest.key] = nil }
    }
}
