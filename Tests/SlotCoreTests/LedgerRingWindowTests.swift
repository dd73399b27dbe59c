import MeshBusModel
import MeshBusTestSupport
@testable import SlotCore
import Testing

typealias TestInstant = MockClock.Instant

extension MockClock.Instant {
    /// `seconds` after the clock's start.
    static func at(_ seconds: Int64) -> MockClock.Instant { MockClock.Instant(offset: .seconds(seconds)) }
}

@Suite struct ReplayRingTests {
    static let head = Envelope.head(broker: "b0", slot: "roof")

    func ring(capacity: Int, events: ClosedRange<UInt64>) -> ReplayRing {
        var ring = ReplayRing(capacity: capacity)
        for seq in events { ring.append(seq: seq, time: .milliseconds(Int64(seq)), record: .other(topic: "t", fields: Array(",\"n\":\(seq)".utf8))) }
        return ring
    }

    func seqs(_ ring: ReplayRing, after seq: UInt64, limit: Int = 100) throws -> [UInt64] {
        try ring.events(after: seq, limit: limit, head: Self.head, slot: "roof").events.map(\.seq)
    }

    @Test func returnsEverythingAfterTheGivenSeqInOrder() throws {
        let ring = ring(capacity: 10, events: 1...6)
        #expect(try seqs(ring, after: 3) == [4, 5, 6])
        #expect(try seqs(ring, after: 0) == [1, 2, 3, 4, 5, 6])
        #expect(try seqs(ring, after: 6).isEmpty, "nothing newer")
        #expect(try seqs(ring, after: 60).isEmpty)
    }

    @Test func keepsOnlyTheNewestCapacityEvents() throws {
        let ring = ring(capacity: 4, events: 1...10)
        #expect(ring.count == 4)
        #expect(ring.oldestSeq == 7)
        #expect(try seqs(ring, after: 6) == [7, 8, 9, 10])
        #expect(try seqs(ring, after: 8) == [9, 10])
    }

    @Test func askingBeyondTheRingIsAGapTooOld() {
        let ring = ring(capacity: 4, events: 1...10)
        #expect(throws: ReplayRing.GapTooOld(oldestSeq: 7)) { try ring.events(after: 5, limit: 100, head: Self.head, slot: "roof") }
    }

    /// Should answer a cursor at the very top of the seq range (a client's Last-Event-ID can
    /// say anything) with nothing newer, not overflow.
    @Test func aCursorBeyondEverySeqHasNothingNewer() throws {
        let ring = ring(capacity: 4, events: 1...10)
        #expect(try seqs(ring, after: UInt64.max).isEmpty)
        #expect(try seqs(ring, after: UInt64.max - 1).isEmpty)
        #expect(try seqs(ring, after: 9) == [10])
        #expect(try seqs(ring, after: 10).isEmpty)
    }

    @Test func limitCutsFromTheOldestSide() throws {
        let ring = ring(capacity: 5, events: 1...12)
        #expect(try seqs(ring, after: 8, limit: 2) == [9, 10])
    }

    /// Should write each event out again from its record, across chunk boundaries and after
    /// the oldest chunks were let go.
    @Test func eventsComeBackWithTheirFieldsAndTimesAcrossChunks() throws {
        let ring = ring(capacity: 1000, events: 1...5_000)
        #expect(ring.count == 1000)
        let events = try ring.events(after: 4_000, limit: .max, head: Self.head, slot: "roof").events
        #expect(events.map(\.seq) == Array(4_001...5_000))
        let last = try #require(events.last)
        let expected = Envelope.write(head: Self.head, topic: "t", seq: 5_000, time: Envelope.timestamp(millisecondsSince1970: 5_000)) {
            $0.append(contentsOf: ",\"n\":5000".utf8)
        }.bytes
        #expect(last.envelope == expected)
        #expect(last.topic == Array("t/roof".utf8))
    }

