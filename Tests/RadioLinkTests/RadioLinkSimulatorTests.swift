import Foundation
import MeshBusModel
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Testing

/// The supervisor against the real simulator over real loopback TCP (and a real
/// pseudo-terminal), with real time and short timings: each fault leads to the documented
/// state sequence and back to `ready`. These assert order and counts only; the timing rules
/// (probes, strikes, timeouts) run on the mock clock in ``RadioLinkSupervisorTests``.
@Suite(.timeLimit(.minutes(1))) struct RadioLinkSimulatorTests {
    static let recovery = ["cooldown", "connecting", "configuring", "ready"]

    @Test func linkBecomesReadyAndWritesWhatWasQueuedBeforeIt() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            var packet = Meshtastic_MeshPacket()
            packet.id = 1234
            packet.to = NodeNumber.broadcast
            packet.wantAck = true
            packet.decoded.portnum = .textMessageApp
            packet.decoded.payload = .init("queued before ready".utf8)
            #expect(harness.link.enqueue(OutgoingPacket(packet: packet, requestID: "r1")))
            try await harness.log.wait { events in events.contains { $0.receivedPacket?.decoded.requestID == 1234 } }
            let events = harness.log.events
            #expect(events.stateNames.prefix(3) == ["connecting", "configuring", "ready"])
            let info = try #require(events.established.first)
            #expect(info.myNodeNum == simulator.nodes[0].num)
            #expect(info.nodeCount == 4)
            #expect(info.firmware == VirtualMesh.firmwareVersion)
            #expect(simulator.receivedPackets.map(\.id) == [1234])
        }
    }

    @Test func droppedLinkCoolsDownAndComesBack() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.dropClient()
            try await harness.log.waitForEstablished(2)
            let events = harness.log.events
            #expect(events.losses == [.transportClosed])
            #expect(events.after(established: 1).stateNames == Self.recovery)
            #expect(events.established.map(\.attempt) == [1, 2])
        }
    }

    @Test func secondClientEvictsTheLinkWhichComesBack() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            let intruder = try await TCPRadioTransport(host: "127.0.0.1", port: simulator.port).open()
            try await intruder.channel.close()
            try await harness.log.waitForEstablished(2)
            #expect(harness.log.events.losses == [.transportClosed])
        }
    }

    @Test func olderFirmwareIgnoringHeartbeatsIsProbedByAdminRequestAndStaysUp() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            simulator.faults.ignoreHeartbeats = true
            try await harness.log.waitForEstablished(1)
            try await harness.log.wait(forCount: 4) { event in
                guard let packet = event.receivedPacket, case .decoded(let data)? = packet.payloadVariant else { return false }
                return data.portnum == .adminApp && data.requestID != 0
            }
            #expect(harness.log.events.losses.isEmpty, "a strike answered by the admin probe is not a loss")
            #expect(simulator.counters.adminRequests >= 4)
        }
    }

    @Test func garbageOnTheLineIsSkippedAndTheLinkStaysReady() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            // Text, an oversize header, noise that reads as a header, and a well-formed frame that
            // is no FromRadio (field 2, the packet, holding bytes that are no MeshPacket).
            simulator.sendGarbage(
                Array("boot noise\r\n".utf8) + [0x94, 0xC3, 0xFF, 0xFF, 0x00] + [0x94, 0xC3, 0x01, 0x00, 0xFF, 0xFF] + [0x94, 0xC3, 0x00, 0x04, 0x12, 0x02, 0xFF, 0xFF]
            )
            let sent = simulator.emit(.text)
            try await harness.log.wait { events in events.contains { $0.receivedPacket?.id == sent.id } }
            let events = harness.log.events
            #expect(events.contains { $0.isLogLine })
            #expect(events.contains { if case .undecodableFrame = $0 { true } else { false } })
            #expect(events.losses.isEmpty)
        }
    }

    @Test func rebootedRadioIsALossAndTheLinkComesBack() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.reboot()
            try await harness.log.waitForEstablished(2)
            let events = harness.log.events
            #expect(events.losses == [.radioRebooted])
            #expect(events.after(established: 1).stateNames == Self.recovery)
        }
    }

    @Test func refusedConnectionsBackOffUntilTheRadioIsBack() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.goOffline(for: .milliseconds(400))
            try await harness.log.waitForEstablished(2)
            let events = harness.log.events
            #expect(events.losses == [.transportClosed])
            let waits = events.after(established: 1).states.compactMap { state -> Duration? in
                if case .backoff(_, let delay) = state { delay } else { nil }
            }
            #expect(waits.count >= 2, "refused attempts back off: \(events.after(established: 1).stateNames)")
            #expect(waits.last! > waits.first!, "the backoff grows: \(waits)")
        }
    }

    @Test func serialRadioOverAPseudoTerminalVanishesAndReappears() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("ttyMESH0").path
        let simulator = try RadioSimulator.startSerial(.quiet, devicePath: path)
        try await LinkHarness.run(simulator: simulator, transport: SerialRadioTransport(path: path)) { harness in
            try await harness.log.waitForEstablished(1)
            #expect(harness.log.events.contains { $0.isLogLine }, "debug text between frames becomes log lines")
            let sent = simulator.emit(.text)
            try await harness.log.wait { events in events.contains { $0.receivedPacket?.id == sent.id } }
            simulator.goOffline(for: .milliseconds(300))
            try await harness.log.waitForEstablished(2)
            let events = harness.log.events
            #expect(events.losses == [.transportClosed])
            let polls = events.after(established: 1).states.filter { $0.retryIn == LinkTiming.fast.disconnectedPollInterval }
            #expect(!polls.isEmpty, "an absent device is polled: \(events.after(established: 1).stateNames)")
            #expect(harness.link.transport.kind == "serial")
        }
    }

    @Test func absentSerialDeviceIsPolledUntilItAppears() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("ttyMESH1").path
        let simulator = try RadioSimulator.startSerial(.quiet, devicePath: path)
        simulator.goOffline(for: .milliseconds(300))
        try await LinkHarness.run(simulator: simulator, transport: SerialRadioTransport(path: path)) { harness in
            try await harness.log.waitForEstablished(1)
            let waits = harness.log.events.states.compactMap(\.retryIn)
            #expect(waits.count >= 2 && waits.allSatisfy { $0 == LinkTiming.fast.disconnectedPollInterval }, "\(waits)")
        }
    }

    @Test func disconnectForRestartHoldsTheRadioClosedUntilReconnect() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            harness.link.disconnectForRestart(settle: .milliseconds(50))
            try await harness.log.wait { $0.stateNames.last == "disconnectedForRestart" }
            harness.link.reconnect()
            try await harness.log.waitForEstablished(2)
            let events = harness.log.events
            #expect(events.losses == [.manual])
            #expect(events.after(established: 1).stateNames == ["disconnectedForRestart", "connecting", "configuring", "ready"])
        }
    }
}

