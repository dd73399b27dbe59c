/// The last events of one slot, kept so that a consumer that missed some (a `seq` jump, a
/// reconnect) can ask for them with `replay`. Bounded: the oldest go first.
struct ReplayRing: Sendable {
    typealias Entry = SlotEvent

    typealias GapTooOld = ReplayGapTooOld

    let capacity: Int
    private var entries: [Entry] = []
    /// Index of the oldest entry once the ring is full.
    private var head = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        entries.reserveCapacity(min(self.capacity, 4096))
    }

    var count: Int { entries.count }

    /// The oldest seq held, nil when empty.
    var oldestSeq: UInt64? { entries.isEmpty ? nil : entries[head].seq }

    mutating func append(_ entry: Entry) {
        if entries.count < capacity {
            entries.append(entry)
        } else {
            entries[head] = entry
            head = (head + 1) % capacity
        }
    }

    /// The events with a seq greater than `seq`, oldest first, at most `limit`. Throws
    /// ``GapTooOld`` if some of them are no longer held.
    func events(after seq: UInt64, limit: Int) throws(GapTooOld) -> [Entry] {
        guard let oldest = oldestSeq else { return [] }
        guard seq + 1 >= oldest else { throw GapTooOld(oldestSeq: oldest) }
        let skip = Int(min(seq + 1 - oldest, UInt64(entries.count)))
        let available = entries.count - skip
        return (0..<min(available, max(0, limit))).map { entries[(head + skip + $0) % entries.count] }
    }
}

/// Asked for events older than a slot's replay ring still holds.
public struct ReplayGapTooOld: Error, Equatable {
    /// The oldest `seq` still held.
    public var oldestSeq: UInt64
}
