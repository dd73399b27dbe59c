import ArgumentParser
import Broker
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

@main
struct MeshBusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshbus",
        abstract: "Share Meshtastic radios between many programs over ZeroMQ.",
        version: Broker.version,
        subcommands: [
            RunCommand.self, CheckCommand.self, KeygenCommand.self, SimCommand.self, TailCommand.self, SendCommand.self, DecodeCommand.self, MQTTBridgeCommand.self,
        ],
        defaultSubcommand: RunCommand.self
    )

    static func main() async {
        // Tasks run on NIO's event loops, where the sockets already are: a frame read by a loop
        // goes on into the slot on that thread, and libdispatch's worker pool (with its
        // once-a-second monitor and threads made and ended around each burst) is never started.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Writes one line to standard output at once (unbuffered), so that a pipe reader sees
/// each line as it happens.
func say(_ line: String) {
    write(line, to: 1)
}

/// Like ``say(_:)``, to standard error.
func sayError(_ line: String) {
    write(line, to: 2)
}

private func write(_ line: String, to descriptor: Int32) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        if written <= 0 { return }
        offset += written
    }
}
