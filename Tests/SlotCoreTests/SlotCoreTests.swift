import Foundation
import MeshBusModel
import MeshBusTestSupport
import MeshtasticProtocol
import RadioLink
@testable import SlotCore
import Testing

/// The slot core fed by hand on a mock instant: each input's actions, as values.
struct CoreHarness {
    typealias Core = SlotCore<MockClock.Instant>
    var core = Core(settings: .init(name: "roof", envelopeHead: Envelope.head(broker: "b0", slot: "roof"), replayCapacity: 8, seed: 1))
    var now = MockClock.Instant.ms(0)

    @discardableResult
    mutating func handle(_ input: Core.Input) -> [Core.Action] {
        var actions: [Core.Action] = []
        core.handle(input, at: .init(instant: now, time: "2026-11-29T12:00:00.000Z"), into: &actions)
        return actions
    }

    @discardableResult
    mutating func link(_ event: RadioLinkEvent) -> [Core.Action] { handle(.link(event)) }

    @discardableResult
    mutating func radio(_ message: Meshtastic_FromRadio) -> [Core.Action] {
        link(.fromRadio(message, raw: (try? message.serializedBytes()) ?? [], backlog: false))
    }

    /// A send accepted by the outbox, with its actions.
    mutating func send(ttl: Duration = .seconds(60), wantAck: Bool = true, requestID: String? = "r1") -> (UInt32, [Core.Action]) {
        let packet = core.reserve(Meshtastic_MeshPacket.with { $0.wantAck = wantAck }, requestID: requestID, ttl: ttl, keepingID: false, at: now)
        return (packet.id, handle(.accepted(packetID: packet.id)))
    }

    /// Moves the mock instant to `milliseconds` after the start.
    mutating func at(_ milliseconds: Int64) { now = .ms(milliseconds) }
}

/// A published event's envelope, parsed.
struct Published {
    let event: SlotEvent
    let envelope: JSONValue

    var topic: String { envelope["topic"]?.stringValue ?? "" }
    var seq: UInt64 { UInt64(envelope["seq"]?.int64Value ?? -1) }
    subscript(key: String) -> JSONValue? { envelope[key] }
}

extension Array where Element == SlotCore<MockClock.Instant>.Action {
    var published: [Published] {
        compactMap { action in
            guard case .publish(let event) = action else { return nil }
            return Published(event: event, envelope: (try? JSONValue(parsing: event.envelope)) ?? .null)
        }
    }

    var topics: [String] { published.map(\.topic) }

    var sendStatuses: [String] { published.filter { $0.topic == MeshBus.Topic.sendStatus }.compactMap { $0["status"]?.stringValue } }

    var expirySchedules: [MockClock.Instant] {
        compactMap { if case .scheduleExpiry(let at) = $0 { at } else { nil } }
    }

    var settled: [UInt32] {
        compactMap { if case .settled(let packetID) = $0 { packetID } else { nil } }
    }

    var virtualRadio: [SlotCore<MockClock.Instant>.VirtualRadioNotice] {
        compactMap { if case .virtualRadio(let notice) = $0 { notice } else { nil } }
    }
}

func textPacket(from: UInt32, id: UInt32, rxTime: UInt32 = 1_800_000_000, snr: Float = 6.25) -> Meshtastic_FromRadio {
    .with {
        $0.packet = .with {
            $0.from = from
            $0.to = NodeNumber.broadcast
            $0.id = id
            $0.rxTime = rxTime
            $0.rxSnr = snr
            $0.decoded.portnum = .textMessageApp
            $0.decoded.payload = Data("hi".utf8)
        }
    }
}

func routingReply(to packetID: UInt32, error: Meshtastic_Routing.Error = .none) -> Meshtastic_FromRadio {
    .with {
        $0.packet = .with {
            $0.from = 0x1000_0001
            $0.to = 0x1000_0001
            $0.id = packetID &+ 1
            $0.decoded.portnum = .routingApp
            $0.decoded.requestID = packetID
            $0.decoded.payload = try! Meshtastic_Routing.with { $0.errorReason = error }.serializedData()
        }
    }
}

