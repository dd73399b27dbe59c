import Foundation
import MeshBusModel
import MeshBusTestSupport
import MeshtasticProtocol
import RadioLink
@testable import SlotCore
import Testing

/// The replay ring keeps events in compact form and writes their envelopes again on `replay`:
/// over the whole fidelity corpus (the FromRadio messages `test_fidelity.py` checks against
/// the official Python client), what comes back must be byte for byte what was published.
@Suite struct ReplayFidelityTests {
    /// The corpus shared with the interop tests: `name<TAB>hex` lines.
    static let corpus: [(name: String, message: Meshtastic_FromRadio, raw: [UInt8])] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../interop/corpus/fromradio.txt").standardizedFileURL
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let tab = line.firstIndex(of: "\t") else { return nil }
            let hex = line[line.index(after: tab)...]
            var raw: [UInt8] = []
            var index = hex.startIndex
            while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
                guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
                raw.append(byte)
                index = next
            }
            guard let message = try? Meshtastic_FromRadio(serializedBytes: raw) else { return nil }
            return (String(line[..<tab]), message, raw)
        }
    }()

    typealias Core = SlotCore<MockClock.Instant>

    /// Every kind of event the slot publishes, fed from the corpus; returns what was published.
    static func feed(_ core: inout Core) -> [SlotEvent] {
        var actions: [Core.Action] = []
        var milliseconds: Int64 = 1_796_000_000_123
        func input(_ input: Core.Input) {
            milliseconds += 1_357
            core.handle(input, at: .init(instant: .ms(milliseconds), millisecondsSince1970: milliseconds), into: &actions)
        }
        input(.link(.stateChanged(.connecting(attempt: 1), previous: .idle)))
        input(.link(.established(.init(myNodeNum: 0x1A2B_3C4D, firmware: "2.7.15", nodeCount: 3, attempt: 1))))
        for (index, entry) in corpus.enumerated() {
            input(.link(.fromRadio(entry.message, raw: entry.raw, backlog: index % 3 == 0)))
            if case .packet(var packet)? = entry.message.payloadVariant {
                // The same packet as one of our sends, as the radio link reports it written.
                packet.id = UInt32(index + 1)
                let reserved = core.reserve(packet, requestID: index % 2 == 0 ? "corpus-\(entry.name)" : nil, ttl: .seconds(60), keepingID: true, at: .ms(milliseconds))
                input(.accepted(packetID: reserved.id))
                input(.link(.sent(OutgoingPacket(packet: reserved, requestID: index % 2 == 0 ? "corpus-\(entry.name)" : nil))))
            }
        }
        input(.link(.logLine("a log line with \"quotes\" and ünïcode")))
        input(.link(.lost(.probeStrikes)))
        input(.stop(error: "shutdown"))
        return actions.compactMap { action in
            guard case .publish(let event) = action else { return nil }
            return event
        }
    }

    @Test func theCorpusIsThere() {
        #expect(Self.corpus.count > 80, "the fidelity corpus was not found next to the interop tests")
    }

    /// Should give back every event of the corpus exactly as it was published: topic frame,
    /// envelope and raw packet.
    @Test func replayedEventsAreByteForByteThePublishedOnes() throws {
        var core = Core(settings: .init(name: "roof", envelopeHead: Envelope.head(broker: "00112233aabbccdd", slot: "roof"), replayCapacity: 100_000, seed: 7))
        let published = Self.feed(&core)
        let replayed = try core.events(after: 0, limit: .max).events
        #expect(published.count > 150)
        #expect(replayed.count == published.count)
        let topics = Set(published.map { String(String(decoding: $0.topic, as: UTF8.self).split(separator: "/")[0]) })
        #expect(topics.isSuperset(of: [MeshBus.Topic.receive, MeshBus.Topic.sent, MeshBus.Topic.nodeUpdated, MeshBus.Topic.sendStatus, MeshBus.Topic.state, MeshBus.Topic.log]))
        for (live, again) in zip(published, replayed) where live != again {
            Issue.record("seq \(live.seq) differs:\n\(String(decoding: live.envelope, as: UTF8.self))\n\(String(decoding: again.envelope, as: UTF8.self))")
        }
    }

    /// Should give back the same bytes from a ring that has wrapped many times.
    @Test func aWrappedRingGivesBackTheNewestEventsUnchanged() throws {
        var core = Core(settings: .init(name: "roof", envelopeHead: Envelope.head(broker: "00112233aabbccdd", slot: "roof"), replayCapacity: 50, seed: 7))
        let published = Self.feed(&core)
        let replayed = try core.events(after: published[published.count - 51].seq, limit: .max).events
        #expect(replayed == Array(published.suffix(50)))
    }
}