    /// Should cost a full ring of packets about their own bytes: no allocation per event,
    /// and at most a chunk of events already let go.
    @Test func aFullRingOfPacketsCostsAboutTheirBytes() {
        var ring = ReplayRing(capacity: 10_000)
        let packet = [UInt8](repeating: 0x2A, count: 60)
        for seq in UInt64(1)...30_000 { ring.append(seq: seq, time: .milliseconds(1_800_000_000_000), record: .receive(packet: packet, backlog: false)) }
        let perEvent = Double(ring.heldBytes) / Double(ring.count)
        // 60 packet bytes, a kind byte, 8 of time and 4 of index: 73.
        #expect(perEvent < 73 * 1.05, "\(perEvent) bytes per event")
    }

    /// Should keep a time that was not made from milliseconds as its text.
    @Test func aTimeGivenAsTextComesBackAsThatText() throws {
        var ring = ReplayRing(capacity: 4)
        ring.append(seq: 1, time: .text("t"), record: .sent(packet: [], requestID: nil))
        ring.append(seq: 2, time: .text("later"), record: .sent(packet: [], requestID: "r-\u{1F60A}"))
        let events = try ring.events(after: 0, limit: 10, head: Self.head, slot: "roof").events
        let envelopes = try events.map { try JSONValue(parsing: $0.envelope) }
        #expect(envelopes.map { $0["time"]?.stringValue } == ["t", "later"])
        #expect(envelopes.map { $0["requestId"] } == [.null, .string("r-\u{1F60A}")])
    }
}

/// Lets `#expect` call the mutating check (the macro cannot mutate a local).
final class WindowBox {
    var window: DuplicateWindow<TestInstant>
    init(_ window: DuplicateWindow<TestInstant>) { self.window = window }
    func isDuplicate(from: UInt32, id: UInt32, now: TestInstant) -> Bool { window.isDuplicate(from: from, id: id, now: now) }
    var count: Int { window.count }
}

@Suite struct DuplicateWindowTests {
    @Test func samePacketWithinTenMinutesIsADuplicate() {
        let window = WindowBox(DuplicateWindow<TestInstant>())
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(0)))
        #expect(window.isDuplicate(from: 1, id: 42, now: .at(599)))
    }

    @Test func samePacketAfterTheWindowIsNew() {
        let window = WindowBox(DuplicateWindow<TestInstant>())
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(0)))
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(600)))
        #expect(window.isDuplicate(from: 1, id: 42, now: .at(601)))
    }

    @Test func sameIDFromAnotherNodeIsNotADuplicate() {
        let window = WindowBox(DuplicateWindow<TestInstant>())
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(0)))
        #expect(!window.isDuplicate(from: 2, id: 42, now: .at(1)))
    }

    @Test func packetsWithoutIDAreNeverDuplicates() {
        let window = WindowBox(DuplicateWindow<TestInstant>())
        #expect(!window.isDuplicate(from: 1, id: 0, now: .at(0)))
        #expect(!window.isDuplicate(from: 1, id: 0, now: .at(0)))
    }

    @Test func memoryStaysBoundedByCapacity() {
        let window = WindowBox(DuplicateWindow<TestInstant>(capacity: 100))
        for id in 1...1000 { _ = window.isDuplicate(from: 1, id: UInt32(id), now: .at(0)) }
        #expect(window.count == 100)
        #expect(window.isDuplicate(from: 1, id: 1000, now: .at(1)), "the newest are kept")
    }

    @Test func entriesStillExpireAfterYearsOfUptime() {
        let window = WindowBox(DuplicateWindow<TestInstant>())
        let years: Int64 = 3 * 365 * 86_400
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(0)))
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(years)))
        #expect(window.isDuplicate(from: 1, id: 42, now: .at(years + 599)))
        #expect(!window.isDuplicate(from: 1, id: 42, now: .at(years + 600)))
        #expect(window.count == 1)
    }

    @Test func expiredEntriesAreForgotten() {
        let window = WindowBox(DuplicateWindow<TestInstant>())
        for id in 1...50 { _ = window.isDuplicate(from: 9, id: UInt32(id), now: .at(Int64(id))) }
        _ = window.isDuplicate(from: 9, id: 999, now: .at(625))
        #expect(window.count == 26, "ids heard at 25…50 s are still within 600 s of 625 s, plus the new one")
    }
}

