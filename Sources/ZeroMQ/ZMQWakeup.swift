#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A self-pipe that lets any thread wake a socket thread blocked in ``ZMQPoller/poll(timeoutMilliseconds:)``.
///
/// Async code appends work to a lock-protected queue, then calls ``signal()``; the socket
/// thread polls ``descriptor`` next to its sockets, calls ``drain()`` and takes the work.
/// This keeps every libzmq socket on its one thread without a second socket to coordinate.
public final class ZMQWakeup: @unchecked Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32

    public init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ZMQError(operation: "pipe", code: errno) }
        readEnd = fds[0]
        writeEnd = fds[1]
        for fd in fds {
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        }
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// The descriptor to poll for input.
    public var descriptor: Int32 { readEnd }

    /// Wakes the polling thread. Never blocks: a full pipe already means "wake up".
    public func signal() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Empties the pipe after a wake-up.
    public func drain() {
        var buffer = [UInt8](repeating: 0, count: 256)
        while read(readEnd, &buffer, buffer.count) > 0 {}
    }
}
