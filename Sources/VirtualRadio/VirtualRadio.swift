import CoreMetrics
import Logging
import MeshtasticProtocol
import NIOCore
import NIOPosix
import Synchronization

import struct Foundation.Data
import struct Foundation.Date

/// What a slot offers its virtual radio port: the way to the radio, through the slot's outbox.
public protocol VirtualRadioHost: Sendable {
    /// Queues a client's packet for the radio like any send (paced, tracked, published on
    /// `meshtastic.sent` and `meshtastic.send.status`). The packet keeps its id unless another
    /// send holds it; the id it goes out with is returned.
    func submit(_ packet: Meshtastic_MeshPacket, client: String) -> VirtualRadioSubmission
    /// Room in the slot's outbox now.
    var outboxRoom: OutboxRoom { get }
}

/// Free places in a slot's outbox, reported to clients as the radio's `QueueStatus`.
public struct OutboxRoom: Sendable, Equatable {
    public var free: Int
    public var capacity: Int

    public init(free: Int, capacity: Int) {
        self.free = free
        self.capacity = capacity
    }
}

/// What became of a client's packet.
public enum VirtualRadioSubmission: Sendable, Equatable {
    case queued(radioPacketID: UInt32, room: OutboxRoom)
    case full(room: OutboxRoom)
}

/// A bound virtual radio port, served by ``VirtualRadio/serve(_:)`` until closed.
public struct VirtualRadioListener: Sendable {
    fileprivate let server: NIOAsyncChannel<StreamChannel, Never>
    public let configuration: VirtualRadioConfiguration
    /// The port bound (the one picked, if the configuration said 0).
    public let port: Int

    /// `host:port` as bound.
    public var address: String {
        var bound = configuration
        bound.port = port
        return bound.address
    }

    /// Stops accepting; the clients of this listener are closed as ``VirtualRadio/serve(_:)`` ends.
    public func close() async {
        try? await server.channel.close()
    }
}

/// One slot's virtual radio: lets any number of existing Meshtastic clients (the Python
/// CLI, Home Assistant, the apps over TCP) use the slot's radio at once, each as if it were
/// the radio's only client.
///
/// Each client gets its own handshake, built from ``RadioMirror`` (what the radio said,
/// kept current), ending with its own `config_complete_id`; then every packet, node update,
/// log record and notification the radio delivers. Its packets go through the slot's outbox;
/// the radio's replies to them (ACK/NAK, responses) go back to that client alone, with the
/// id it chose. Its heartbeats and `disconnect` concern only it. Admin requests that change
/// a radio are refused unless allowed. Clients are served only while the slot's link is
/// ready: a handshake asked for before waits for it, and a lost link closes the clients
/// (they reconnect, as the official client does, and wait for the radio to be back).
public final class VirtualRadio: Sendable {
    public let slot: String
    private let hub: Mutex<Hub>
    private let metrics: Metrics
    private let logger: Logger

    /// What the virtual radio has done, for `status` and tests.
    public struct Counters: Sendable, Equatable {
        /// Connections accepted.
        public var connections = 0
        /// Connections closed at once because `maxClients` were connected.
        public var turnedAway = 0
        /// Handshakes answered.
        public var handshakes = 0
        /// Packets from clients accepted into the slot's outbox.
        public var packets = 0
        /// Packets refused because the outbox was full (the client is told to retry).
        public var outboxFull = 0
        /// Admin requests refused by the admin policy.
        public var adminRefused = 0
        /// Messages not written to a client that did not keep up.
        public var framesDropped = 0
        /// Frames from clients that were not a `ToRadio`, and text between frames.
        public var undecodable = 0
    }

    /// `QueueStatus.res` for a packet the outbox had no room for (non-zero: not taken).
    public static let outboxFullResult: Int32 = 32
    /// `QueueStatus` is a response of the API itself; its packet id is 0 for a heartbeat.
    private static let heartbeatPacketID: UInt32 = 0

    private enum Phase: Equatable {
        case connected
        case waitingForLink(nonce: UInt32)
        case live
    }

    private struct Client {
        let peer: String
        let outbound: AsyncStream<[ByteBuffer]>.Continuation
        let channel: any Channel
        let policy: VirtualRadioConfiguration
        let host: any VirtualRadioHost
        var phase = Phase.connected
        /// Told the outbox was full; gets a `QueueStatus` when room comes back.
        var waitingForRoom = false
    }