@Suite struct SendLedgerTests {
    typealias Ledger = SendLedger<TestInstant>
    var ledger = Ledger()

    /// Reserves and accepts a send, as the slot does once the outbox took it; returns its `queued`.
    mutating func accept(_ packetID: UInt32, requestID: String? = nil, wantAck: Bool = true, ttl: Duration = .seconds(60), now: TestInstant = .at(0)) -> [Ledger.Update] {
        ledger.reserve(packetID: packetID, requestID: requestID, wantAck: wantAck, ttl: ttl, now: now)
        return ledger.accept(packetID: packetID)
    }

    @Test mutating func sendWithAckGoesQueuedSentAcked() {
        #expect(accept(7, requestID: "a").map(\.status.status) == [.queued])
        let sent = ledger.written(packetID: 7)
        #expect(sent?.status.status == .sent && sent?.isTerminal == false, "sent is not the end of a send waiting for its ACK")
        #expect(ledger.routingReply(requestID: 7, error: nil) == .init(packetID: 7, requestID: "a", status: .acked))
        #expect(ledger.pending == 0)
        #expect(ledger.routingReply(requestID: 7, error: nil) == nil, "one terminal status only")
    }

    @Test mutating func aReservedSendIsSilentUntilAccepted() {
        ledger.reserve(packetID: 7, requestID: nil, wantAck: true, ttl: .seconds(5), now: .at(0))
        #expect(ledger.contains(7), "its id is taken")
        #expect(ledger.nextDeadline == nil, "nothing to expire before the outbox took it")
        #expect(ledger.failAll(error: "shutdown").isEmpty, "never queued, never failed")
    }

    @Test mutating func aSendTheOutboxRefusedFreesItsIDWithoutAStatus() {
        ledger.reserve(packetID: 7, requestID: nil, wantAck: true, ttl: .seconds(5), now: .at(0))
        ledger.release(packetID: 7)
        #expect(!ledger.contains(7))
        #expect(ledger.accept(packetID: 7).isEmpty)
    }

    @Test mutating func aWriteThatOvertakesTheAcceptanceIsReportedRightAfterQueued() {
        ledger.reserve(packetID: 7, requestID: "r", wantAck: false, ttl: .seconds(5), now: .at(0))
        #expect(ledger.written(packetID: 7) == nil, "held back until queued is said")
        let updates = ledger.accept(packetID: 7)
        #expect(updates.map(\.status.status) == [.queued, .sent])
        #expect(updates.last?.isTerminal == true)
        #expect(ledger.pending == 0)
    }

    @Test mutating func routingErrorIsANakWithItsName() {
        _ = accept(7)
        _ = ledger.written(packetID: 7)
        #expect(ledger.routingReply(requestID: 7, error: "MAX_RETRANSMIT") == .init(packetID: 7, status: .nak, error: "MAX_RETRANSMIT"))
    }

    @Test mutating func explicitNoneIsAnAck() {
        _ = accept(7)
        _ = ledger.written(packetID: 7)
        #expect(ledger.routingReply(requestID: 7, error: "NONE")?.status.status == .acked)
    }

    @Test mutating func sendWithoutAckEndsAtSent() {
        _ = accept(7, wantAck: false)
        let sent = ledger.written(packetID: 7)
        #expect(sent?.status.status == .sent && sent?.isTerminal == true)
        #expect(ledger.pending == 0)
        #expect(ledger.expire(now: .at(3600)).expired.isEmpty)
    }

