import Broker
import EventLoopTime
import Logging
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Applies the configuration file to the running broker whenever it changes (its mtime,
/// size or inode, looked at every `pollInterval`) or SIGHUP arrives.
///
/// A file that does not parse is logged with every problem and changes nothing: the running
/// configuration stays. A `Service`; it ends with graceful shutdown.
public struct ConfigurationReloader: Service {
    let path: String
    let broker: Broker
    let pollInterval: Duration
    let signals: UnixSignalsSequence
    /// Applied to each parsed file before use (the environment and flags that override it).
    let adjust: @Sendable (inout DaemonConfiguration) -> Void
    let logger: Logger

    /// `signals` must trap SIGHUP; create it early (before the daemon reports it is up), so
    /// a SIGHUP never meets the default action, which ends the process.
    public init(
        path: String,
        broker: Broker,
        signals: UnixSignalsSequence,
        pollInterval: Duration = .seconds(1),
        logger: Logger,
        adjust: @escaping @Sendable (inout DaemonConfiguration) -> Void = { _ in }
    ) {
        self.path = path
        self.broker = broker
        self.signals = signals
        self.pollInterval = pollInterval
        self.logger = logger
        self.adjust = adjust
    }

    public func run() async {
        let (triggers, trigger) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await _ in signals { trigger.yield("SIGHUP") }
                }
                group.addTask {
                    let clock = EventLoopClock()
                    var seen = FileFingerprint(path: path)
                    while !Task.isCancelled {
                        do { try await clock.sleep(for: pollInterval) } catch { return }
                        let now = FileFingerprint(path: path)
                        if now != seen, now != nil {
                            seen = now
                            trigger.yield("file changed")
                        }
                    }
                }
                for await cause in triggers { await reload(cause: cause) }
            }
        }
    }

    /// Reads, checks and applies the file once.
    func reload(cause: String) async {
        let configuration: DaemonConfiguration
        do {
            configuration = try ConfigurationFile.load(path: path)
        } catch {
            broker.noteReload(.rejected(error.problems.map(\.description)))
            logger.error(
                "configuration not applied; the running one stays",
                metadata: ["file": "\(path)", "cause": "\(cause)", "problems": "\(error.problems.map(\.description))"]
            )
            return
        }
        var adjusted = configuration
        adjust(&adjusted)
        let report = await broker.apply(adjusted.broker)
        broker.noteReload(.applied(report))
        logger.info(
            "configuration reloaded",
            metadata: [
                "file": "\(path)", "cause": "\(cause)", "added": "\(report.added)", "removed": "\(report.removed)",
                "changed": "\(report.changed)", "unchanged": "\(report.unchanged)",
            ]
        )
        if !report.failed.isEmpty { logger.error("slots not started", metadata: ["slots": "\(report.failed)"]) }
        if !report.needRestart.isEmpty {
            logger.warning("changed settings take effect after a restart", metadata: ["settings": "\(report.needRestart)"])
        }
    }
}

/// What tells a changed file apart: mtime (to the nanosecond), size and inode (an editor
/// that saves by rename gives a new inode).
struct FileFingerprint: Equatable {
    let seconds: Int
    let nanoseconds: Int
    let size: Int
    let inode: UInt64

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        seconds = Int(info.st_mtim.tv_sec)
        nanoseconds = Int(info.st_mtim.tv_nsec)
        size = Int(info.st_size)
        inode = UInt64(info.st_ino)
    }
}
