import MeshBusModel

/// Every slot's events without a gap: a snapshot first, then each event with a greater `seq`.
///
/// This is the consumer pattern of MeshBus's contract in one place. It snapshots each slot
/// (the ones `status` lists at the start, and any that shows up later), applies only events
/// newer than what it holds, fetches missed events with `replay` when `seq` jumps, and takes
/// a new snapshot when the broker no longer holds them or when the broker restarted (a new
/// `broker` id). It never throws: a broker that does not answer is retried on the next event.
/// The work happens inside `next()`, in the task that iterates.
public struct MeshBusFeed<Events: AsyncSequence & Sendable>: AsyncSequence, Sendable where Events.Element == MeshBusEvent {
    public typealias Element = Update

    /// What the feed tells its reader.
    public enum Update: Sendable {
        /// A slot's state as of `snapshot.seq`: replace what you hold for it.
        case snapshot(slot: String, MeshBus.Snapshot)
        /// The next event of a slot, in order.
        case event(MeshBusEvent)
        /// Events were missed (`seq` jumped from `after` to `seq`); a repair follows.
        case gap(slot: String, seq: UInt64, after: UInt64)
        /// The missed events were replayed; the slot is complete up to `seq`.
        case repaired(slot: String, seq: UInt64)
        /// The slot is taken again from a snapshot, for this reason.
        case resync(slot: String, reason: String)
    }

    private let client: MeshBusClient
    private let events: Events

    /// A feed of `client`'s events. Pass `events` only to wrap them (the default is
    /// ``MeshBusClient/events``): `seq` counts every topic of a slot, so the feed needs all of
    /// them. Subscribe to whole slots (`""`, or each topic prefix of the slot), and filter what
    /// comes out of the feed, not what goes in; a missing event is a gap to replay.
    public init(client: MeshBusClient, events: Events) {
        self.client = client
        self.events = events
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(client: client, events: events.makeAsyncIterator())
    }

    /// Holds what each slot is current at; meant for the one task that iterates.
    public struct Iterator: AsyncIteratorProtocol {
        private let client: MeshBusClient
        private var events: Events.AsyncIterator
        private var slots: [String: (broker: String, seq: UInt64)] = [:]
        private var ready: [Update] = []
        private var started = false

        init(client: MeshBusClient, events: Events.AsyncIterator) {
            self.client = client
            self.events = events
        }

        public mutating func next() async -> Update? {
            if !started {
                started = true
                await start()
            }
            while ready.isEmpty {
                guard let event = try? await events.next() else { return nil }
                await take(event)
            }
            return ready.removeFirst()
        }

        private mutating func start() async {
            while !Task.isCancelled {
                guard let ping = try? await client.ping(), let status = try? await client.status() else {
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                for slot in status.keys.sorted() { await resync(slot, broker: ping.broker) }
                return
            }
        }

        private mutating func take(_ event: MeshBusEvent) async {
            let slot = event.slot
            guard let current = slots[slot], current.broker == event.broker else {
                if slots[slot] != nil { ready.append(.resync(slot: slot, reason: "broker restarted (\(event.broker))")) }
                guard await resync(slot, broker: event.broker) else { return }
                if event.seq > slots[slot]!.seq { apply(event) }
                return
            }
            guard event.seq > current.seq else { return }
            if event.seq > current.seq + 1 {
                ready.append(.gap(slot: slot, seq: event.seq, after: current.seq))
                if await replay(slot, until: event.seq) {
                    ready.append(.repaired(slot: slot, seq: slots[slot]!.seq))
                } else {
                    guard await resync(slot, broker: event.broker), event.seq > slots[slot]!.seq else { return }
                }
            }
            apply(event)
        }

        /// Applies the slot's missed events up to `seq` (exclusive), page by page; false (with
        /// a `resync` update) if the broker no longer holds them all.
        private mutating func replay(_ slot: String, until seq: UInt64) async -> Bool {
            while let current = slots[slot]?.seq, current + 1 < seq {
                do {
                    let page = try await client.replay(slot: slot, sinceSeq: current)
                    for missed in page.events where missed.seq > slots[slot]!.seq && missed.seq < seq {
                        guard missed.seq == slots[slot]!.seq + 1 else {
                            ready.append(.resync(slot: slot, reason: "replay has a hole at seq \(slots[slot]!.seq + 1)"))
                            return false
                        }
                        apply(missed)
                    }
                    if page.complete || page.events.isEmpty { break }
                } catch {
                    ready.append(.resync(slot: slot, reason: "replay failed (\(error))"))
                    return false
                }
            }
            guard let current = slots[slot]?.seq, current + 1 == seq else {
                ready.append(.resync(slot: slot, reason: "replay ended before seq \(seq)"))
                return false
            }
            return true
        }

        private mutating func apply(_ event: MeshBusEvent) {
            slots[event.slot]?.seq = event.seq
            ready.append(.event(event))
        }

        @discardableResult
        private mutating func resync(_ slot: String, broker: String) async -> Bool {
            guard let snapshot = try? await client.snapshot(slot: slot) else {
                slots[slot] = nil
                return false
            }
            slots[slot] = (broker, snapshot.seq)
            ready.append(.snapshot(slot: slot, snapshot))
            return true
        }
    }
}

extension MeshBusFeed where Events == AsyncStream<MeshBusEvent> {
    /// A feed of every event `client` subscribed to.
    public init(client: MeshBusClient) {
        self.init(client: client, events: client.events)
    }
}
