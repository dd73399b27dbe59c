import Synchronization

/// Work handed to a ``ZMQSocketThread`` from any thread: a lock-protected queue whose
/// ``post(_:)`` wakes the socket thread through its ``ZMQWakeup``.
public final class ZMQMailbox<Message: Sendable>: Sendable {
    private let queue = Mutex<[Message]>([])
    private let wakeup: ZMQWakeup

    public init(wakeup: ZMQWakeup) {
        self.wakeup = wakeup
    }

    /// Appends a message and wakes the socket thread.
    public func post(_ message: Message) {
        queue.withLock { $0.append(message) }
        wakeup.signal()
    }

    /// Everything posted so far, oldest first; leaves the mailbox empty.
    public func takeAll() -> [Message] {
        queue.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
    }

    public var isEmpty: Bool { queue.withLock { $0.isEmpty } }
}
