// The fixed workload that instruction counts are taken from (scripts/bench runs it under
// `valgrind --tool=callgrind`): a simulated radio over real loopback TCP sends N texts flat
// out, one broker slot decodes them, turns each into JSON and an envelope and publishes it,
// and a ZeroMQ subscriber in this process receives every one. Everything runs in one
// process so one callgrind total covers the whole path; two runs with different N give the
// instructions per event without the fixed start-up cost.
//
//     meshbus-workload 10000             the whole path
//     meshbus-workload 10000 --radio-only the simulator and a bare TCP reader (what to subtract)
import Broker
import Foundation
import Logging
import MeshBusModel
import MeshtasticProtocol
import NIOCore
import NIOPosix
import RadioLink
import RadioSimulator
import Synchronization
import ZeroMQ

@main
enum Workload {
    /// valgrind 3.19 cannot run Swift's async main (it dies where dispatch parks the main
    /// thread), so the main thread waits on a semaphore while the work runs on the pool.
    static func main() {
        // As the daemon runs: tasks on NIO's event loops (see MeshBusCommand).
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let finished = DispatchSemaphore(value: 0)
        let exitCode = Mutex<Int32>(1)
        Task.detached {
            do {
                let code = try await run(Array(CommandLine.arguments.dropFirst()))
                exitCode.withLock { $0 = code }
            } catch {
                FileHandle.standardError.write(Data("meshbus-workload: \(error)\n".utf8))
            }
            finished.signal()
        }
        finished.wait()
        exit(exitCode.withLock { $0 })
    }

    static func run(_ arguments: [String]) async throws -> Int32 {
        guard let count = arguments.first.flatMap({ Int($0) }), count > 0 else {
            FileHandle.standardError.write(Data("usage: meshbus-workload COUNT [--radio-only]\n".utf8))
            return 2
        }
        LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        let simulator = try await RadioSimulator.start(SimulatorConfiguration(nodeCount: 6, trafficPerMinute: 0))
        let received = try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask { await simulator.run(); return nil }
            defer { group.cancelAll() }
            if arguments.contains("--radio-only") {
                return try await readBare(simulator, count: count)
            }
            return try await throughBroker(simulator, count: count)
        }
        print("received \(received) of \(count)")
        return received == count ? 0 : 1
    }

    /// The whole path: simulator → TCP → slot → JSON → PUB → SUB.
    static func throughBroker(_ simulator: RadioSimulator, count: Int) async throws -> Int {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-workload-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var timing = LinkTiming()
        timing.sendSpacing = [:]
        let slot = SlotConfiguration(name: "bench", source: .tcp(host: "127.0.0.1", port: simulator.port), timing: timing)
        let events = "ipc://\(directory.path)/events", commandEndpoint = "ipc://\(directory.path)/commands"
        let broker = try await Broker(configuration: BrokerConfiguration(events: [events], commands: [commandEndpoint], slots: [slot]))
        return try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask { await broker.run(); return nil }
            defer { group.cancelAll() }
            // The blocking ZeroMQ calls go to NIO's blocking pool: tasks run on the event loops.
            return try await NIOThreadPool.singleton.runIfActive { try receive(count, events: events, commands: commandEndpoint, from: simulator) }
        }
    }

    /// Waits for the slot to be ready and this subscriber to hear it, starts the load and
    /// counts the load's `receive` events. Blocks.
    static func receive(_ count: Int, events: String, commands commandEndpoint: String, from simulator: RadioSimulator) throws -> Int {
        let context = try ZMQContext()
        defer { context.terminate() }
        let subscriber = try ZMQSocket(context: context, type: .sub)
        defer { subscriber.close() }
        try subscriber.setLinger(milliseconds: 0)
        try subscriber.setReceiveHighWaterMark(0)
        try subscriber.subscribe("meshtastic.")
        try subscriber.connect(events)
        try subscriber.setReceiveTimeout(milliseconds: 30_000)
        // Ready means the link is up and this subscriber hears the slot.
        let commands = try ZMQSocket(context: context, type: .req)
        defer { commands.close() }
        try commands.setLinger(milliseconds: 0)
        try commands.connect(commandEndpoint)
        while true {
            _ = try commands.send(Array(#"{"cmd": "status", "slot": "bench"}"#.utf8))
            guard let reply = try commands.receiveMultipart()?.last, let status = try? JSONValue(parsing: reply) else { continue }
            let slot = status["result"]?["slots"]?["bench"] ?? status["result"]
            if slot?["ready"]?.boolValue == true { break }
            usleep(20_000)
        }
        _ = simulator.emit(.text)
        while let frames = try subscriber.receiveMultipart(), !frames[0].starts(with: Array("meshtastic.receive".utf8)) {}
        guard simulator.startLoad(count: count, rate: 0) else { return 0 }
        // Every packet from here on is a load text.
        var received = 0
        let receive = Array("meshtastic.receive".utf8)
        while received < count, let frames = try subscriber.receiveMultipart() {
            if frames[0].starts(with: receive) { received += 1 }
        }
        return received
    }

    /// The simulator's own share: it sends the same load to a client that completes the
    /// handshake and then only splits frames and counts them.
    static func readBare(_ simulator: RadioSimulator, count: Int) async throws -> Int {
        let channel = try await TCPRadioTransport(host: "127.0.0.1", port: simulator.port).open()
        return try await channel.executeThenClose { _, outbound in
            // Frames are taken on the event loop that read them, as a slot's link takes them.
            let (outcome, report) = AsyncStream<Int>.makeStream()
            let progress = Mutex((loading: false, received: 0))
            _ = try await channel.divertInbound { item in
                guard case .frame(let frame) = item else { return }
                let (startLoad, finished) = progress.withLock { progress -> (Bool, Int?) in
                    if progress.loading {
                        progress.received += 1
                        return (false, progress.received == count ? count : nil)
                    }
                    let complete = (try? Meshtastic_FromRadio(serializedBytes: Array(frame.readableBytesView)))?.configCompleteID == 42
                    progress.loading = complete
                    return (complete, nil)
                }
                if startLoad, !simulator.startLoad(count: count, rate: 0) { report.yield(0) }
                if let finished { report.yield(finished) }
            }
            var request = Meshtastic_ToRadio()
            request.wantConfigID = 42
            try await outbound.write(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
            // The connection closing first ends the count short.
            channel.channel.closeFuture.whenComplete { _ in report.yield(progress.withLock { $0.received }) }
            return await outcome.first { _ in true } ?? 0
        }
    }
}