@Suite struct SlotCoreSequenceTests {
    /// Should give every event of the slot the next seq, from 1, and keep it for replay.
    @Test func everyEventGetsTheNextSeqAndIsKeptForReplay() throws {
        var harness = CoreHarness()
        let first = harness.link(.stateChanged(.connecting(attempt: 1), previous: .idle))
        let second = harness.link(.logLine("boot"))
        let third = harness.radio(textPacket(from: 5, id: 1))
        #expect(first.published.map(\.seq) == [1])
        #expect(second.published.map(\.seq) == [2])
        #expect(third.published.map(\.seq) == [3, 4], "the packet, then the node it created")
        #expect(try harness.core.events(after: 1, limit: 100).events.map(\.seq) == [2, 3, 4])
        #expect(third.published.first?.event.topic == Array("meshtastic.receive/roof/TEXT_MESSAGE_APP".utf8))
    }

    /// Should answer a replay older than the ring with the oldest seq still held.
    @Test func aReplayOlderThanTheRingIsAGap() throws {
        var harness = CoreHarness()
        for index in 1...10 { harness.link(.logLine("line \(index)")) }
        #expect(throws: ReplayGapTooOld(oldestSeq: 3)) { try harness.core.events(after: 1, limit: 100) }
        #expect(try harness.core.events(after: 2, limit: 100).events.map(\.seq) == Array(3...10))
    }

    /// Should publish the envelope's own keys first and the event's fields after them.
    @Test func envelopesCarryTheSlotAndTheModelsFields() {
        var harness = CoreHarness()
        let actions = harness.link(.stateChanged(.backoff(attempt: 2, retryIn: .milliseconds(1500)), previous: .connecting(attempt: 2)))
        let event = try! #require(actions.published.first)
        #expect(event["slot"] == .string("roof") && event["broker"] == .string("b0") && event["schema"] == .int(1))
        #expect(event["state"] == .string("backoff") && event["previous"] == .string("connecting"))
        #expect(event["retryInSeconds"]?.doubleValue == 1.5)
    }

    /// Should keep the last link states with when each began, for `status`'s history, and
    /// drop the oldest past the limit.
    @Test func theLinkHistoryKeepsTheLastStatesInOrder() {
        var harness = CoreHarness()
        harness.link(.stateChanged(.connecting(attempt: 1), previous: .idle))
        harness.link(.stateChanged(.ready(attempt: 1), previous: .configuring(attempt: 1, nonce: 7)))
        #expect(harness.core.figures.history.map(\.state) == [.connecting, .ready])
        #expect(harness.core.figures.history.first?.since == "2026-11-29T12:00:00.000Z")
        let limit = SlotCore<MockClock.Instant>.historyLimit
        for attempt in 1...limit { harness.link(.stateChanged(.backoff(attempt: attempt, retryIn: .seconds(1)), previous: .connecting(attempt: attempt))) }
        #expect(harness.core.figures.history.count == limit)
        #expect(!harness.core.figures.history.contains { $0.state == .ready }, "the oldest states were dropped")
    }
}

@Suite struct SlotCoreDuplicateTests {
    /// Should count a packet heard again within ten minutes and not publish it again.
    @Test func aPacketHeardAgainWithinTenMinutesIsCountedNotPublished() {
        var harness = CoreHarness()
        #expect(harness.radio(textPacket(from: 5, id: 42)).topics.contains(MeshBus.Topic.receive))
        harness.at(599_999)
        #expect(harness.radio(textPacket(from: 5, id: 42)).published.isEmpty)
        #expect(harness.core.counters.duplicates == 1)
        harness.at(600_000)
        #expect(harness.radio(textPacket(from: 5, id: 42)).topics.first == MeshBus.Topic.receive, "ten minutes on, it is news again")
    }
}

@Suite struct SlotCoreNodeTests {
    /// Should publish node.updated when a packet creates a node or changes it, and not otherwise.
    @Test func nodeUpdatedOnCreateOrChangeAndNeverWhenNothingChanged() {
        var harness = CoreHarness()
        #expect(harness.radio(textPacket(from: 5, id: 1)).topics == [MeshBus.Topic.receive, MeshBus.Topic.nodeUpdated])
        #expect(harness.radio(textPacket(from: 5, id: 2)).topics == [MeshBus.Topic.receive], "same time heard, same SNR")
        let changed = harness.radio(textPacket(from: 5, id: 3, snr: 7.5))
        #expect(changed.topics == [MeshBus.Topic.receive, MeshBus.Topic.nodeUpdated])
        #expect(changed.published.last?["node"]?["snr"] == .number("7.5"))
        #expect(changed.published.last?["node"]?["num"] == .int(5))
    }