    private struct Hub {
        var mirror = RadioMirror()
        var ready = false
        var clients: [Int: Client] = [:]
        var nextClient = 1
        var routes = ReplyRoutes<ContinuousClock.Instant>(lifetime: .seconds(600))
        var counters = Counters()
    }

    private struct Metrics: Sendable {
        let clients: Gauge
        let packets: CoreMetrics.Counter
        let adminRefused: CoreMetrics.Counter
        let framesDropped: CoreMetrics.Counter

        init(slot: String) {
            let dimensions = [("slot", slot)]
            clients = Gauge(label: "meshbus_virtual_clients", dimensions: dimensions)
            packets = Counter(label: "meshbus_virtual_packets_total", dimensions: dimensions)
            adminRefused = Counter(label: "meshbus_virtual_admin_refused_total", dimensions: dimensions)
            framesDropped = Counter(label: "meshbus_virtual_frames_dropped_total", dimensions: dimensions)
        }
    }

    public init(slot: String, logger: Logger) {
        self.slot = slot
        self.hub = Mutex(Hub())
        self.metrics = Metrics(slot: slot)
        self.logger = logger
    }

    public var counters: Counters { hub.withLock { $0.counters } }

    /// Clients connected now.
    public var clientCount: Int { hub.withLock { $0.clients.count } }

    /// Removes the client gauge (the slot left the configuration).
    public func destroyGauges() {
        metrics.clients.destroy()
    }

    // MARK: The radio side (called by the slot, in the order the link reports)

    /// A message from the radio: kept for handshakes, and passed on live to every client
    /// (a reply to one client's packet to that client only).
    public func radio(_ message: Meshtastic_FromRadio, raw: [UInt8]) {
        hub.withLock { hub in
            guard hub.mirror.absorb(message) == .forward, hub.ready else { return }
            if case .packet(let packet)? = message.payloadVariant, case .decoded(let data)? = packet.payloadVariant, data.requestID != 0,
                let route = hub.routes.route(requestID: data.requestID, now: .now)
            {
                guard hub.clients[route.client] != nil else { return }
                var reply = message
                reply.packet.decoded.requestID = route.clientPacketID
                deliver([reply], to: route.client, in: &hub)
                return
            }
            let frame = [ByteBuffer(bytes: raw)]
            for (id, client) in hub.clients where client.phase == .live { yield(frame, to: id, in: &hub) }
        }
    }

    /// The slot's link completed its handshake: clients waiting for the radio get theirs.
    public func linkReady() {
        hub.withLock { hub in
            hub.ready = true
            for (id, client) in hub.clients {
                if case .waitingForLink(let nonce) = client.phase { answerHandshake(nonce: nonce, for: id, in: &hub) }
            }
        }
    }

    /// The slot's link went down: served clients are closed, so that none goes on believing
    /// it is connected to a radio that no longer answers.
    public func linkLost() {
        hub.withLock { hub in
            hub.ready = false
            for client in hub.clients.values where client.phase == .live {
                client.outbound.finish()
                client.channel.close(promise: nil)
            }
        }
    }

    /// The slot wrote a packet: clients told the outbox was full hear when it has room.
    public func outboxDrained(room: OutboxRoom) {
        guard room.free > 0 else { return }
        hub.withLock { hub in
            let waiting = hub.clients.filter(\.value.waitingForRoom).map(\.key)
            for id in waiting {
                hub.clients[id]?.waitingForRoom = false
                deliver([.with { $0.queueStatus = Self.queueStatus(result: 0, room: room, packetID: Self.heartbeatPacketID) }], to: id, in: &hub)
            }
        }
    }

    // MARK: Serving clients

    /// A client socket's kernel send buffer: radio traffic is small, and a small buffer lets a
    /// client that stops reading reach its own bounded queue (and its drops) quickly instead
    /// of parking megabytes in the kernel.
    static let socketSendBuffer = 64 * 1024

