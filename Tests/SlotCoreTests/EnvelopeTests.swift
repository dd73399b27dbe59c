import Foundation
import MeshBusModel
import MeshtasticProtocol
import SlotCore
import Testing

@Suite struct EnvelopeTests {
    @Test func envelopeCarriesEveryContractFieldFirst() throws {
        let bytes = Envelope.bytes(broker: "00112233aabbccdd", slot: "roof", topic: MeshBus.Topic.receive, seq: 7, time: "t", fields: ["backlog": .bool(false)])
        let envelope = try JSONValue(parsing: bytes)
        #expect(envelope.objectValue?.keys == ["schema", "broker", "slot", "topic", "seq", "time", "backlog"])
        #expect(envelope["schema"] == .number("1"))
        #expect(envelope["seq"] == .number("7"))
        #expect(envelope["backlog"] == .bool(false))
    }

    @Test func fieldsNeverReplaceOrRepeatTheEnvelopesOwnKeys() throws {
        let bytes = Envelope.bytes(broker: "00112233aabbccdd", slot: "roof", topic: MeshBus.Topic.clientNotification, seq: 3, time: "t",
                                   fields: ["time": .int(1_763_900_000), "seq": .int(99), "message": .string("hi")])
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.components(separatedBy: "\"time\":").count == 2, "one time key: \(text)")
        #expect(text.components(separatedBy: "\"seq\":").count == 2, "one seq key: \(text)")
        let envelope = try JSONValue(parsing: bytes)
        #expect(envelope["time"] == .string("t"))
        #expect(envelope["seq"] == .number("3"))
        #expect(envelope["message"] == .string("hi"))
    }

    @Test func topicFramesAllowPrefixSelection() {
        #expect(MeshBus.Topic.frame(MeshBus.Topic.receive, slot: "roof", port: "TEXT_MESSAGE_APP") == Array("meshtastic.receive/roof/TEXT_MESSAGE_APP".utf8))
        #expect(MeshBus.Topic.frame(MeshBus.Topic.lost, slot: "roof") == Array("meshtastic.connection.lost/roof".utf8))
    }

    @Test func aTopicFrameCarriesASlotNameInUTF8() {
        #expect(MeshBus.Topic.frame(MeshBus.Topic.receive, slot: "garten-süd", port: "POSITION_APP") == Array("meshtastic.receive/garten-süd/POSITION_APP".utf8))
    }

    @Test func timestampIsUTCWithMilliseconds() {
        #expect(Envelope.timestamp(millisecondsSince1970: 1_795_370_400_123) == "2026-11-22T18:00:00.123Z")
        #expect(Envelope.timestamp(millisecondsSince1970: 0) == "1970-01-01T00:00:00.000Z")
    }

    /// Should agree with the C library's calendar on every day from 1970 to 2200 (leap
    /// years, centuries, 2000) and at random instants within them.
    @Test func timestampAgreesWithGmtime() {
        var generator = SeededGenerator(seed: 20_261_130)
        let days = (0..<84_000).map { Int64($0) * 86_400_000 + 86_399_999 }
        let random = (0..<20_000).map { _ in Int64.random(in: 0...7_258_118_400_000, using: &generator) }
        for milliseconds in days + random {
            var whole = time_t(milliseconds / 1000)
            var parts = tm()
            gmtime_r(&whole, &parts)
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                parts.tm_hour, parts.tm_min, parts.tm_sec, Int32(milliseconds % 1000)
            )
            guard Envelope.timestamp(millisecondsSince1970: milliseconds) == expected else {
                Issue.record("\(milliseconds): \(Envelope.timestamp(millisecondsSince1970: milliseconds)) ≠ \(expected)")
                return
            }
        }
    }

    @Test func brokerIDIsSixteenHexDigitsAndFresh() {
        let first = Envelope.makeBrokerID()
        #expect(first.count == 16)
        #expect(first.allSatisfy { $0.isHexDigit })
        #expect(first != Envelope.makeBrokerID())
    }
}
