@testable import Broker
import MeshBusTestSupport
import SlotCore
import Testing

/// The in-process fan-out behind the HTTP streams.
@Suite struct EventHubTests {
    func event(_ seq: UInt64, _ topic: String = "meshtastic.receive/sim/TEXT_MESSAGE_APP", size: Int = 10) -> SlotEvent {
        SlotEvent(seq: seq, topic: Array(topic.utf8), envelope: Array(repeating: UInt8(ascii: "x"), count: size), raw: nil)
    }

    func drain(_ subscription: EventHub.Subscription) -> [UInt64] {
        var seqs: [UInt64] = []
        while case .event(let event)? = subscription.take() { seqs.append(event.seq) }
        return seqs
    }

    /// Should hand each subscriber the events whose topic frame starts with one of its prefixes, in order.
    @Test func subscribersGetTheirPrefixesInOrder() {
        let hub = EventHub()
        let texts = hub.subscribe(prefixes: ["meshtastic.receive/sim/TEXT"])
        let everything = hub.subscribe(prefixes: [""])
        let links = hub.subscribe(prefixes: ["meshtastic.connection", "meshtastic.node"])
        for seq: UInt64 in 1...3 { hub.publish(event(seq)) }
        hub.publish(event(4, "meshtastic.connection.state/sim"))
        #expect(drain(texts) == [1, 2, 3])
        #expect(drain(everything) == [1, 2, 3, 4])
        #expect(drain(links) == [4])
        links.setPrefixes(["meshtastic.receive"])
        hub.publish(event(5))
        #expect(drain(links) == [5])
    }

    /// Should cut off a subscriber past its event or byte limit, and nobody else.
    @Test func aSubscriberPastItsLimitsOverflowsAlone() {
        let hub = EventHub()
        let slow = hub.subscribe(prefixes: [""], limits: .init(events: 3, bytes: 1 << 20))
        let small = hub.subscribe(prefixes: [""], limits: .init(events: 100, bytes: 200))
        let fine = hub.subscribe(prefixes: [""])
        for seq: UInt64 in 1...4 { hub.publish(event(seq, size: 60)) }
        guard case .overflowed? = slow.take() else {
            Issue.record("four events over a limit of three overflow")
            return
        }
        guard case .overflowed? = small.take() else {
            Issue.record("four events of about 100 bytes over a limit of 200 bytes overflow")
            return
        }
        #expect(drain(fine) == [1, 2, 3, 4])
    }

    /// Should wake a waiting subscriber, and one waiting for the overflow.
    @Test func waitersWakeOnAnEventAndOnOverflow() async throws {
        let hub = EventHub()
        let subscription = hub.subscribe(prefixes: [""], limits: .init(events: 1, bytes: 1 << 20))
        let woken = Recorder<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await subscription.waitForItem()
                woken.append("item")
                await subscription.waitForOverflow()
                woken.append("overflow")
            }
            hub.publish(event(1))
            try await woken.wait("the waiter to see the event") { $0 == ["item"] }
            hub.publish(event(2))
            try await woken.wait("the waiter to see the overflow") { $0 == ["item", "overflow"] }
            try await group.waitForAll()
        }
    }

    /// Should forget a subscriber that leaves, and wake its waiter.
    @Test func cancellingLeavesAndWakes() async {
        let hub = EventHub()
        let subscription = hub.subscribe(prefixes: [""])
        async let waiting: Void = subscription.waitForItem()
        subscription.cancel()
        await waiting
        hub.publish(event(1))
        #expect(subscription.take() == nil)
    }
}
