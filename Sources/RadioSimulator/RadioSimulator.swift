import Logging
import MeshtasticProtocol
import NIOCore
import NIOPosix
import Synchronization

/// What the virtual radio looks like and how busy its mesh is.
public struct SimulatorConfiguration: Sendable, Equatable {
    public var host: String
    /// 0 picks a free port.
    public var port: Int
    public var nodeCount: Int
    public var trafficPerMinute: Double
    public var seed: UInt64
    /// How long the virtual radio takes to report an ACK for a `want_ack` packet.
    public var ackDelay: Duration

    public init(
        host: String = "127.0.0.1",
        port: Int = 0,
        nodeCount: Int = 6,
        trafficPerMinute: Double = 30,
        seed: UInt64 = 0x4D45_5348,
        ackDelay: Duration = .milliseconds(300)
    ) {
        self.host = host
        self.port = port
        self.nodeCount = nodeCount
        self.trafficPerMinute = trafficPerMinute
        self.seed = seed
        self.ackDelay = ackDelay
    }
}

/// A virtual Meshtastic radio serving the real stream API over TCP.
///
/// Like firmware it serves one API client at a time (a new connection closes the previous
/// one), answers `want_config_id` with the handshake burst, reports its TX queue after
/// each packet and heartbeat, ACKs `want_ack` packets with a Routing reply carrying
/// `request_id`, and lets its virtual nodes send text, position, telemetry and nodeinfo.
public final class RadioSimulator: Sendable {
    public let configuration: SimulatorConfiguration
    /// The port it listens on (the one picked, if the configuration said 0).
    public let port: Int
    private let server: NIOAsyncChannel<StreamChannel, Never>
    private let mesh: Mutex<VirtualMesh>
    private let client: Mutex<ClientSlot>
    private let received = Mutex<[Meshtastic_MeshPacket]>([])
    private let logger: Logger

    private struct ClientSlot {
        var generation = 0
        var outbound: AsyncStream<Meshtastic_FromRadio>.Continuation?
        var channel: (any Channel)?
    }

    private static let queueCapacity: UInt32 = 16

    /// Binds the listener. Call ``run()`` to serve.
    public static func start(_ configuration: SimulatorConfiguration, logger: Logger = Logger(label: "meshbus.sim")) async throws -> RadioSimulator {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in StreamChannel.configure(channel) }
        return RadioSimulator(configuration: configuration, server: server, logger: logger)
    }

    private init(configuration: SimulatorConfiguration, server: NIOAsyncChannel<StreamChannel, Never>, logger: Logger) {
        self.configuration = configuration
        self.server = server
        self.port = server.channel.localAddress?.port ?? configuration.port
        self.mesh = Mutex(VirtualMesh(nodeCount: configuration.nodeCount, seed: configuration.seed))
        self.client = Mutex(ClientSlot())
        self.logger = logger
    }

    /// The simulated nodes, the local one first.
    public var nodes: [VirtualMesh.Node] { mesh.withLock { $0.allNodes } }

    /// Every packet a client sent to the virtual radio, oldest first.
    public var receivedPackets: [Meshtastic_MeshPacket] { received.withLock { $0 } }

    /// Serves clients and emits traffic until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.emitTraffic() }
            do {
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            } catch {
                logger.debug("simulator listener ended", metadata: ["error": "\(error)"])
            }
            group.cancelAll()
        }
    }

    /// Lets a virtual node send one packet now (of `kind`, or a random kind).
    @discardableResult
    public func emit(_ kind: VirtualMesh.TrafficKind? = nil) -> Meshtastic_MeshPacket {
        let packet = mesh.withLock { $0.trafficPacket(now: VirtualMesh.unixNow(), kind: kind) }
        deliver(.with { $0.packet = packet })
        return packet
    }

    private func deliver(_ message: Meshtastic_FromRadio) {
        _ = client.withLock { $0.outbound?.yield(message) }
    }

    private func emitTraffic() async {
        guard configuration.trafficPerMinute > 0 else { return }
        let interval = Duration.seconds(60 / configuration.trafficPerMinute)
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            emit()
        }
    }

    /// Makes `channel` the one client, closing the previous one as firmware does.
    private func attach(_ channel: any Channel, _ outbound: AsyncStream<Meshtastic_FromRadio>.Continuation) -> Int {
        let (generation, previousOutbound, previousChannel) = client.withLock { slot in
            let previous = (slot.outbound, slot.channel)
            slot.generation += 1
            slot.outbound = outbound
            slot.channel = channel
            return (slot.generation, previous.0, previous.1)
        }
        if let previousChannel {
            logger.info("force close previous API client")
            previousOutbound?.finish()
            previousChannel.close(promise: nil)
        }
        return generation
    }

    private func detach(generation: Int) {
        client.withLock { slot in
            guard slot.generation == generation else { return }
            slot.outbound = nil
            slot.channel = nil
        }
    }

    private func serve(_ connection: StreamChannel) async {
        let (outgoing, outgoingContinuation) = AsyncStream<Meshtastic_FromRadio>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let (delayed, delayedContinuation) = AsyncStream<Meshtastic_FromRadio>.makeStream()
        let generation = attach(connection.channel, outgoingContinuation)
        defer { detach(generation: generation) }
        try? await connection.executeThenClose { inbound, outbound in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    var nextID: UInt32 = 1
                    for await var message in outgoing {
                        message.id = nextID
                        nextID &+= 1
                        guard let bytes: [UInt8] = try? message.serializedBytes() else { continue }
                        do { try await outbound.write(.frame(ByteBuffer(bytes: bytes))) } catch { return }
                    }
                }
                group.addTask {
                    for await message in delayed {
                        do { try await Task.sleep(for: self.configuration.ackDelay) } catch { return }
                        outgoingContinuation.yield(message)
                    }
                }
                group.addTask {
                    do {
                        for try await item in inbound {
                            guard case .frame(let frame) = item,
                                let request = try? Meshtastic_ToRadio(serializedBytes: Array(frame.readableBytesView))
                            else { continue }
                            if !self.handle(request, reply: outgoingContinuation, later: delayedContinuation) { return }
                        }
                    } catch {}
                }
                await group.next()
                outgoingContinuation.finish()
                delayedContinuation.finish()
                group.cancelAll()
            }
        }
    }

    /// Answers one request like firmware would. Returns false when the client says goodbye.
    private func handle(
        _ request: Meshtastic_ToRadio,
        reply: AsyncStream<Meshtastic_FromRadio>.Continuation,
        later: AsyncStream<Meshtastic_FromRadio>.Continuation
    ) -> Bool {
        switch request.payloadVariant {
        case .wantConfigID(let nonce):
            let burst = mesh.withLock { $0.handshake(nonce: nonce, now: VirtualMesh.unixNow()) }
            for message in burst { reply.yield(message) }
        case .packet(let packet):
            received.withLock { $0.append(packet) }
            reply.yield(.with { $0.queueStatus = Self.queueStatus(packetID: packet.id) })
            if packet.wantAck {
                let ack = mesh.withLock { $0.ack(for: packet, now: VirtualMesh.unixNow()) }
                later.yield(.with { $0.packet = ack })
            }
        case .heartbeat:
            reply.yield(.with { $0.queueStatus = Self.queueStatus(packetID: 0) })
        case .disconnect:
            return false
        case nil:
            break
        }
        return true
    }

    static func queueStatus(packetID: UInt32) -> Meshtastic_QueueStatus {
        .with {
            $0.res = 0
            $0.free = queueCapacity - 1
            $0.maxlen = queueCapacity
            $0.meshPacketID = packetID
        }
    }
}
