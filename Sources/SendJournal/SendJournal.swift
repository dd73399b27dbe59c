import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One slot's journal of accepted sends (`<stateDirectory>/<slot>.sends`), so that a send
/// accepted before a crash is not forgotten: each accepted send is appended and flushed to
/// the disk (`fdatasync`) before the slot answers `queued`; its terminal status appends a
/// `settled` record (written at once, flushed with the next accepted send). The file is
/// rewritten with only the open sends when it starts and whenever it grows past its bound.
///
/// Its one lock guards the file and the open sends; it calls nothing outside this module.
public final class SendJournal: Sendable {
    /// A system call on the journal failed.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let call: String
        public let path: String
        public let code: CInt
        public var description: String { "\(call) \(path): \(String(cString: strerror(code)))" }
    }

    /// What a previous run left in the journal.
    public struct Recovery: Sendable, Equatable {
        /// Sends accepted and never settled, in the order they were accepted.
        public var sends: [JournaledSend]
        /// Bytes that could not be read (a record torn by the crash, or damage).
        public var discardedBytes: Int
        /// Why reading stopped early, nil if the whole file was read.
        public var problem: String?
    }

    /// The wall clock in milliseconds since the Unix epoch, the time deadlines are kept in.
    public static func wallClockMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    /// The journal file of `slot` in `directory`.
    public static func path(directory: String, slot: String) -> String {
        directory.hasSuffix("/") ? "\(directory)\(slot).sends" : "\(directory)/\(slot).sends"
    }

    /// Makes `directory` if it is missing (its parent must exist) and checks that it takes files.
    public static func prepare(directory: String) throws(Failure) {
        if mkdir(directory, 0o750) != 0, errno != EEXIST { throw Failure(call: "mkdir", path: directory, code: errno) }
        let descriptor = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure(call: "open", path: directory, code: errno) }
        _ = Glibc.close(descriptor)
        guard access(directory, W_OK | X_OK) == 0 else { throw Failure(call: "access", path: directory, code: errno) }
    }

    /// Reads the sends a previous run left open. A missing file is an empty journal.
    public static func recover(directory: String, slot: String) throws(Failure) -> Recovery {
        let path = path(directory: directory, slot: slot)
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch where error.code == ENOENT {
            return Recovery(sends: [], discardedBytes: 0, problem: nil)
        }
        let contents = JournalFormat.decode(bytes)
        var open = OpenSends()
        for record in contents.records {
            switch record {
            case .accepted(let send): open.insert(send)
            case .settled(let packetID): open.remove(packetID)
            }
        }
        return Recovery(sends: open.sends, discardedBytes: contents.discardedBytes, problem: contents.problem)
    }

    public let path: String
    private let directory: String
    private let compactAfter: Int
    private let state: Mutex<State>

    private struct State: ~Copyable {
        var descriptor: CInt
        var size: Int
        var open: OpenSends
        var compactions = 0

        deinit { if descriptor >= 0 { _ = Glibc.close(descriptor) } }
    }

    /// Opens the journal for appending, after rewriting it to hold exactly `keeping` (the
    /// recovered sends that go out again). `compactAfter`: the size in bytes past which a
    /// settled record triggers a rewrite.
    public init(directory: String, slot: String, keeping: [JournaledSend], compactAfter: Int = 256 * 1024) throws(Failure) {
        self.directory = directory
        path = Self.path(directory: directory, slot: slot)
        self.compactAfter = compactAfter
        var open = OpenSends()
        for send in keeping { open.insert(send) }
        let (descriptor, size) = try Self.rewrite(path: path, directory: directory, open: open)
        state = Mutex(State(descriptor: descriptor, size: size, open: open))
    }

    /// Sends journaled and not yet settled.
    public var openSends: Int { state.withLock { $0.open.count } }

    /// How many times the file was rewritten since it was opened (not counting the first).
    public var compactions: Int { state.withLock { $0.compactions } }

    /// The file's size in bytes now.
    public var size: Int { state.withLock { $0.size } }

    /// Records an accepted send and flushes it to the disk; only then may it be reported `queued`.
    public func accepted(_ send: JournaledSend) throws(Failure) {
        let record = JournalFormat.encode(.accepted(send))
        try state.withLock { state throws(Failure) in
            try Self.write(record, to: state.descriptor, path: path)
            state.size += record.count
            try Self.sync(state.descriptor, path: path)
            state.open.insert(send)
        }
    }

    /// Records that a send reached its terminal status (or was never queued). Not flushed on
    /// its own: losing it to a power cut means the send may go out once more after a restart.
    public func settled(_ packetID: UInt32) throws(Failure) {
        try state.withLock { state throws(Failure) in
            guard state.open.remove(packetID) else { return }
            var compactionFailure: Failure?
            if state.size >= compactAfter {
                do throws(Failure) {
                    let (descriptor, size) = try Self.rewrite(path: path, directory: directory, open: state.open)
                    _ = Glibc.close(state.descriptor)
                    state.descriptor = descriptor
                    state.size = size
                    state.compactions += 1
                    return
                } catch {
                    // The file as it is still holds everything: settle the send in it, and report.
                    compactionFailure = error
                }
            }
            let record = JournalFormat.encode(.settled(packetID: packetID))
            try Self.write(record, to: state.descriptor, path: path)
            state.size += record.count
            if let compactionFailure { throw compactionFailure }
        }
    }

    // MARK: Files

    /// Writes the magic and the open sends to a new file, flushes it and puts it in place of
    /// the old one (rename, then flush the directory); returns it open for appending.
    private static func rewrite(path: String, directory: String, open: OpenSends) throws(Failure) -> (CInt, Int) {
        let temporary = path + ".new"
        let descriptor = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else { throw Failure(call: "open", path: temporary, code: errno) }
        do throws(Failure) {
            var bytes = JournalFormat.magic
            for send in open.sends { bytes.append(contentsOf: JournalFormat.encode(.accepted(send))) }
            try write(bytes, to: descriptor, path: temporary)
            try sync(descriptor, path: temporary)
            guard Glibc.rename(temporary, path) == 0 else { throw Failure(call: "rename", path: path, code: errno) }
            try syncDirectory(directory)
            return (descriptor, bytes.count)
        } catch {
            _ = Glibc.close(descriptor)
            _ = Glibc.unlink(temporary)
            throw error
        }
    }

    private static func write(_ bytes: [UInt8], to descriptor: CInt, path: String) throws(Failure) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                Glibc.write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw Failure(call: "write", path: path, code: errno)
            }
            written += result
        }
    }

    private static func sync(_ descriptor: CInt, path: String) throws(Failure) {
        while fdatasync(descriptor) != 0 {
            if errno != EINTR { throw Failure(call: "fdatasync", path: path, code: errno) }
        }
    }

    private static func syncDirectory(_ directory: String) throws(Failure) {
        let descriptor = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure(call: "open", path: directory, code: errno) }
        defer { _ = Glibc.close(descriptor) }
        guard fsync(descriptor) == 0 else { throw Failure(call: "fsync", path: directory, code: errno) }
    }

    private static func readFile(_ path: String) throws(Failure) -> [UInt8] {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure(call: "open", path: path, code: errno) }
        defer { _ = Glibc.close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(call: "read", path: path, code: errno)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }
}

/// The sends journaled and not settled, in the order accepted.
private struct OpenSends: Sendable {
    private var entries: [UInt32: (order: UInt64, send: JournaledSend)] = [:]
    private var nextOrder: UInt64 = 0

    var count: Int { entries.count }

    mutating func insert(_ send: JournaledSend) {
        entries[send.packetID] = (nextOrder, send)
        nextOrder += 1
    }

    @discardableResult
    mutating func remove(_ packetID: UInt32) -> Bool {
        entries.removeValue(forKey: packetID) != nil
    }

    var sends: [JournaledSend] { entries.values.sorted { $0.order < $1.order }.map(\.send) }
}