    /// Binds the port of `configuration`.
    public static func bind(_ configuration: VirtualRadioConfiguration) async throws -> VirtualRadioListener {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(socketSendBuffer))
            .bind(host: configuration.host, port: configuration.port) { channel in StreamChannel.configure(channel) }
        return VirtualRadioListener(server: server, configuration: configuration, port: server.channel.localAddress?.port ?? configuration.port)
    }

    /// Accepts and serves clients until the listener is closed or the task cancelled; its
    /// clients are closed then. Their packets go to `host`.
    public func serve(_ listener: VirtualRadioListener, host: some VirtualRadioHost) async {
        logger.info("virtual radio listening", metadata: ["slot": "\(slot)", "address": "\(listener.configuration.host):\(listener.port)"])
        await withDiscardingTaskGroup { group in
            do {
                try await listener.server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection, policy: listener.configuration, host: host) }
                    }
                }
            } catch {
                logger.debug("virtual radio listener ended", metadata: ["slot": "\(slot)", "error": "\(error)"])
            }
            hub.withLock { hub in
                for client in hub.clients.values { client.channel.close(promise: nil) }
            }
            group.cancelAll()
        }
    }

    private func serve(_ connection: StreamChannel, policy: VirtualRadioConfiguration, host: any VirtualRadioHost) async {
        let (outgoing, continuation) = AsyncStream<[ByteBuffer]>.makeStream(bufferingPolicy: .bufferingOldest(policy.clientBuffer))
        let address = connection.channel.remoteAddress
        let peer = "\(address?.ipAddress ?? "?"):\(address?.port ?? 0)"
        guard let id = admit(Client(peer: peer, outbound: continuation, channel: connection.channel, policy: policy, host: host)) else {
            try? await connection.channel.close()
            return
        }
        defer { leave(id) }
        try? await connection.executeThenClose { inbound, outbound in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await batch in outgoing {
                        do { try await outbound.write(contentsOf: batch.map(StreamOutbound.frame)) } catch { return }
                    }
                }
                group.addTask {
                    do {
                        for try await item in inbound { self.received(item, from: id) }
                    } catch {}
                }
                await group.next()
                continuation.finish()
                group.cancelAll()
            }
        }
    }

    private func admit(_ client: Client) -> Int? {
        let admitted: Int? = hub.withLock { hub in
            guard hub.clients.count < client.policy.maxClients else {
                hub.counters.turnedAway += 1
                return nil
            }
            let id = hub.nextClient
            hub.nextClient += 1
            hub.clients[id] = client
            hub.counters.connections += 1
            metrics.clients.record(hub.clients.count)
            return id
        }
        if admitted == nil {
            logger.warning("virtual radio client turned away: too many clients", metadata: ["slot": "\(slot)", "peer": "\(client.peer)", "maxClients": "\(client.policy.maxClients)"])
        } else {
            logger.info("virtual radio client connected", metadata: ["slot": "\(slot)", "peer": "\(client.peer)"])
        }
        return admitted
    }

    private func leave(_ id: Int) {
        let peer: String? = hub.withLock { hub in
            let client = hub.clients.removeValue(forKey: id)
            metrics.clients.record(hub.clients.count)
            return client?.peer
        }
        logger.info("virtual radio client disconnected", metadata: ["slot": "\(slot)", "peer": "\(peer ?? "?")"])
    }

    private func received(_ item: StreamItem, from id: Int) {
        guard case .frame(let frame) = item, let request = try? Meshtastic_ToRadio(serializedBytes: Array(frame.readableBytesView)) else {
            hub.withLock { $0.counters.undecodable += 1 }
            return
        }
        switch request.payloadVariant {
        case .wantConfigID(let nonce):
            hub.withLock { hub in
                guard hub.clients[id] != nil else { return }
                if hub.ready {
                    answerHandshake(nonce: nonce, for: id, in: &hub)
                } else {
                    hub.clients[id]?.phase = .waitingForLink(nonce: nonce)
                }
            }
        case .packet(let packet):
            submit(packet, from: id)
        case .heartbeat:
            hub.withLock { hub in
                guard let room = hub.clients[id]?.host.outboxRoom else { return }
                deliver([.with { $0.queueStatus = Self.queueStatus(result: 0, room: room, packetID: Self.heartbeatPacketID) }], to: id, in: &hub)
            }
        case .disconnect:
            hub.withLock { $0.clients[id]?.outbound.finish() }
        default:
            // XModem file transfer and the MQTT client proxy belong to one client and one
            // radio; they are not shared.
            logger.debug("virtual radio request not served", metadata: ["slot": "\(slot)", "request": "\(request.payloadVariant.map { "\($0)".prefix(40) } ?? "empty")"])
        }
    }

    private func submit(_ packet: Meshtastic_MeshPacket, from id: Int) {
        hub.withLock { hub in
            guard let client = hub.clients[id] else { return }
            var replies: [Meshtastic_FromRadio] = []
            if !client.policy.allowAdmin, let reason = AdminPolicy.refusal(of: packet) {
                hub.counters.adminRefused += 1
                metrics.adminRefused.increment()
                logger.notice("virtual radio refused an admin request", metadata: ["slot": "\(slot)", "peer": "\(client.peer)", "reason": "\(reason)"])
                // Taken (so the client does not send it again), answered NOT_AUTHORIZED, explained.
                replies.append(.with { $0.queueStatus = Self.queueStatus(result: 0, room: client.host.outboxRoom, packetID: packet.id) })
                replies.append(.with { $0.packet = refusal(of: packet, myNodeNum: hub.mirror.myInfo?.myNodeNum ?? 0) })
                replies.append(.with {
                    $0.clientNotification = .with { notification in
                        notification.replyID = packet.id
                        notification.time = UInt32(Date().timeIntervalSince1970)
                        notification.level = .warning
                        notification.message = "MeshBus refused \(reason): it could change the radio of slot '\(slot)', which allows that only with virtualRadio.allowAdmin"
                    }
                })
            } else {
                switch client.host.submit(packet, client: "virtualRadio:\(client.peer)") {
                case .queued(let radioPacketID, let room):
                    hub.counters.packets += 1
                    metrics.packets.increment()
                    hub.routes.add(radioPacketID: radioPacketID, client: id, clientPacketID: packet.id, now: .now)
                    if room.free == 0 { hub.clients[id]?.waitingForRoom = true }
                    replies.append(.with { $0.queueStatus = Self.queueStatus(result: 0, room: room, packetID: packet.id) })
                case .full(let room):
                    hub.counters.outboxFull += 1
                    hub.clients[id]?.waitingForRoom = true
                    replies.append(.with { $0.queueStatus = Self.queueStatus(result: Self.outboxFullResult, room: room, packetID: packet.id) })
                }
            }
            deliver(replies, to: id, in: &hub)
        }
    }

    /// The Routing NAK a radio gives for a request it will not carry out.
    private func refusal(of packet: Meshtastic_MeshPacket, myNodeNum: UInt32) -> Meshtastic_MeshPacket {
        .with { nak in
            nak.from = myNodeNum
            nak.to = myNodeNum
            nak.id = UInt32.random(in: 1...UInt32.max)
            nak.channel = packet.channel
            nak.rxTime = UInt32(Date().timeIntervalSince1970)
            nak.priority = .ack
            nak.decoded.portnum = .routingApp
            nak.decoded.requestID = packet.id
            nak.decoded.payload = (try? Meshtastic_Routing.with { $0.errorReason = .notAuthorized }.serializedData()) ?? Data()
        }
    }

    private func answerHandshake(nonce: UInt32, for id: Int, in hub: inout Hub) {
        hub.counters.handshakes += 1
        hub.clients[id]?.phase = .live
        deliver(hub.mirror.handshake(nonce: nonce), to: id, in: &hub)
    }

    private func deliver(_ messages: [Meshtastic_FromRadio], to id: Int, in hub: inout Hub) {
        let frames = messages.compactMap { message in (try? message.serializedBytes() as [UInt8]).map { ByteBuffer(bytes: $0) } }
        yield(frames, to: id, in: &hub)
    }

    private func yield(_ frames: [ByteBuffer], to id: Int, in hub: inout Hub) {
        guard let client = hub.clients[id] else { return }
        if case .dropped = client.outbound.yield(frames) {
            hub.counters.framesDropped += frames.count
            metrics.framesDropped.increment(by: frames.count)
        }
    }

    private static func queueStatus(result: Int32, room: OutboxRoom, packetID: UInt32) -> Meshtastic_QueueStatus {
        .with {
            $0.res = result
            $0.free = UInt32(max(0, room.free))
            $0.maxlen = UInt32(max(0, room.capacity))
            $0.meshPacketID = packetID
        }
    }
}
