import NIOCore
import NIOPosix
import Synchronization

/// The continuous clock, with its sleeps kept as timers on a NIO event loop.
///
/// On Linux, a `Task.sleep` (or `ContinuousClock.sleep`) runs on libdispatch's pool, whose
/// timer thread, once the pool has been used, wakes every second for good. The daemon runs its
/// tasks on NIO's loops instead (see `MeshBusCommand`), and this clock keeps its sleeps there
/// too: a loop arms one timer for its earliest deadline and otherwise sleeps, so idle slots cost
/// only their own probes and heartbeats.
public struct EventLoopClock: Clock {
    public typealias Instant = ContinuousClock.Instant

    private let eventLoop: any EventLoop

    /// A clock whose timers run on `eventLoop` (by default one of NIO's shared loops).
    public init(eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.any()) {
        self.eventLoop = eventLoop
    }

    public var now: Instant { .now }

    public var minimumResolution: Duration { ContinuousClock().minimumResolution }

    /// Returns at `deadline`, or throws `CancellationError` as soon as the task is cancelled.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try Task.checkCancellation()
        let timer = PendingTimer()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let delay = Instant.now.duration(to: deadline)
                let scheduled = eventLoop.scheduleTask(in: .nanoseconds(delay.nanosecondsClamped)) {}
                scheduled.futureResult.whenComplete { result in
                    switch result {
                    case .success: continuation.resume()
                    case .failure: continuation.resume(throwing: CancellationError())
                    }
                }
                let cancelledAlready = timer.state.withLock { state in
                    guard case .waiting = state else { return true }
                    state = .scheduled(scheduled)
                    return false
                }
                if cancelledAlready { scheduled.cancel() }
            }
        } onCancel: {
            let scheduled = timer.state.withLock { state -> Scheduled<Void>? in
                defer { state = .cancelled }
                guard case .scheduled(let scheduled) = state else { return nil }
                return scheduled
            }
            scheduled?.cancel()
        }
    }

    /// A sleep's timer as its cancellation handler sees it: not armed yet, armed, or cancelled.
    private final class PendingTimer: Sendable {
        enum State {
            case waiting
            case scheduled(Scheduled<Void>)
            case cancelled
        }

        let state = Mutex(State.waiting)
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to what an `Int64` holds (a deadline centuries away waits "forever").
    fileprivate var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        guard seconds < Int64.max / 1_000_000_000, seconds > Int64.min / 1_000_000_000 else {
            return seconds > 0 ? .max : .min
        }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
