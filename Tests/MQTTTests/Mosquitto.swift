import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// A real mosquitto broker as a subprocess on a loopback port of its own, in memory only
/// (`persistence false`), so a restart loses every retained message.
final class Mosquitto {
    /// The mosquitto binary on PATH (Debian installs it in /usr/sbin, which a user's PATH may lack).
    static let executable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin"]
        return directories.map { "\($0)/mosquitto" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    struct StartFailed: Error, CustomStringConvertible {
        let description: String
    }

    let port: Int
    private let directory: URL
    private var process: Process?

    /// Starts a broker on a free port; anonymous clients are allowed unless `allowAnonymous` is false.
    static func start(allowAnonymous: Bool = true) async throws -> Mosquitto {
        let broker = try Mosquitto(port: try await freePort(), allowAnonymous: allowAnonymous)
        do {
            try await broker.start()
        } catch {
            broker.stop()
            throw error
        }
        return broker
    }

    private init(port: Int, allowAnonymous: Bool) throws {
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mqtt-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configuration = """
            listener \(port) 127.0.0.1
            allow_anonymous \(allowAnonymous)
            persistence false
            log_dest stderr
            """
        try configuration.write(to: directory.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Launches the broker (again, on the same port) and returns once it accepts connections.
    func start() async throws {
        precondition(process == nil, "already running")
        guard let executable = Self.executable else { throw StartFailed(description: "mosquitto not installed") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-c", directory.appendingPathComponent("mosquitto.conf").path]
        let log = directory.appendingPathComponent("mosquitto.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try Self.withSIGTERMUnblocked { try process.run() }
        self.process = process
        for _ in 0..<200 {
            guard process.isRunning else {
                let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                throw StartFailed(description: "mosquitto exited with status \(process.terminationStatus): \(output)")
            }
            if await Self.accepts(port: port) { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw StartFailed(description: "mosquitto did not accept connections on port \(port) within 5 s")
    }

    /// Terminates the broker (SIGTERM) and waits for it to exit. Tests call it in a `defer`, which
    /// also keeps the broker alive until the end of the test.
    func stop() {
        guard let process else { return }
        self.process = nil
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            process.terminate()
        }
        process.waitUntilExit()
    }

    /// Freezes the broker (SIGSTOP): connections stay open, but nothing is answered.
    func pause() {
        if let process { kill(process.processIdentifier, SIGSTOP) }
    }

    /// Lets a paused broker go on (SIGCONT).
    func resume() {
        if let process { kill(process.processIdentifier, SIGCONT) }
    }

    /// libdispatch's worker threads block SIGTERM, and a spawned process inherits the mask: the
    /// broker would never see ``stop()``'s SIGTERM. So the spawn runs with SIGTERM unblocked.
    private static func withSIGTERMUnblocked<T>(_ body: () throws -> T) rethrows -> T {
        var terminate = sigset_t()
        sigemptyset(&terminate)
        sigaddset(&terminate, SIGTERM)
        var previous = sigset_t()
        pthread_sigmask(SIG_UNBLOCK, &terminate, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    private static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        defer { channel.close(promise: nil) }
        guard let port = channel.localAddress?.port else { throw StartFailed(description: "no port bound") }
        return port
    }

    private static func accepts(port: Int) async -> Bool {
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() else {
            return false
        }
        try? await channel.close()
        return true
    }
}
