import Foundation
import MeshtasticProtocol
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How far a benchmark load has come (see ``RadioSimulator/startLoad(count:rate:)``).
public struct LoadProgress: Sendable, Equatable {
    /// Packets asked for.
    public var count = 0
    /// Packets written to the client so far.
    public var emitted = 0
    /// Seconds from the first packet to the last (or to now, while running).
    public var seconds: Double = 0
    public var done = false
    var started: ContinuousClock.Instant?
}

/// Benchmark load: the simulator sends texts as fast as asked, each carrying its sequence
/// number and send time, `bench <seq> <unix ns>`, so a subscriber at the far end of any
/// pipeline can count losses and measure latency. Writes wait for the client (TCP
/// backpressure), so a slow client lowers the rate instead of losing packets.
extension RadioSimulator {
    /// Starts sending `count` texts at `rate` per second (0: as fast as the client reads) to
    /// the connected client; false if no client is connected.
    public func startLoad(count: Int, rate: Double) -> Bool {
        loadState.withLock { $0 = LoadProgress(count: count) }
        return deliver(.load(count: count, rate: rate))
    }

    /// The current (or last) load's progress.
    public var loadProgress: LoadProgress {
        loadState.withLock { progress in
            var current = progress
            if !current.done, let started = current.started { current.seconds = (ContinuousClock.now - started) / .seconds(1) }
            return current
        }
    }

    /// The current wall clock in nanoseconds since 1970, as subscribers read it.
    static func unixNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    func writeLoad(count: Int, rate: Double, to outbound: NIOAsyncChannelOutboundWriter<StreamOutbound>, nextID: inout UInt32) async throws {
        let senders = nodes.dropFirst().map(\.num)
        guard !senders.isEmpty, count > 0 else { return }
        let rxTime = VirtualMesh.unixNow()
        var packetID = UInt32.random(in: 1...(UInt32.max / 2))
        let start = ContinuousClock.now
        loadState.withLock { $0.started = start }
        var sent = 0
        while sent < count {
            let due = rate > 0 ? min(count, Int((ContinuousClock.now - start) / .seconds(1) * rate) + 1) : count
            guard due > sent else {
                try await Task.sleep(for: .milliseconds(1))
                continue
            }
            var batch: [StreamOutbound] = []
            let end = min(due, sent + 256)
            batch.reserveCapacity(end - sent)
            while sent < end {
                sent += 1
                packetID &+= 1
                // Built whole, then stored once: setting fields through `message.packet`
                // copies the packet's storage on every assignment.
                var packet = Meshtastic_MeshPacket()
                packet.from = senders[sent % senders.count]
                packet.to = NodeNumber.broadcast
                packet.id = packetID
                packet.rxTime = rxTime
                packet.rxSnr = 6.25
                packet.rxRssi = -90
                packet.hopLimit = 3
                packet.hopStart = 3
                var data = Meshtastic_Data()
                data.portnum = .textMessageApp
                data.payload = Data("bench \(sent) \(Self.unixNanoseconds())".utf8)
                packet.decoded = data
                var message = Meshtastic_FromRadio()
                message.id = nextID
                nextID &+= 1
                message.packet = packet
                batch.append(.frame(ByteBuffer(bytes: try message.serializedBytes() as [UInt8])))
            }
            try await outbound.write(contentsOf: batch)
            loadState.withLock { $0.emitted = sent }
        }
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        loadState.withLock { progress in
            progress.done = true
            progress.seconds = seconds
        }
    }
}
