import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pseudo-terminal standing in for a USB serial radio: the simulator speaks on the
/// controller side; a client opens the device side by the symlink `linkedAt` points to it.
///
/// The simulator keeps one descriptor of the device side open in raw mode, as a real radio's
/// USB port stays powered whether or not a host has it open: a client may close and reopen
/// the device without the simulator noticing.
final class PseudoTerminal: Sendable {
    struct Failure: Error, CustomStringConvertible {
        let call: String
        let code: CInt
        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    /// `TIOCSPTLCK` and `TIOCGPTN` (`_IOW('T', 0x31, int)`, `_IOR('T', 0x30, unsigned int)`).
    private static let setLock: UInt = 0x4004_5431
    private static let getNumber: UInt = 0x8004_5430

    /// The pseudo-terminal's own device path (`/dev/pts/N`).
    let devicePath: String
    let linkPath: String
    /// The controller side (until NIO takes it) and the held device side; -1 once released.
    private let descriptors: Mutex<(controller: CInt, device: CInt)>

    init(linkedAt linkPath: String) throws {
        // posix_openpt/unlockpt/ptsname spelled as the Linux calls they are (the C library's
        // wrappers are hidden from Swift behind _XOPEN_SOURCE).
        let controller = Glibc.open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard controller >= 0 else { throw Failure(call: "open /dev/ptmx", code: errno) }
        var unlock: CInt = 0
        var number: CUnsignedInt = 0
        guard ioctl(controller, Self.setLock, &unlock) == 0, ioctl(controller, Self.getNumber, &number) == 0 else {
            let code = errno
            _ = Glibc.close(controller)
            throw Failure(call: "ioctl(/dev/ptmx)", code: code)
        }
        let devicePath = "/dev/pts/\(number)"
        let device = Glibc.open(devicePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard device >= 0 else {
            let code = errno
            _ = Glibc.close(controller)
            throw Failure(call: "open \(devicePath)", code: code)
        }
        var settings = termios()
        _ = tcgetattr(device, &settings)
        cfmakeraw(&settings)
        _ = tcsetattr(device, TCSANOW, &settings)
        _ = Self.unlink(linkPath)
        guard symlink(devicePath, linkPath) == 0 else {
            let code = errno
            _ = Glibc.close(device)
            _ = Glibc.close(controller)
            throw Failure(call: "symlink \(linkPath)", code: code)
        }
        self.devicePath = devicePath
        self.linkPath = linkPath
        self.descriptors = Mutex((controller, device))
    }

    /// Hands the controller descriptor over (to NIO, which closes it).
    func takeController() -> CInt {
        descriptors.withLock { descriptors in
            defer { descriptors.controller = -1 }
            return descriptors.controller
        }
    }

    /// Removes the device node and releases the pseudo-terminal.
    func close() {
        _ = Self.unlink(linkPath)
        let (controller, device) = descriptors.withLock { descriptors in
            defer { descriptors = (-1, -1) }
            return descriptors
        }
        if controller >= 0 { _ = Glibc.close(controller) }
        if device >= 0 { _ = Glibc.close(device) }
    }

    @discardableResult
    static func unlink(_ path: String) -> Bool {
        Glibc.unlink(path) == 0
    }
}