    /// Should merge a handshake's NodeInfo field by field, keeping what it leaves out.
    @Test func handshakeNodeInfoMergesAndKeepsWhatPacketsTold() {
        var harness = CoreHarness()
        harness.radio(textPacket(from: 5, id: 1, rxTime: 1_800_000_100))
        let info = Meshtastic_FromRadio.with { $0.nodeInfo = .with { $0.num = 5; $0.user.longName = "Five"; $0.hopsAway = 0 } }
        let merged = harness.radio(info)
        let node = merged.published.first?["node"]
        #expect(node?["user"]?["longName"] == .string("Five"))
        #expect(node?["lastHeard"] == .int(1_800_000_100), "kept from the packet")
        #expect(node?["hopsAway"] == .int(0), "a set hopsAway of 0 is written")
        #expect(harness.radio(info).published.isEmpty, "the same NodeInfo again changes nothing")
        #expect(harness.core.nodes.count == 1)
    }

    /// Should render the node table from the one store, keyed by node id.
    @Test func theNodeTableIsRenderedFromTheStore() {
        var harness = CoreHarness()
        harness.radio(textPacket(from: 0xA1B2_C3D4, id: 1))
        let table = harness.core.snapshotSource.nodeTable
        #expect(table["nodes"]?["!a1b2c3d4"]?["num"] == .int(0xA1B2_C3D4))
        #expect(table["seq"] == .int(2))
    }

    /// Should give a virtual client's handshake the nodes in the order first heard of.
    @Test func nodesKeepTheOrderFirstHeardOf() {
        var harness = CoreHarness()
        for from: UInt32 in [9, 3, 7] { harness.radio(textPacket(from: from, id: from)) }
        harness.radio(.with { $0.nodeInfo = .with { $0.num = 3; $0.user.longName = "Three" } })
        #expect(harness.core.nodes.all.map(\.num) == [9, 3, 7])
    }
}

@Suite struct SlotCoreSnapshotTests {
    /// Should report a snapshot current at the seq it carries: every later event has a greater seq.
    @Test func aSnapshotIsFencedByItsSeq() throws {
        var harness = CoreHarness()
        harness.radio(.with { $0.myInfo = .with { $0.myNodeNum = 0x1000_0001 } })
        harness.radio(textPacket(from: 5, id: 1))
        let snapshot = harness.core.snapshotSource.render(state: "ready")
        #expect(snapshot["seq"] == .int(2))
        #expect(snapshot["nodes"]?["!00000005"] != nil)
        #expect(snapshot["myInfo"]?["myNodeNum"] == .int(0x1000_0001))
        let later = harness.radio(textPacket(from: 6, id: 2))
        #expect(later.published.allSatisfy { $0.seq > 2 })
    }
}

@Suite struct SlotCoreSendTests {
    /// Should say queued once the outbox took a send, and set the expiry timer for its deadline.
    @Test func anAcceptedSendIsQueuedAndItsDeadlineScheduled() {
        var harness = CoreHarness()
        harness.at(1_000)
        let (_, actions) = harness.send(ttl: .milliseconds(2_500))
        #expect(actions.sendStatuses == ["queued"])
        #expect(actions.expirySchedules == [.ms(3_500)])
    }

    /// Should carry a send with wantAck to exactly one terminal status: queued, sent, acked.
    @Test func aSendWithAckEndsAckedOnce() {
        var harness = CoreHarness()
        let (packetID, _) = harness.send()
        let packet = Meshtastic_MeshPacket.with { $0.id = packetID; $0.wantAck = true }
        let sent = harness.link(.sent(OutgoingPacket(packet: packet, requestID: "r1")))
        #expect(sent.topics == [MeshBus.Topic.sent, MeshBus.Topic.sendStatus])
        #expect(sent.sendStatuses == ["sent"])
        #expect(sent.virtualRadio == [.outboxChanged])
        #expect(harness.radio(routingReply(to: packetID)).sendStatuses == ["acked"])
        #expect(harness.radio(routingReply(to: packetID)).sendStatuses.isEmpty, "one terminal status only")
        #expect(harness.core.counters.sends == ["acked": 1])
        #expect(harness.core.pendingSends == 0)
    }

