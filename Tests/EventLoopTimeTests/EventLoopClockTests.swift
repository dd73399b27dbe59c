import EventLoopTime
import NIOPosix
import Testing

/// The broker's clock: sleeps are event-loop timers that end at or after their deadline, in
/// deadline order, and at once when their task is cancelled.
@Suite struct EventLoopClockTests {
    private static func withClock<T>(_ body: (EventLoopClock) async throws -> T) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let result = try await body(EventLoopClock(eventLoop: group.next()))
            try await group.shutdownGracefully()
            return result
        } catch {
            try await group.shutdownGracefully()
            throw error
        }
    }

    @Test func aSleepEndsNoEarlierThanItsDeadline() async throws {
        try await Self.withClock { clock in
            for milliseconds in [0, 1, 5, 20] {
                let deadline = clock.now.advanced(by: .milliseconds(milliseconds))
                try await clock.sleep(until: deadline)
                #expect(clock.now >= deadline, "slept until +\(milliseconds) ms")
            }
        }
    }

    @Test func aDeadlineAlreadyPastReturnsWithoutWaitingForAnything() async throws {
        try await Self.withClock { clock in
            try await clock.sleep(until: clock.now.advanced(by: .seconds(-5)))
        }
    }

    @Test func sleepsOnOneLoopEndInDeadlineOrder() async throws {
        let order = try await Self.withClock { clock in
            let start = clock.now
            return try await withThrowingTaskGroup(of: Int.self) { group in
                // Started in reverse order of their deadlines.
                for index in (0..<5).reversed() {
                    group.addTask {
                        try await clock.sleep(until: start.advanced(by: .milliseconds(100 + 100 * index)))
                        return index
                    }
                }
                var order: [Int] = []
                for try await index in group { order.append(index) }
                return order
            }
        }
        #expect(order == [0, 1, 2, 3, 4])
    }

    @Test func cancellingASleepEndsItWithCancellationError() async throws {
        try await Self.withClock { clock in
            // Some 30,000 years away: beyond what a loop's timer holds, so it waits "forever".
            let sleeper = Task { try await clock.sleep(until: clock.now.advanced(by: .seconds(1_000_000_000_000))) }
            // Most likely armed by then; cancelled before or after, the answer is the same.
            try await clock.sleep(for: .milliseconds(50))
            sleeper.cancel()
            let outcome = await withTaskGroup(of: String.self) { group in
                group.addTask {
                    do {
                        try await sleeper.value
                        return "returned"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "threw \(error)"
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(30))
                    return "still sleeping 30 s after the cancel"
                }
                defer { group.cancelAll() }
                return await group.next() ?? "nothing"
            }
            #expect(outcome == "cancelled")
        }
    }

    @Test(.timeLimit(.minutes(1))) func aTaskCancelledBeforeItSleepsThrowsAtOnce() async throws {
        try await Self.withClock { clock in
            let sleeper = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                try await clock.sleep(until: clock.now.advanced(by: .seconds(3_600)))
            }
            await #expect(throws: CancellationError.self) { try await sleeper.value }
        }
    }
}