    @Test mutating func queuedSendPastItsTTLIsTakenOutOfTheOutboxThenExpires() {
        _ = accept(7, requestID: "r", ttl: .seconds(5))
        #expect(ledger.nextDeadline == .at(5))
        #expect(ledger.expire(now: .at(4)) == ([], []))
        #expect(ledger.expire(now: .at(5)) == ([], [7]), "still in the outbox: it is taken out first")
        #expect(ledger.nextDeadline == nil, "no timer while it is being taken out")
        #expect(ledger.removedFromOutbox(packetID: 7) == .init(packetID: 7, requestID: "r", status: .expired))
        #expect(ledger.written(packetID: 7) == nil, "a write after expiry changes nothing")
    }

    @Test mutating func sendHeldByTheWriterIsNotExpiredUnderIt() {
        _ = accept(7, ttl: .seconds(5))
        #expect(ledger.expire(now: .at(6)).waiting == [7])
        #expect(ledger.nextDeadline == nil)
        ledger.heldByWriter(packetID: 7, now: .at(6))
        #expect(ledger.nextDeadline == TestInstant.at(6).advanced(by: Ledger.recheckDelay), "looked at again shortly")
        #expect(ledger.written(packetID: 7)?.status.status == .sent, "the writer had it")
        #expect(ledger.expire(now: .at(7)).expired.map(\.status.status) == [.expired], "sent, never answered")
    }

    @Test mutating func aSendTheWriterPutBackIsTakenOutAtTheNextLook() {
        _ = accept(7, ttl: .seconds(5))
        _ = ledger.expire(now: .at(5))
        ledger.heldByWriter(packetID: 7, now: .at(5))
        let recheck = TestInstant.at(5).advanced(by: Ledger.recheckDelay)
        #expect(ledger.expire(now: recheck) == ([], [7]), "back in the outbox (its write failed, or it was too soon): taken out now")
        #expect(ledger.removedFromOutbox(packetID: 7)?.status.status == .expired)
    }

    @Test mutating func aSendReservedWhenTheSlotStopsFailsOnceAccepted() {
        ledger.reserve(packetID: 7, requestID: "late", wantAck: true, ttl: .seconds(5), now: .at(0))
        #expect(ledger.failAll(error: "slot_removed").isEmpty, "nothing said for it yet")
        #expect(ledger.accept(packetID: 7).map(\.status.status) == [.queued, .failed])
        #expect(ledger.pending == 0)
    }

    @Test mutating func ackForAnUnknownOrUnwrittenPacketIsIgnored() {
        #expect(ledger.routingReply(requestID: 99, error: nil) == nil)
        _ = accept(7, ttl: .seconds(5))
        #expect(ledger.routingReply(requestID: 7, error: nil) == nil, "not written yet: not ours to settle")
    }

    @Test mutating func refusedPacketFails() {
        _ = accept(7, ttl: .seconds(5))
        _ = ledger.written(packetID: 7)
        #expect(ledger.refused(packetID: 7, error: "queue_status_res_3")?.status.status == .failed)
    }

    @Test mutating func shutdownFailsEverySendInFlightOnce() {
        for id in 1...3 { _ = accept(UInt32(id), ttl: .seconds(5)) }
        _ = ledger.written(packetID: 2)
        let updates = ledger.failAll(error: "shutdown")
        #expect(updates.map(\.status.packetId) == [1, 2, 3])
        #expect(updates.allSatisfy { $0.status.status == .failed && $0.status.error == "shutdown" })
        #expect(ledger.failAll(error: "shutdown").isEmpty)
    }

    @Test mutating func theNextDeadlineIsTheSoonestAcceptedOne() {
        _ = accept(1, ttl: .seconds(30))
        _ = accept(2, ttl: .seconds(10))
        _ = accept(3, ttl: .seconds(20))
        #expect(ledger.nextDeadline == .at(10))
    }
}