    /// Should let the journal forget a send only after its terminal status, never after `queued`
    /// or the `sent` of a send that waits for its ACK.
    @Test func aSendIsSettledRightAfterItsTerminalStatusOnly() {
        var harness = CoreHarness()
        let (packetID, queued) = harness.send()
        #expect(queued.settled.isEmpty)
        #expect(harness.link(.sent(OutgoingPacket(packet: .with { $0.id = packetID; $0.wantAck = true }, requestID: "r1"))).settled.isEmpty)
        let acked = harness.radio(routingReply(to: packetID))
        #expect(acked.settled == [packetID])
        let statusIndex = acked.firstIndex { if case .publish(let event) = $0 { event.topic.starts(with: Array(MeshBus.Topic.sendStatus.utf8)) } else { false } }
        let settledIndex = acked.firstIndex { if case .settled = $0 { true } else { false } }
        #expect(statusIndex! < settledIndex!, "published before the journal forgets it")
        let (noAck, _) = harness.send(wantAck: false, requestID: "r2")
        #expect(harness.link(.sent(OutgoingPacket(packet: .with { $0.id = noAck }, requestID: "r2"))).settled == [noAck])
    }

    /// Should end a send recovered from before a restart with the given status, its ids kept.
    @Test func aRecoveredSendEndsWithItsOriginalIDs() {
        var harness = CoreHarness()
        var actions: [CoreHarness.Core.Action] = []
        harness.core.settleRecovered(
            packetID: 0xBEEF, requestID: "before-crash", status: .expired, at: .init(instant: harness.now, time: "2026-11-29T12:00:00.000Z"),
            into: &actions
        )
        let status = actions.published.first { $0.topic == MeshBus.Topic.sendStatus }
        #expect(status?["packetId"] == .int(0xBEEF) && status?["requestId"] == .string("before-crash") && status?["status"] == .string("expired"))
        #expect(actions.settled == [0xBEEF])
        #expect(harness.core.counters.sends == ["expired": 1])
    }

    /// Should name the routing error of a NAK.
    @Test func aRoutingErrorIsANak() {
        var harness = CoreHarness()
        let (packetID, _) = harness.send()
        harness.link(.sent(OutgoingPacket(packet: .with { $0.id = packetID; $0.wantAck = true }, requestID: "r1")))
        let nak = harness.radio(routingReply(to: packetID, error: .maxRetransmit)).published.first { $0.topic == MeshBus.Topic.sendStatus }
        #expect(nak?["status"] == .string("nak") && nak?["error"] == .string("MAX_RETRANSMIT"))
    }

    /// Should take a send still waiting at its deadline out of the outbox, then say expired.
    @Test func aSendPastItsDeadlineLeavesTheOutboxAndExpires() {
        var harness = CoreHarness()
        let (packetID, _) = harness.send(ttl: .milliseconds(5_000))
        harness.at(4_999)
        #expect(harness.handle(.expiryDue(.ms(4_999))).isEmpty, "a stray timer before the deadline does nothing")
        harness.at(5_000)
        #expect(harness.handle(.expiryDue(.ms(5_000))) == [.removeFromOutbox([packetID])])
        let expired = harness.handle(.removedFromOutbox(packetID: packetID, removed: true))
        #expect(expired.sendStatuses == ["expired"])
        #expect(expired.virtualRadio == [.outboxChanged])
        #expect(harness.core.counters.sends == ["expired": 1])
    }

    /// Should let a send the writer holds at its deadline go out, then expire it unanswered.
    @Test func aSendTheWriterHeldExpiresAfterItsSent() {
        var harness = CoreHarness()
        let (packetID, _) = harness.send(ttl: .milliseconds(5_000))
        harness.at(5_000)
        harness.handle(.expiryDue(.ms(5_000)))
        #expect(harness.handle(.removedFromOutbox(packetID: packetID, removed: false)).expirySchedules == [.ms(5_250)], "looked at again shortly")
        harness.at(5_010)
        let sent = harness.link(.sent(OutgoingPacket(packet: .with { $0.id = packetID; $0.wantAck = true }, requestID: "r1")))
        #expect(sent.sendStatuses == ["sent"])
        harness.at(5_250)
        #expect(harness.handle(.expiryDue(.ms(5_250))).sendStatuses == ["expired"])
    }

