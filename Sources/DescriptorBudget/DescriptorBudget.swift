import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's file descriptors: how many it may open (`RLIMIT_NOFILE`), how many are open,
/// and how many are kept back from network peers. Peers (ZeroMQ consumers, virtual radio
/// clients) are refused once the open descriptors reach `limit - reserve`, so that a flood of
/// them never takes the last ones a radio reconnect, the send journal or a command reply needs;
/// and libzmq, which retries a failed `accept` at once, never spins on `EMFILE`.
public struct DescriptorBudget: Sendable, Equatable {
    public var limit: Int
    public var reserve: Int

    public init(limit: Int, reserve: Int) {
        self.limit = limit
        self.reserve = reserve
    }

    /// The budget under the current soft limit: a tenth is kept back, at least 32.
    public static func current() -> DescriptorBudget {
        var limits = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0, limits.rlim_cur != rlim_t.max else {
            return DescriptorBudget(limit: .max, reserve: 0)
        }
        let limit = Int(clamping: limits.rlim_cur)
        return DescriptorBudget(limit: limit, reserve: max(32, limit / 10))
    }

    /// Whether a new peer may be accepted with `open` descriptors in use.
    public func admitsPeer(open: Int) -> Bool {
        open < limit - reserve
    }

    /// Raises the soft limit to the hard one, as a daemon serving many peers should (systemd's
    /// default soft limit is 1024 under a hard limit of 524288). Returns both when it changed.
    @discardableResult
    public static func raiseSoftLimit() -> (from: Int, to: Int)? {
        var limits = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0, limits.rlim_cur < limits.rlim_max else { return nil }
        let before = limits.rlim_cur
        limits.rlim_cur = limits.rlim_max
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0 else { return nil }
        return (Int(clamping: before), Int(clamping: limits.rlim_max))
    }

    /// The descriptors open in this process now (the entries of `/proc/self/fd`, less the one
    /// reading it). Costs a directory read: asked once per new peer, not per message.
    public static func openDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return count - 1
    }
}

/// Admits or refuses new peers of one listener against the process's ``DescriptorBudget``,
/// counting refusals and saying which ones to log: the first, then at most one a minute.
public final class DescriptorGate: Sendable {
    /// A peer refused for want of descriptors.
    public struct Refusal: Sendable, Equatable, CustomStringConvertible {
        public var open: Int
        public var budget: DescriptorBudget
        /// Refusals so far, this one included.
        public var total: Int
        /// Whether this refusal should be logged (the rest are only counted).
        public var shouldLog: Bool

        public var description: String {
            "low on file descriptors (\(open) open, limit \(budget.limit), \(budget.reserve) kept for radios and replies)"
        }
    }

    private struct State {
        var refused = 0
        var lastLogged: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let budget: @Sendable () -> DescriptorBudget
    private let openDescriptors: @Sendable () -> Int

    /// `budget` and `openDescriptors` read the process by default; tests give fixed ones.
    public init(
        budget: @escaping @Sendable () -> DescriptorBudget = DescriptorBudget.current,
        openDescriptors: @escaping @Sendable () -> Int = DescriptorBudget.openDescriptors
    ) {
        self.budget = budget
        self.openDescriptors = openDescriptors
    }

    /// Peers refused so far.
    public var refused: Int { state.withLock { $0.refused } }

    /// Nil if a new peer may be accepted now; otherwise the refusal, counted.
    public func check() -> Refusal? {
        let budget = budget()
        let open = openDescriptors()
        guard !budget.admitsPeer(open: open) else { return nil }
        let now = ContinuousClock.now
        return state.withLock { state in
            state.refused += 1
            let shouldLog = state.lastLogged.map { $0.duration(to: now) >= .seconds(60) } ?? true
            if shouldLog { state.lastLogged = now }
            return Refusal(open: open, budget: budget, total: state.refused, shouldLog: shouldLog)
        }
    }
}
