import Broker
import Foundation
import MeshBusClient
import MeshBusModel
import MeshBusTestSupport
import RadioLink
import RadioSimulator
import Synchronization
import Testing

/// Counts events and lets every `every`th one vanish, as a consumer past its high-water mark would.
private final class DropEvery: Sendable {
    private let seen = Mutex(0)
    private let every: Int

    init(_ every: Int) { self.every = every }

    func keep(_ event: MeshBusEvent) -> Bool {
        seen.withLock { count in
            count += 1
            return count % every != 0
        }
    }
}

// Serialized: with four brokers and simulators starting and stopping in parallel, one run in
// about five trapped in NIO ("Deinited NIOAsyncWriter without calling finish()"), which looks
// like the window swift-nio #3481 describes; one at a time, 40 runs passed.
@Suite(.serialized, .timeLimit(.minutes(1))) struct MeshBusClientTests {
    /// A real broker with one slot `radio` on a simulated radio over TCP, and a client of it.
    func withBroker(_ body: (RadioSimulator, MeshBusClient) async throws -> Void) async throws {
        try await BrokerHarness.run { simulator, broker in
            let client = try MeshBusClient(events: broker.eventEndpoints[0], commands: broker.commandEndpoints[0])
            try await body(simulator, client)
            await client.close()
        }
    }

    /// Waits for the first event of `client` that `match` maps to a value.
    func first<T>(_ events: AsyncStream<MeshBusEvent>, _ match: (MeshBusEvent) -> T?) async -> T? {
        for await event in events {
            if let value = match(event) { return value }
        }
        return nil
    }

    /// Returns once the slot is ready and the client's SUB socket hears it: texts are emitted
    /// until one arrives (a SUB joins a moment after it connects), then the stream is drained.
    func waitUntilHeard(_ simulator: RadioSimulator, _ client: MeshBusClient) async throws {
        while try await client.status()["radio"]?.ready != true {
            try await Task.sleep(for: .milliseconds(20))
        }
        while true {
            let probe = simulator.emit(.text)
            let heard = await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for await event in client.events {
                        if case .received(let packet, _) = event.kind, packet.id == probe.id { return true }
                    }
                    return false
                }
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(300))
                    return false
                }
                defer { group.cancelAll() }
                return await group.next() ?? false
            }
            if heard { return }
        }
    }

    @Test func commandsAndEventsAreTyped() async throws {
        try await withBroker { simulator, client in
            try await waitUntilHeard(simulator, client)
            let ping = try await client.ping()
            #expect(ping.broker.count == 16)
            let status = try await client.status()
            #expect(status["radio"]?.ready == true)
            #expect(status["radio"]?.transport == "tcp")
            #expect(status["radio"]?.myNodeNum == simulator.nodes.first?.num)
            let snapshot = try await client.snapshot(slot: "radio")
            #expect(Set(snapshot.nodes.values.map(\.num)) == Set(simulator.nodes.map(\.num)))
            #expect(snapshot.myInfo?.myNodeNum == simulator.nodes.first?.num)

            let receipt = try await client.sendText("typed hello", slot: "radio", wantAck: true)
            #expect(receipt.status == .queued)
            let sent = await first(client.events) { event -> MeshBus.Packet? in
                if case .sent(let packet, _) = event.kind, packet.id == receipt.packetId { return packet } else { return nil }
            }
            #expect(sent?.decoded?.text == "typed hello")
            #expect(sent?.decoded?.portnum == "TEXT_MESSAGE_APP")
            let acked = await first(client.events) { event -> MeshBus.SendStatus? in
                if case .sendStatus(let status) = event.kind, status.packetId == receipt.packetId, status.status == .acked { return status } else { return nil }
            }
            #expect(acked != nil)

            let emitted = simulator.emit(.text)
            let heard = await first(client.events) { event -> (MeshBus.Packet, MeshBusEvent)? in
                if case .received(let packet, _) = event.kind, packet.id == emitted.id { return (packet, event) } else { return nil }
            }
            #expect(heard?.0.from == emitted.from)
            #expect(heard?.1.routingTopic == "meshtastic.receive/radio/TEXT_MESSAGE_APP")
            #expect(heard?.1.packetBytes?.isEmpty == false)
        }
    }

    @Test func brokerErrorsArriveWithTheirCode() async throws {
        try await withBroker { _, client in
            await #expect(throws: MeshBusError.self) { try await client.sendText("x", slot: "nope") }
            do {
                _ = try await client.snapshot(slot: "nope")
                Issue.record("snapshot of an unknown slot succeeded")
            } catch let error as MeshBusError {
                #expect(error.code == "unknown_slot")
                #expect(error.message.contains("radio"))
            }
            let long = String(repeating: "x", count: 300)
            do {
                _ = try await client.sendText(long, slot: "radio")
                Issue.record("an oversize text was accepted")
            } catch let error as MeshBusError {
                #expect(error.code == "text_too_long")
            }
        }
    }

    @Test func aCommandThatTimedOutWithoutABrokerIsNeverDeliveredLater() async throws {
        let simulator = try await RadioSimulator.start(
            SimulatorConfiguration(nodeCount: 2, trafficPerMinute: 0, ackDelay: .milliseconds(20), textRateLimit: .zero)
        )
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-late-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = "ipc://\(directory.path)/events", commands = "ipc://\(directory.path)/commands"
        var options = MeshBusClient.Options()
        options.commandTimeout = .milliseconds(200)
        let client = try MeshBusClient(events: events, commands: commands, options: options)
        await #expect(throws: MeshBusClientError.timeout(command: "sendText")) {
            try await client.sendText("stale", slot: "radio")
        }
        // The broker comes up where the client was already connecting: the stale send must
        // not be the first thing it gets.
        let slot = SlotConfiguration(name: "radio", source: .tcp(host: "127.0.0.1", port: simulator.port))
        let broker = try await Broker(configuration: BrokerConfiguration(events: [events], commands: [commands], slots: [slot]))
        try await BrokerHarness.run(simulator, broker) {
            var ready = false
            while !ready {
                do { ready = try await client.status()["radio"]?.ready == true } catch MeshBusClientError.timeout {}
            }
            let fresh = try await client.sendText("fresh", slot: "radio")
            let status = try #require(try await client.status()["radio"])
            #expect(status.lastSeq > 0)
            while simulator.receivedPackets.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
            #expect(simulator.receivedPackets.map(\.id) == [fresh.packetId], "only the fresh send reached the radio")
            await client.close()
        }
    }

    @Test func commandWithoutBrokerTimesOut() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-none-\(UUID().uuidString.prefix(8))")
        var options = MeshBusClient.Options()
        options.commandTimeout = .milliseconds(200)
        let client = try MeshBusClient(events: "ipc://\(directory.path)/e", commands: "ipc://\(directory.path)/c", options: options)
        await #expect(throws: MeshBusClientError.timeout(command: "ping")) { try await client.ping() }
        await client.close()
        await #expect(throws: MeshBusClientError.closed) { try await client.ping() }
    }

    @Test func feedRepairsMissedEventsWithReplay() async throws {
        try await withBroker { simulator, client in
            try await waitUntilHeard(simulator, client)
            let dropper = DropEvery(3)
            let feed = MeshBusFeed(client: client, events: client.events.filter { dropper.keep($0) })
            var seq: UInt64 = 0
            var gaps = 0
            var repairs = 0
            var texts = 0
            var emitted = false
            for await update in feed {
                switch update {
                case .snapshot(let slot, let snapshot):
                    #expect(slot == "radio")
                    seq = snapshot.seq
                case .event(let event):
                    #expect(event.seq == seq + 1, "events apply in order without a hole")
                    seq = event.seq
                    if case .received(let packet, _) = event.kind, packet.decoded?.portnum == "TEXT_MESSAGE_APP" { texts += 1 }
                case .gap(_, let at, let after):
                    #expect(at > after + 1)
                    gaps += 1
                case .repaired(_, let at):
                    #expect(at == seq)
                    repairs += 1
                case .resync(_, let reason):
                    Issue.record("unexpected resync: \(reason)")
                }
                if !emitted, case .snapshot = update {
                    emitted = true
                    for _ in 0..<12 { _ = simulator.emit(.text) }
                }
                if texts == 12, gaps == repairs { break }
            }
            #expect(texts == 12)
            #expect(gaps >= 3)
            #expect(repairs == gaps)
        }
    }

    @Test func feedReplaysAGapLongerThanOneReplayPage() async throws {
        try await withBroker { simulator, client in
            try await waitUntilHeard(simulator, client)
            let start = try #require(try await client.status()["radio"]?.lastSeq)
            // Everything from the first event on is lost until seq start + 1,500: more than
            // the 1,000 events one replay reply holds.
            let lost = (start + 1)...(start + 1_500)
            let feed = MeshBusFeed(client: client, events: client.events.filter { !lost.contains($0.seq) })
            var seq: UInt64 = 0
            var repairedAt: UInt64?
            var emitted = false
            for await update in feed {
                switch update {
                case .snapshot(_, let snapshot):
                    seq = snapshot.seq
                case .event(let event):
                    #expect(event.seq == seq + 1, "events apply in order without a hole")
                    seq = event.seq
                case .repaired(_, let at):
                    repairedAt = at
                case .gap:
                    break
                case .resync(_, let reason):
                    Issue.record("unexpected resync: \(reason)")
                }
                if !emitted, case .snapshot = update {
                    emitted = true
                    for _ in 0..<1_000 { _ = simulator.emit(.text) }
                }
                if let repairedAt, seq > repairedAt { break }
            }
            #expect((repairedAt ?? 0) >= lost.upperBound)
        }
    }
}