    /// Should set the timer again only for a deadline earlier than the one set.
    @Test func onlyAnEarlierDeadlineReschedulesTheTimer() {
        var harness = CoreHarness()
        #expect(harness.send(ttl: .milliseconds(10_000)).1.expirySchedules == [.ms(10_000)])
        #expect(harness.send(ttl: .milliseconds(5_000)).1.expirySchedules == [.ms(5_000)])
        #expect(harness.send(ttl: .milliseconds(20_000)).1.expirySchedules.isEmpty)
        harness.at(5_000)
        let due = harness.handle(.expiryDue(.ms(5_000)))
        #expect(due.expirySchedules == [.ms(10_000)], "the next deadline once the first is handled")
    }

    /// Should fail every send still in flight when the slot stops.
    @Test func stoppingFailsWhatIsInFlight() {
        var harness = CoreHarness()
        _ = harness.send()
        _ = harness.send()
        let stop = harness.handle(.stop(error: "shutdown"))
        #expect(stop.sendStatuses == ["failed", "failed"])
        #expect(stop.published.allSatisfy { $0["status"] != .string("failed") || $0["error"] == .string("shutdown") })
        #expect(harness.core.pendingSends == 0)
    }

    /// Should fail a send the radio refused in its queue status.
    @Test func aRadioRefusalFailsTheSend() {
        var harness = CoreHarness()
        let (packetID, _) = harness.send()
        let refused = harness.radio(.with { $0.queueStatus = .with { $0.res = 3; $0.meshPacketID = packetID } })
        #expect(refused.topics == [MeshBus.Topic.queueStatus, MeshBus.Topic.sendStatus])
        #expect(refused.published.last?["error"] == .string("queue_status_res_3"))
    }

    /// Should tell the virtual radio when a client's send expires, so the client gets a NAK.
    @Test func aVirtualClientsExpiredSendIsToldToItsClient() {
        var harness = CoreHarness()
        let (packetID, _) = harness.send(ttl: .milliseconds(100), requestID: "virtualRadio:127.0.0.1:5000")
        harness.at(100)
        harness.handle(.expiryDue(.ms(100)))
        let expired = harness.handle(.removedFromOutbox(packetID: packetID, removed: true))
        #expect(expired.virtualRadio == [.sendFailed(packetID: packetID, error: .timeout), .outboxChanged])
    }

    /// Should keep a virtual client's packet id unless a send in flight holds it.
    @Test func aClientsPacketIDIsKeptUnlessTaken() {
        var harness = CoreHarness()
        let first = harness.core.reserve(.with { $0.id = 77 }, requestID: nil, ttl: .seconds(1), keepingID: true, at: harness.now)
        let second = harness.core.reserve(.with { $0.id = 77 }, requestID: nil, ttl: .seconds(1), keepingID: true, at: harness.now)
        #expect(first.id == 77)
        #expect(second.id != 77 && second.id != 0)
    }
}

@Suite struct SlotCoreLinkTests {
    /// Should count a reconnect from the second establishment on, and losses by reason.
    @Test func establishmentsAndLossesAreCounted() {
        var harness = CoreHarness()
        let info = LinkInfo(myNodeNum: 0x1000_0001, firmware: "2.7.11", nodeCount: 3, attempt: 1)
        #expect(harness.link(.established(info)).virtualRadio == [.linkReady])
        #expect(harness.link(.lost(.probeStrikes)).virtualRadio == [.linkLost])
        harness.link(.established(info))
        #expect(harness.core.counters.reconnects == 1)
        #expect(harness.core.counters.losses == ["probe_strikes": 1])
        #expect(harness.core.myNodeNum == 0x1000_0001)
    }

    /// Should pass every frame from the radio on to the virtual radio, after publishing it.
    @Test func framesReachTheVirtualRadioInOrder() {
        var harness = CoreHarness()
        let message = textPacket(from: 5, id: 1)
        let actions = harness.radio(message)
        guard case .virtualRadio(.radio(let forwarded, _))? = actions.last else {
            Issue.record("the last action is not the frame for the virtual radio: \(actions)")
            return
        }
        #expect(forwarded == message)
    }
}
