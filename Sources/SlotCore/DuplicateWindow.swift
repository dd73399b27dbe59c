/// Recognises a packet heard again: the same (`from`, `id`) within `window` on one slot
/// (a mesh rebroadcast, or the radio flushing its backlog again after a reconnect).
///
/// A pure value: time comes in with each call, kept to the whole second (the window is ten
/// minutes), so an entry costs 12 bytes beside its key in the set. Bounded by `capacity`
/// keys; past that the oldest are forgotten early (at LoRa rates this takes far more than
/// 10 minutes of traffic).
struct DuplicateWindow<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    let capacity: Int
    /// `from` and `id` of every packet heard within the window, as one number each.
    private var heard: Set<UInt64> = []
    /// The same keys in the order heard, for expiry: each key held once, as it is added
    /// only when new and leaves `heard` only from here.
    private var order: [UInt64] = []
    /// When each key of `order` was heard: whole seconds since `origin`.
    private var heardAt: [UInt32] = []
    private var orderStart = 0
    /// The first instant seen; the seconds of `heardAt` count from it.
    private var origin: Instant?
    /// The window, rounded up to whole seconds.
    private let windowSeconds: Int64

    init(window: Duration = .seconds(600), capacity: Int = 100_000) {
        self.capacity = max(1, capacity)
        let (seconds, attoseconds) = window.components
        windowSeconds = max(1, seconds + (attoseconds > 0 ? 1 : 0))
    }

    var count: Int { heard.count }

    /// Records the packet; true if it was heard within the window before. Packets without
    /// an id (0) are never duplicates.
    mutating func isDuplicate(from: UInt32, id: UInt32, now: Instant) -> Bool {
        guard id != 0 else { return false }
        let second = seconds(at: now)
        expire(now: second)
        let key = UInt64(from) << 32 | UInt64(id)
        guard heard.insert(key).inserted else { return true }
        order.append(key)
        heardAt.append(second)
        if heard.count > capacity { forgetOldest() }
        return false
    }

    private mutating func seconds(at now: Instant) -> UInt32 {
        guard let origin else {
            origin = now
            return 0
        }
        return UInt32(clamping: origin.duration(to: now).components.seconds)
    }

    private mutating func expire(now: UInt32) {
        while orderStart < order.count, Int64(now) - Int64(heardAt[orderStart]) >= windowSeconds {
            forgetOldest()
        }
        if orderStart > 1024, orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            heardAt.removeFirst(orderStart)
            orderStart = 0
        }
    }

    private mutating func forgetOldest() {
        guard orderStart < order.count else { return }
        heard.remove(order[orderStart])
        orderStart += 1
    }
}
