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
}
