import CoreMetrics
import RadioLink
import SlotCore
import Synchronization

/// One slot's series, through swift-metrics (the executable bootstraps the Prometheus
/// backend; without one they cost nothing). The probe round trip is recorded as it happens;
/// everything else is read from the slot's core just before a scrape (``Slot/refreshGauges()``):
/// gauges are set, counters move by what the core counted since the last scrape. So the
/// per-packet path makes no metrics calls at all.
final class SlotMetrics: Sendable {
    private let packetsReceived: CoreMetrics.Counter
    private let eventsPublished: CoreMetrics.Counter
    private let duplicates: CoreMetrics.Counter
    private let undecodableFrames: CoreMetrics.Counter
    private let reconnects: CoreMetrics.Counter
    let probeRoundTrip: CoreMetrics.Timer
    /// The core's counters as of the last scrape.
    private let recorded = Mutex(SlotCounters())
    private let slot: String
    private let ready: Gauge
    private let strikes: Gauge
    private let outboxDepth: Gauge
    private let pendingSends: Gauge
    private let replayHeld: Gauge
    private let replayCapacity: Gauge
    private let nodes: Gauge
    private let states: [String: Gauge]

    init(slot: String) {
        self.slot = slot
        let dimensions = [("slot", slot)]
        packetsReceived = Counter(label: "meshbus_packets_received_total", dimensions: dimensions)
        eventsPublished = Counter(label: "meshbus_events_published_total", dimensions: dimensions)
        duplicates = Counter(label: "meshbus_duplicates_dropped_total", dimensions: dimensions)
        undecodableFrames = Counter(label: "meshbus_undecodable_frames_total", dimensions: dimensions)
        reconnects = Counter(label: "meshbus_reconnects_total", dimensions: dimensions)
        probeRoundTrip = Timer(label: "meshbus_probe_round_trip_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        ready = Gauge(label: "meshbus_slot_ready", dimensions: dimensions)
        strikes = Gauge(label: "meshbus_slot_probe_strikes", dimensions: dimensions)
        outboxDepth = Gauge(label: "meshbus_outbox_depth", dimensions: dimensions)
        pendingSends = Gauge(label: "meshbus_sends_pending", dimensions: dimensions)
        replayHeld = Gauge(label: "meshbus_replay_events_held", dimensions: dimensions)
        replayCapacity = Gauge(label: "meshbus_replay_capacity", dimensions: dimensions)
        nodes = Gauge(label: "meshbus_nodes", dimensions: dimensions)
        states = Dictionary(uniqueKeysWithValues: LinkState.names.map { name in
            (name, Gauge(label: "meshbus_slot_state", dimensions: [("slot", slot), ("state", name)]))
        })
    }

    struct Reading {
        var state: LinkState
        var outboxDepth: Int
        var pendingSends: Int
        var replayHeld: Int
        var replayCapacity: Int
        var nodes: Int
    }

    func record(_ reading: Reading, counters: SlotCounters) {
        // Two scrapes at once must not move the mark back (and count the difference twice).
        let before = recorded.withLock { recorded in
            defer { recorded = Self.later(recorded, counters) }
            return recorded
        }
        func count(_ counter: CoreMetrics.Counter, _ now: Int, _ then: Int) {
            if now > then { counter.increment(by: now - then) }
        }
        count(packetsReceived, counters.packetsReceived, before.packetsReceived)
        count(eventsPublished, counters.eventsPublished, before.eventsPublished)
        count(duplicates, counters.duplicates, before.duplicates)
        count(undecodableFrames, counters.undecodableFrames, before.undecodableFrames)
        count(reconnects, counters.reconnects, before.reconnects)
        for (reason, total) in counters.losses {
            count(Counter(label: "meshbus_link_losses_total", dimensions: [("slot", slot), ("reason", reason)]), total, before.losses[reason] ?? 0)
        }
        for (status, total) in counters.sends {
            count(Counter(label: "meshbus_sends_total", dimensions: [("slot", slot), ("status", status)]), total, before.sends[status] ?? 0)
        }
        ready.record(reading.state.isReady ? 1 : 0)
        strikes.record(reading.state.strikes)
        outboxDepth.record(reading.outboxDepth)
        pendingSends.record(reading.pendingSends)
        replayHeld.record(reading.replayHeld)
        replayCapacity.record(reading.replayCapacity)
        nodes.record(reading.nodes)
        for (name, gauge) in states { gauge.record(name == reading.state.name ? 1 : 0) }
    }

    /// Each count at the larger of the two readings (counts only grow).
    private static func later(_ a: SlotCounters, _ b: SlotCounters) -> SlotCounters {
        var later = SlotCounters()
        later.packetsReceived = max(a.packetsReceived, b.packetsReceived)
        later.eventsPublished = max(a.eventsPublished, b.eventsPublished)
        later.duplicates = max(a.duplicates, b.duplicates)
        later.undecodableFrames = max(a.undecodableFrames, b.undecodableFrames)
        later.reconnects = max(a.reconnects, b.reconnects)
        later.losses = a.losses.merging(b.losses, uniquingKeysWith: max)
        later.sends = a.sends.merging(b.sends, uniquingKeysWith: max)
        return later
    }

    /// Removes the slot's gauges (its slot left the configuration), so no stale value stays
    /// on the page. Counters stay: they are totals of the process.
    func destroyGauges() {
        for gauge in [ready, strikes, outboxDepth, pendingSends, replayHeld, replayCapacity, nodes] + Array(states.values) {
            gauge.destroy()
        }
    }
}

extension CoreMetrics.Timer {
    func record(duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
