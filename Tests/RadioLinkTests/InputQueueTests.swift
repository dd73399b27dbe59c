@testable import RadioLink
import Testing

/// The supervisor's input queue: every item in the order yielded, whether the consumer was
/// waiting or not, and the end once the consumer is cancelled.
@Suite struct InputQueueTests {
    @Test func itemsQueuedBeforeTheConsumerAsksComeOutInOrder() async {
        let queue = InputQueue<Int>()
        for value in 1...100 { queue.yield(value) }
        var taken: [Int] = []
        for _ in 1...100 { taken.append(await queue.next() ?? -1) }
        #expect(taken == Array(1...100))
    }

    @Test func aWaitingConsumerGetsEveryItemOfSeveralProducersInEachProducersOrder() async {
        let queue = InputQueue<Int>()
        let consumer = Task {
            var taken: [Int] = []
            while taken.count < 4_000, let value = await queue.next() { taken.append(value) }
            return taken
        }
        await withTaskGroup(of: Void.self) { group in
            for producer in 0..<4 {
                group.addTask {
                    for index in 0..<1_000 {
                        queue.yield(producer * 1_000 + index)
                        if index % 100 == 0 { await Task.yield() }
                    }
                }
            }
        }
        let taken = await consumer.value
        #expect(taken.count == 4_000)
        for producer in 0..<4 {
            #expect(taken.filter { $0 / 1_000 == producer } == Array(producer * 1_000..<(producer + 1) * 1_000), "producer \(producer)")
        }
    }

    @Test func aCancelledConsumerIsToldTheEnd() async {
        let queue = InputQueue<Int>()
        let consumer = Task { await queue.next() }
        consumer.cancel()
        #expect(await consumer.value == nil)
        queue.yield(1)
        let afterwards = Task { await queue.next() }
        afterwards.cancel()
        #expect(await afterwards.value == nil, "nothing is read after the end")
    }

    /// Starts a consumer taking `count` items and returns it with `queue` claimed, once the
    /// consumer is parked on the empty queue (30 s at most, then the test fails naming that).
    private func claimedWithParkedConsumer(_ queue: InputQueue<Int>, taking count: Int) async throws -> Task<[Int?], Never> {
        let consumer = Task {
            var taken: [Int?] = []
            for _ in 0..<count { taken.append(await queue.next()) }
            return taken
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while !queue.claimIfIdle() {
            try #require(ContinuousClock.now < deadline, "timed out waiting for the consumer to park")
            try await Task.sleep(for: .milliseconds(1))
        }
        return consumer
    }

    @Test func noClaimWhileAnItemIsQueuedOrAnotherClaimHolds() async throws {
        let queue = InputQueue<Int>()
        #expect(!queue.claimIfIdle(), "no consumer is parked yet")
        queue.yield(1)
        #expect(!queue.claimIfIdle(), "an item is queued")
        #expect(await queue.next() == 1)
        let consumer = try await claimedWithParkedConsumer(queue, taking: 1)
        #expect(!queue.claimIfIdle(), "one claim at a time")
        queue.release()
        queue.yield(2)
        #expect(await consumer.value == [2])
    }

    @Test func whatIsYieldedDuringAClaimReachesTheConsumerOnlyAfterTheReleaseInOrder() async throws {
        let queue = InputQueue<Int>()
        let consumer = try await claimedWithParkedConsumer(queue, taking: 2)
        queue.yield(10)
        queue.yield(11)
        #expect(!queue.claimIfIdle(), "the claim holds")
        queue.release()
        #expect(queue.claimIfIdle() == false, "items are queued: a new claim would overtake them")
        #expect(await consumer.value == [10, 11])
    }

    @Test func aConsumerCancelledDuringAClaimGetsItsEndOnTheReleaseNotWhatWasYielded() async throws {
        let queue = InputQueue<Int>()
        let consumer = try await claimedWithParkedConsumer(queue, taking: 1)
        consumer.cancel()
        queue.yield(5)
        queue.release()
        #expect(await consumer.value == [nil])
        #expect(!queue.claimIfIdle(), "a cancelled queue is never claimed")
    }
}
