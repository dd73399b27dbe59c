import Foundation
import MeshBusModel
import Testing

/// What the broker writes (``JSONValueConvertible``) is what clients read (`Codable`): every
/// model goes through its JSON and back unchanged, so the two sides cannot drift apart.
@Suite struct WireModelTests {
    static func roundTrip<T: JSONValueConvertible & Decodable & Equatable>(_ model: T) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(model.jsonValue.jsonBytes))
    }

    static let virtualRadio = MeshBus.VirtualRadioStatus(
        address: "127.0.0.1:4403", allowAdmin: false, clients: 2, connections: 5, turnedAway: 1, lowOnDescriptors: 6, handshakes: 4, packets: 9,
        outboxFull: 0, adminRefused: 1, framesDropped: 3, undecodable: 2, ignored: 1, failedSends: 1
    )

    static let status = MeshBus.SlotStatus(
        state: .degraded, ready: false, strikes: 1, lastProbeOkAgoSeconds: 12.5, lastProbeRoundTripMs: 41.5,
        lastError: "link lost: probe_strikes", attempt: 3, retryInSeconds: nil, reconnects: 2,
        transport: "tcp", myNodeNum: 0x1000_0001, queueDepth: 4, pendingSends: 5, sends: ["acked": 7, "expired": 1], lastSeq: 1042,
        replayHeld: 1000, nodeCount: 7, duplicates: 3, undecodableFrames: 1, virtualClients: 2, virtualRadio: virtualRadio,
        history: [.init(state: .ready, since: "2026-11-29T18:00:00.000Z"), .init(state: .degraded, since: "2026-11-29T18:20:00.500Z")]
    )

    @Test func slotStatusRoundTrips() throws {
        #expect(try Self.roundTrip(Self.status) == Self.status)
        var bare = Self.status
        bare.virtualRadio = nil
        bare.myNodeNum = nil
        #expect(try Self.roundTrip(bare) == bare)
        #expect(bare.jsonValue["virtualRadio"] == .null, "absent is written as null, as before")
        var older = Self.status.jsonValue.objectValue ?? [:]
        older["history"] = nil
        older["lastProbeRoundTripMs"] = nil
        older["lastError"] = nil
        let decoded = try JSONDecoder().decode(MeshBus.SlotStatus.self, from: Data(JSONValue.object(older).jsonBytes))
        #expect(decoded.history == nil && decoded.state == .degraded, "an older broker's status, without history, still decodes")
    }

    @Test func eventModelsRoundTrip() throws {
        let change = MeshBus.LinkStateChange(state: .backoff, previous: .connecting, strikes: 0, attempt: 2, retryInSeconds: 1.5)
        #expect(try Self.roundTrip(change) == change)
        let established = MeshBus.LinkEstablished(myNodeNum: 7, firmware: "2.7.11", nodeCount: 6, attempt: 1)
        #expect(try Self.roundTrip(established) == established)
        let lost = MeshBus.LinkLost(reason: .probeStrikes)
        #expect(try Self.roundTrip(lost) == lost)
        let nak = MeshBus.SendStatus(packetId: 99, requestId: "a1", status: .nak, error: "MAX_RETRANSMIT")
        #expect(try Self.roundTrip(nak) == nak)
        let queued = MeshBus.SendStatus(packetId: 99, requestId: nil, status: .queued)
        #expect(try Self.roundTrip(queued) == queued)
        #expect(queued.jsonValue["requestId"] == .null && queued.jsonValue["error"] == nil)
        let ping = MeshBus.Ping(broker: "9f2c41d07ab3e815", version: "0.1.0", uptimeSeconds: 3.25)
        #expect(try Self.roundTrip(ping) == ping)
        let receipt = MeshBus.SendReceipt(packetId: 2_882_341_127)
        #expect(try Self.roundTrip(receipt) == receipt)
    }

    /// Should keep a state, reason or send status this build does not know, not fail on it.
    @Test func unknownNamesDecodeAsUnknownAndWriteBackUnchanged() throws {
        let decoded = try JSONDecoder().decode(
            MeshBus.LinkStateChange.self, from: Data(#"{"state":"hibernating","previous":"ready"}"#.utf8)
        )
        #expect(decoded.state == .unknown("hibernating"))
        #expect(decoded.previous == .ready)
        #expect(decoded.jsonValue["state"] == .string("hibernating"))
        #expect(MeshBus.LossReason(rawValue: "browser_closed") == .unknown("browser_closed"))
        #expect(MeshBus.SendState(rawValue: "acked") == .acked)
    }

    /// Should spell every known name as design.md does.
    @Test func knownNamesAreTheContracts() {
        #expect(MeshBus.LinkState.allKnown.map(\.rawValue) == [
            "idle", "connecting", "configuring", "ready", "degraded", "cooldown", "backoff", "disconnectedForRestart", "stopped",
        ])
        #expect(MeshBus.LossReason.allKnown.map(\.rawValue) == [
            "probe_strikes", "transport_closed", "write_failed", "init_timeout", "radio_rebooted", "shutdown", "reload", "manual",
            "browser_closed", "port_lost", "taken_over",
        ])
        #expect(MeshBus.SendState.allKnown.map(\.rawValue) == ["queued", "sent", "acked", "nak", "expired", "failed"])
        #expect(MeshBus.LinkState.allKnown.allSatisfy { MeshBus.LinkState(rawValue: $0.rawValue) == $0 })
    }

    @Test func nodeIDsAreBangAndEightHexDigits() {
        #expect(NodeID.format(0xA1B2) == "!0000a1b2")
        #expect(NodeID.format(NodeID.broadcast) == "^all")
        #expect(MeshBus.Node(num: 0x15B6_619C).id == "!15b6619c")
    }
}
