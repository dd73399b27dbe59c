import Foundation
import MeshBusModel
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Testing

/// The supervisor against the real simulator over real loopback TCP (and a real
/// pseudo-terminal), with real time and short timings: each fault leads to the documented
/// state sequence and back to `ready`.
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

    @Test func stalledRadioIsDeclaredDeadByProbeStrikesAndRecovers() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            let stalledAt = ContinuousClock.now
            simulator.faults.stalled = true
            try await harness.log.wait { $0.losses.count == 1 }
            let detected = ContinuousClock.now
            simulator.faults.stalled = false
            try await harness.log.waitForEstablished(2)
            let recovered = ContinuousClock.now
            let events = harness.log.events
            #expect(events.losses == [.probeStrikes])
            #expect(events.after(established: 1).stateNames == ["degraded"] + Self.recovery)
            #expect(events.states.contains(.degraded(attempt: 1, strikes: 1)))
            let timing = LinkTiming.fast
            print(
                "stalled radio (probe every \(timing.healthCheckInterval), timeout \(timing.probeTimeout), \(timing.maxStrikes) strikes): "
                    + "detected after \(stalledAt.duration(to: detected)), ready again \(detected.duration(to: recovered)) after it answered"
            )
        }
    }

    @Test func slowRadioWithinTheProbeTimeoutStaysReady() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.faults.answerDelay = .milliseconds(60)
            try await harness.log.wait(forCount: 6) { $0.isQueueStatus }
            let events = harness.log.events
            #expect(events.losses.isEmpty)
            #expect(!events.stateNames.contains("degraded"))
            #expect(harness.link.status.sinceLastProbeSuccess != nil)
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

    @Test func handshakeThatNeverFinishesTimesOutAndIsRetried() async throws {
        let simulator = try await RadioSimulator.start(.quiet)
        try await LinkHarness.run(simulator: simulator) { harness in
            try await harness.log.waitForEstablished(1)
            simulator.faults.withholdConfigComplete = true
            simulator.dropClient()
            try await harness.log.wait { $0.after(established: 1).stateNames.filter { $0 == "backoff" }.count >= 1 }
            simulator.faults.withholdConfigComplete = false
            try await harness.log.waitForEstablished(2)
            let names = harness.log.events.after(established: 1).stateNames
            #expect(Array(names.prefix(4)) == ["cooldown", "connecting", "configuring", "backoff"], "init timeout: \(names)")
            #expect(simulator.counters.handshakes >= 3)
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
