/// Recognises a packet heard again: the same (`from`, `id`) within `window` on one slot
/// (a mesh rebroadcast, or the radio flushing its backlog again after a reconnect).
///
/// A pure value: time comes in with each call. Bounded by `capacity` keys; past that the
/// oldest are forgotten early (at LoRa rates this takes far more than 10 minutes of traffic).
struct DuplicateWindow<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    let window: Duration
    let capacity: Int
    /// `from` and `id` of every packet heard within the window, as one number each.
    private var heard: Set<UInt64> = []
    /// The same keys in the order heard, for expiry: each key held once, as it is added
    /// only when new and leaves `heard` only from here.
    private var order: [(key: UInt64, at: Instant)] = []
    private var orderStart = 0

    init(window: Duration = .seconds(600), capacity: Int = 100_000) {
        self.window = window
        self.capacity = max(1, capacity)
    }

    var count: Int { heard.count }

    /// Records the packet; true if it was heard within the window before. Packets without
    /// an id (0) are never duplicates.
    mutating func isDuplicate(from: UInt32, id: UInt32, now: Instant) -> Bool {
        guard id != 0 else { return false }
        expire(now: now)
        let key = UInt64(from) << 32 | UInt64(id)
        guard heard.insert(key).inserted else { return true }
        order.append((key, now))
        if heard.count > capacity { forgetOldest() }
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
        heard.remove(order[orderStart].key)
        orderStart += 1
    }
}
