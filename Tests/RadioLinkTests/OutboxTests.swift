import MeshBusTestSupport
import MeshtasticProtocol
@testable import RadioLink
import Testing

/// The outbox the slot's links share, and what the shutdown flush waits on.
@Suite struct OutboxTests {
    func item(_ id: UInt32) -> OutgoingPacket {
        OutgoingPacket(packet: .with { $0.id = id }, requestID: nil)
    }

    /// Should not call itself drained while the writer holds a packet it may still put back.
    @Test func drainedOnlyOnceTheHeldPacketIsWritten() async throws {
        let outbox = Outbox(capacity: 4)
        #expect(outbox.enqueue(item(1)))
        let held = try #require(await outbox.next())
        #expect(outbox.count == 0 && !outbox.isDrained, "nothing waits, but the writer holds one")
        // Too soon for its port: the writer puts it back, as the pacing does, and takes it again.
        outbox.requeueFront(held)
        #expect(try #require(await outbox.next()).packet.id == 1)
        #expect(!outbox.isDrained)
        try await expectWriteDrains(outbox)
    }

    /// Waits for the outbox to drain while the writer reports its write: the wait must end.
    func expectWriteDrains(_ outbox: Outbox) async throws {
        let drained = Recorder<Int>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await outbox.waitUntilEmpty()
                drained.append(1)
            }
            outbox.written()
            #expect(outbox.isDrained)
            try await drained.wait("the flush to see the outbox drained") { $0.count == 1 }
            try await group.waitForAll()
        }
    }

    /// Should answer at once when nothing waits and nothing is held.
    @Test func anEmptyOutboxIsDrainedAtOnce() async {
        await Outbox(capacity: 1).waitUntilEmpty()
    }

    /// Should count a packet handed straight to a waiting writer as held.
    @Test func aPacketHandedToTheWaitingWriterIsHeld() async throws {
        let outbox = Outbox(capacity: 1)
        async let taken = outbox.next()
        // Give the writer's wait a chance to start; either way the packet ends up held.
        await Task.yield()
        #expect(outbox.enqueue(item(5)))
        #expect(await taken?.packet.id == 5)
        #expect(!outbox.isDrained)
        try await expectWriteDrains(outbox)
    }
}