/// The simulator's fault-control language (what `meshbus sim --control` accepts).
@Suite struct SimulatorControlTests {
    @Test func controlSwitchesFaultsAndReportsThem() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        let reply = simulator.control(.object(["fault": .string("slow"), "ms": .int(250)]))
        #expect(reply["ok"] == .bool(true))
        #expect(reply["faults"]?["answerDelayMs"] == .int(250))
        #expect(simulator.faults.answerDelay == .milliseconds(250))
        _ = simulator.control(.object(["fault": .string("stall")]))
        #expect(simulator.faults.stalled)
        _ = simulator.control(.object(["fault": .string("clear")]))
        #expect(simulator.faults == SimulatorFaults())
    }

    @Test(arguments: [
        (JSONValue.string("drop"), "JSON object"),
        (.object([:]), "missing 'fault'"),
        (.object(["fault": .string("melt")]), "unknown fault 'melt'"),
        (.object(["fault": .string("offline")]), "'seconds'"),
        (.object(["fault": .string("slow"), "ms": .string("lots")]), "'ms'"),
        (.object(["fault": .string("garbage"), "bytes": .int(0)]), "'bytes'"),
        (.object(["emit": .string("spam")]), "'emit' must be one of"),
    ])
    func badControlRequestsAreRefusedByName(request: JSONValue, message: String) async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        let reply = simulator.control(request)
        #expect(reply["ok"] == .bool(false))
        #expect(reply["error"]?.stringValue?.contains(message) == true, "\(reply.jsonString)")
        #expect(simulator.faults == SimulatorFaults(), "a refused request changes nothing")
    }
}
