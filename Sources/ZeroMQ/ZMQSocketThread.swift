import Foundation
import Synchronization

/// A dedicated thread that owns a set of libzmq sockets for their whole life.
///
/// This is the bridge between Swift concurrency and libzmq: sockets are created, used and
/// closed on this one thread; async code hands it work through a lock-protected queue and
/// wakes it with ``ZMQWakeup``; it hands results back through `AsyncStream` continuations,
/// which are safe to call from any thread.
public final class ZMQSocketThread: Sendable {
    private let stopRequested = Mutex(false)
    private let finished = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    /// Wakes the thread; its loop polls ``ZMQWakeup/descriptor``.
    public let wakeup: ZMQWakeup

    /// Starts `body` on a new thread named `name`, polling `wakeup`, and waits until it calls `ready` (after
    /// binding its sockets). A setup error thrown by `body` before `ready` is rethrown here.
    /// `body` runs its loop until ``isStopRequested`` turns true, then closes its sockets.
    public static func start<Setup: Sendable>(
        name: String,
        wakeup: ZMQWakeup,
        body: @escaping @Sendable (ZMQSocketThread, _ ready: @escaping @Sendable (Setup) -> Void) throws -> Void
    ) throws -> (ZMQSocketThread, Setup) {
        let socketThread = ZMQSocketThread(wakeup: wakeup)
        let outcome = Mutex<Result<Setup, any Error>?>(nil)
        let started = DispatchSemaphore(value: 0)
        let thread = Thread {
            do {
                try body(socketThread) { setup in
                    outcome.withLock { $0 = .success(setup) }
                    started.signal()
                }
            } catch {
                let first = outcome.withLock { result -> Bool in
                    guard result == nil else { return false }
                    result = .failure(error)
                    return true
                }
                if first { started.signal() }
            }
            socketThread.markFinished()
        }
        thread.name = name
        thread.start()
        started.wait()
        let setup = try outcome.withLock { $0! }.get()
        return (socketThread, setup)
    }

    private init(wakeup: ZMQWakeup) {
        self.wakeup = wakeup
    }

    /// True once ``stop()`` was called; the loop checks it after every wake-up.
    public var isStopRequested: Bool { stopRequested.withLock { $0 } }

    /// Asks the loop to end and waits until the thread has closed its sockets.
    public func stop() async {
        stopRequested.withLock { $0 = true }
        wakeup.signal()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = finished.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func markFinished() {
        let waiters = finished.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
