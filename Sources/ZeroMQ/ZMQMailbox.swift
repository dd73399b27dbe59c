import Synchronization

/// Work handed to a ``ZMQSocketThread`` from any thread: a lock-protected queue whose
/// ``post(_:)`` wakes the socket thread through its ``ZMQWakeup``. Inlinable, so a caller in
/// another module gets it specialized for its message type instead of generic code that
/// looks up type metadata on every post.
public final class ZMQMailbox<Message: Sendable>: Sendable {
    @usableFromInline let queue = Mutex<[Message]>([])
    @usableFromInline let wakeup: ZMQWakeup

    public init(wakeup: ZMQWakeup) {
        self.wakeup = wakeup
    }

    /// Appends a message and wakes the socket thread.
    @inlinable
    public func post(_ message: Message) {
        queue.withLock { $0.append(message) }
        wakeup.signal()
    }

    /// Everything posted so far, oldest first; leaves the mailbox empty.
    @inlinable
    public func takeAll() -> [Message] {
        queue.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
    }

    @inlinable
    public var isEmpty: Bool { queue.withLock { $0.isEmpty } }
}
