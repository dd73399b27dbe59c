import CoreMetrics
import DescriptorBudget
import Logging
import MeshtasticProtocol
import NIOCore
import NIOPosix
import Synchronization

import struct Foundation.Data
import struct Foundation.Date

/// What a slot offers its virtual radio port: the way to the radio, through the slot's outbox,
/// and the slot's node DB for handshakes. The virtual radio calls it only while holding no
/// lock of its own, so the host may take its own locks freely.
public protocol VirtualRadioHost: Sendable {
    /// Queues a client's packet (`client` is its `address:port`) for the radio like any send
    /// (paced, tracked, published on `meshtastic.sent` and `meshtastic.send.status`). The
    /// packet keeps its id unless another send holds it; the id it goes out with is returned.
    func submit(_ packet: Meshtastic_MeshPacket, client: String, ttl: Duration) -> VirtualRadioSubmission
    /// Room in the slot's outbox now.
    var outboxRoom: OutboxRoom { get }
    /// The slot's node DB, in the order its nodes were first heard of.
    func nodeInfos() -> [Meshtastic_NodeInfo]
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

/// A bound virtual radio port, served by ``VirtualRadio/serve(_:host:)`` until closed.
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

    /// Stops accepting and closes this port's clients (as ``VirtualRadio/serve(_:host:)`` ends);
    /// returns once the port is free to bind again.
    public func close() async {
        server.channel.close(promise: nil)
        try? await server.channel.closeFuture.get()
    }

    /// Starts closing, for callers that cannot wait.
    public func beginClosing() {
        server.channel.close(promise: nil)
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
    let slot: String
    private let hub: Mutex<Hub>
    private let metrics: Metrics
    private let logger: Logger
    /// Turns clients away while the process is low on file descriptors.
    private let descriptors = DescriptorGate()

    /// What the virtual radio has done, for `status` and tests.
    public struct Counters: Sendable, Equatable {
        /// Connections accepted.
        public var connections = 0
        /// Connections closed at once because `maxClients` were connected.
        public var turnedAway = 0
        /// Connections closed at once because the process was low on file descriptors.
        public var lowOnDescriptors = 0
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
        /// Requests not served: packets before the client's handshake, XModem, MQTT proxy.
        public var ignored = 0
        /// Client packets that failed after they were queued (expired, refused by the radio,
        /// slot stopped), reported to their client with a Routing NAK.
        public var failedSends = 0
    }

    /// `QueueStatus.res` for a packet the outbox had no room for (non-zero: not taken).
    static let outboxFullResult: Int32 = 32
    /// The packet id of a `QueueStatus` that answers no packet (a heartbeat, room coming back).
    private static let noPacketID: UInt32 = 0

    private enum Phase: Equatable {
        case connected
        case waitingForLink(nonce: UInt32)
        /// Its handshake is being built (the slot's nodes are read outside the hub lock);
        /// live traffic meanwhile waits in the client's `backlog`.
        case handshaking(nonce: UInt32)
        case live
    }

    /// What waits to be written to one client: the radio's frames as they came, or messages
    /// MeshBus made (handshakes, replies), serialized by the client's own writer task so
    /// that a large handshake costs the hub lock nothing but copies.
    private enum Outgoing: Sendable {
        case frames([ByteBuffer])
        case messages([Meshtastic_FromRadio])
    }

    private struct Client {
        let peer: String
        let listener: Int
        let outbound: AsyncStream<Outgoing>.Continuation
        let channel: any Channel
        let policy: VirtualRadioConfiguration
        let host: any VirtualRadioHost
        var phase = Phase.connected
        /// Told the outbox was full; gets a `QueueStatus` when room comes back.
        var waitingForRoom = false
        /// Live traffic that came while its handshake was being built, sent right after it.
        var backlog: [Outgoing] = []

        /// Whether it takes packets: after its `want_config_id`, like a radio.
        var inSession: Bool {
            switch phase {
            case .live, .handshaking: true
            case .connected, .waitingForLink: false
            }
        }
    }

    private struct Hub {
        var mirror = RadioMirror()
        var ready = false
        var clients: [Int: Client] = [:]
        var nextClient = 1
        var nextListener = 1
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

    /// Removes the client gauge (the slot left the configuration); the counters stay, as
    /// process totals, like the slot's own.
    public func destroyGauges() {
        metrics.clients.destroy()
    }

    // MARK: The radio side (called by the slot, in the order the link reports)

    /// A message from the radio: kept for handshakes, and passed on live to every client
    /// (a reply to one client's packet to that client only).
    public func radio(_ message: Meshtastic_FromRadio, raw: [UInt8]) {
        hub.withLock { hub in
            guard hub.mirror.absorb(message) == .forward, hub.ready, !hub.clients.isEmpty else { return }
            if case .packet(let packet)? = message.payloadVariant, case .decoded(let data)? = packet.payloadVariant, data.requestID != 0,
                let route = hub.routes.route(requestID: data.requestID, now: .now)
            {
                guard hub.clients[route.client] != nil else { return }
                var reply = message
                reply.packet.decoded.requestID = route.clientPacketID
                deliver(.messages([reply]), to: route.client, in: &hub)
                return
            }
            let frame = Outgoing.frames([ByteBuffer(bytes: raw)])
            for (id, client) in hub.clients where client.inSession { deliver(frame, to: id, in: &hub) }
        }
    }

    /// The slot's link completed its handshake: clients waiting for the radio get theirs.
    public func linkReady() {
        let host: (any VirtualRadioHost)? = hub.withLock { hub in
            hub.ready = true
            return hub.clients.values.first { if case .waitingForLink = $0.phase { true } else { false } }?.host
        }
        guard let host else { return }
        let nodes = host.nodeInfos()
        hub.withLock { hub in
            guard hub.ready else { return }
            for (id, client) in hub.clients {
                if case .waitingForLink(let nonce) = client.phase { answerHandshake(nonce: nonce, nodes: nodes, for: id, in: &hub) }
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

    /// The outbox gained room (a packet went out or expired): clients told it was full hear
    /// that it has room.
    public func outboxDrained(room: OutboxRoom) {
        guard room.free > 0 else { return }
        hub.withLock { hub in
            let waiting = hub.clients.filter(\.value.waitingForRoom).map(\.key)
            for id in waiting {
                hub.clients[id]?.waitingForRoom = false
                yield(.messages([.with { $0.queueStatus = Self.queueStatus(result: 0, room: room, packetID: Self.noPacketID) }]), to: id, in: &hub)
            }
        }
    }

    /// A client's packet will never reach the radio (it expired in the outbox, the radio
    /// refused it, the slot stopped): its client gets a Routing NAK for it, as from a radio
    /// that gave up, so that nothing it sent vanishes without an answer.
    public func sendFailed(radioPacketID: UInt32, error: Meshtastic_Routing.Error) {
        hub.withLock { hub in
            guard let route = hub.routes.route(requestID: radioPacketID, now: .now), hub.clients[route.client] != nil else { return }
            hub.counters.failedSends += 1
            let nak = Self.nak(requestID: route.clientPacketID, channel: 0, error: error, myNodeNum: hub.mirror.myInfo?.myNodeNum ?? 0)
            yield(.messages([.with { $0.packet = nak }]), to: route.client, in: &hub)
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
        logger.info("virtual radio listening", metadata: ["slot": "\(slot)", "address": "\(listener.address)"])
        let listenerID = hub.withLock { hub in
            defer { hub.nextListener += 1 }
            return hub.nextListener
        }
        await withDiscardingTaskGroup { group in
            do {
                try await listener.server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection, listener: listenerID, policy: listener.configuration, host: host) }
                    }
                }
            } catch {
                logger.debug("virtual radio listener ended", metadata: ["slot": "\(slot)", "error": "\(error)"])
            }
            // This port's clients go with it (a writer stuck on a client that reads nothing
            // is released by the close); clients of a port opened since stay.
            hub.withLock { hub in
                for client in hub.clients.values where client.listener == listenerID { client.channel.close(promise: nil) }
            }
            group.cancelAll()
        }
    }

    private func serve(_ connection: StreamChannel, listener: Int, policy: VirtualRadioConfiguration, host: any VirtualRadioHost) async {
        let (outgoing, continuation) = AsyncStream<Outgoing>.makeStream(bufferingPolicy: .bufferingOldest(policy.clientBuffer))
        let address = connection.channel.remoteAddress
        let peer = "\(address?.ipAddress ?? "?"):\(address?.port ?? 0)"
        let client = Client(peer: peer, listener: listener, outbound: continuation, channel: connection.channel, policy: policy, host: host)
        guard let id = admit(client) else {
            try? await connection.channel.close()
            return
        }
        defer { leave(id) }
        try? await connection.executeThenClose { inbound, outbound in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await item in outgoing {
                        let frames: [ByteBuffer]
                        switch item {
                        case .frames(let raw): frames = raw
                        case .messages(let messages): frames = messages.compactMap { message in (try? message.serializedBytes() as [UInt8]).map { ByteBuffer(bytes: $0) } }
                        }
                        do { try await outbound.write(contentsOf: frames.map(StreamOutbound.frame)) } catch { return }
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
        if let refusal = descriptors.check() {
            hub.withLock { $0.counters.lowOnDescriptors += 1 }
            if refusal.shouldLog {
                logger.warning(
                    "virtual radio client turned away: \(refusal) (logged once a minute; counted in lowOnDescriptors)",
                    metadata: ["slot": "\(slot)", "peer": "\(client.peer)", "refused": "\(refusal.total)"]
                )
            }
            return nil
        }
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
        switch ClientRequest(item) {
        case .undecodable:
            hub.withLock { $0.counters.undecodable += 1 }
        case .wantConfig(let nonce):
            // The slot's nodes are read outside the hub lock; live traffic meanwhile is held
            // for the client and sent after its handshake. Without a link it waits for one.
            let host: (any VirtualRadioHost)? = hub.withLock { hub in
                guard hub.clients[id] != nil else { return nil }
                hub.clients[id]?.backlog = []
                hub.clients[id]?.phase = hub.ready ? .handshaking(nonce: nonce) : .waitingForLink(nonce: nonce)
                return hub.ready ? hub.clients[id]?.host : nil
            }
            guard let host else { return }
            let nodes = host.nodeInfos()
            hub.withLock { hub in
                guard case .handshaking(nonce)? = hub.clients[id]?.phase else { return }
                guard hub.ready else {
                    hub.clients[id]?.phase = .waitingForLink(nonce: nonce)
                    hub.clients[id]?.backlog = []
                    return
                }
                answerHandshake(nonce: nonce, nodes: nodes, for: id, in: &hub)
            }
        case .packet(let packet):
            submit(packet, from: id)
        case .heartbeat:
            guard let room = hub.withLock({ $0.clients[id]?.host })?.outboxRoom else { return }
            hub.withLock { hub in
                guard hub.clients[id] != nil else { return }
                if room.free == 0 { hub.clients[id]?.waitingForRoom = true }
                yield(.messages([.with { $0.queueStatus = Self.queueStatus(result: 0, room: room, packetID: Self.noPacketID) }]), to: id, in: &hub)
            }
        case .disconnect:
            hub.withLock { $0.clients[id]?.outbound.finish() }
        case .notServed(let request):
            hub.withLock { $0.counters.ignored += 1 }
            logger.debug("virtual radio request not served", metadata: ["slot": "\(slot)", "request": "\(request)"])
        }
    }

    /// What to do with a client's packet, decided under the hub lock and carried out after it.
    private enum Plan {
        case ignore
        case refuseAdmin(reason: String, clientPacketID: UInt32, channel: UInt32, peer: String, host: any VirtualRadioHost)
        /// To the slot's outbox; a reply route for `packet.id` is already held for the client.
        case forward(Meshtastic_MeshPacket, clientPacketID: UInt32, peer: String, ttl: Duration, host: any VirtualRadioHost)
    }

    private func submit(_ packet: Meshtastic_MeshPacket, from id: Int) {
        let plan: Plan = hub.withLock { hub in
            guard let client = hub.clients[id] else { return .ignore }
            guard client.inSession else {
                // Like a radio before `want_config_id`: no session, nothing sent.
                hub.counters.ignored += 1
                return .ignore
            }
            var packet = packet
            let clientPacketID = packet.id
            if !client.policy.allowAdmin, let reason = AdminPolicy.refusal(of: packet) {
                hub.counters.adminRefused += 1
                return .refuseAdmin(reason: reason, clientPacketID: clientPacketID, channel: packet.channel, peer: client.peer, host: client.host)
            }
            // An id that replies may still come back for (another client's, or this one's
            // earlier packet) is not reused on the way to the radio.
            while packet.id == 0 || hub.routes.route(requestID: packet.id, now: .now) != nil { packet.id = UInt32.random(in: 1...UInt32.max) }
            hub.routes.add(radioPacketID: packet.id, client: id, clientPacketID: clientPacketID, now: .now)
            return .forward(packet, clientPacketID: clientPacketID, peer: client.peer, ttl: client.policy.sendTimeout, host: client.host)
        }
        switch plan {
        case .ignore:
            return
        case .refuseAdmin(let reason, let clientPacketID, let channel, let peer, let host):
            metrics.adminRefused.increment()
            logger.notice("virtual radio refused an admin request", metadata: ["slot": "\(slot)", "peer": "\(peer)", "reason": "\(reason)"])
            let room = host.outboxRoom
            hub.withLock { hub in
                // Taken (so the client does not send it again), answered NOT_AUTHORIZED, explained.
                let nak = Self.nak(requestID: clientPacketID, channel: channel, error: .notAuthorized, myNodeNum: hub.mirror.myInfo?.myNodeNum ?? 0)
                yield(.messages([
                    .with { $0.queueStatus = Self.queueStatus(result: 0, room: room, packetID: clientPacketID) },
                    .with { $0.packet = nak },
                    .with {
                        $0.clientNotification = .with { notification in
                            notification.replyID = clientPacketID
                            notification.time = UInt32(Date().timeIntervalSince1970)
                            notification.level = .warning
                            notification.message = "MeshBus refused \(reason): it could change the radio of slot '\(slot)', which allows that only with virtualRadio.allowAdmin"
                        }
                    },
                ]), to: id, in: &hub)
            }
        case .forward(let packet, let clientPacketID, let peer, let ttl, let host):
            let submission = host.submit(packet, client: peer, ttl: ttl)
            if case .queued = submission { metrics.packets.increment() }
            hub.withLock { hub in
                let reply: Meshtastic_QueueStatus
                switch submission {
                case .queued(let radioPacketID, let room):
                    hub.counters.packets += 1
                    if radioPacketID != packet.id {
                        // The slot had a send in flight with that id and gave it another.
                        hub.routes.remove(radioPacketID: packet.id)
                        hub.routes.add(radioPacketID: radioPacketID, client: id, clientPacketID: clientPacketID, now: .now)
                    }
                    if room.free == 0 { hub.clients[id]?.waitingForRoom = true }
                    reply = Self.queueStatus(result: 0, room: room, packetID: clientPacketID)
                case .full(let room):
                    hub.counters.outboxFull += 1
                    hub.routes.remove(radioPacketID: packet.id)
                    hub.clients[id]?.waitingForRoom = true
                    reply = Self.queueStatus(result: Self.outboxFullResult, room: room, packetID: clientPacketID)
                }
                yield(.messages([.with { $0.queueStatus = reply }]), to: id, in: &hub)
            }
        }
    }

    /// The Routing NAK a radio gives for a packet it will not carry out, from itself.
    private static func nak(requestID: UInt32, channel: UInt32, error: Meshtastic_Routing.Error, myNodeNum: UInt32) -> Meshtastic_MeshPacket {
        .with { nak in
            nak.from = myNodeNum
            nak.to = myNodeNum
            nak.id = UInt32.random(in: 1...UInt32.max)
            nak.channel = channel
            nak.rxTime = UInt32(Date().timeIntervalSince1970)
            nak.priority = .ack
            nak.decoded.portnum = .routingApp
            nak.decoded.requestID = requestID
            nak.decoded.payload = (try? Meshtastic_Routing.with { $0.errorReason = error }.serializedData()) ?? Data()
        }
    }

    private func answerHandshake(nonce: UInt32, nodes: [Meshtastic_NodeInfo], for id: Int, in hub: inout Hub) {
        hub.counters.handshakes += 1
        hub.clients[id]?.phase = .live
        yield(.messages(hub.mirror.handshake(nonce: nonce, nodes: nodes)), to: id, in: &hub)
        for item in hub.clients[id]?.backlog ?? [] { yield(item, to: id, in: &hub) }
        hub.clients[id]?.backlog = []
    }

    /// Live traffic for a client: sent, or held while its handshake is being built (within
    /// its buffer; past it, counted as dropped like any traffic it cannot take).
    private func deliver(_ item: Outgoing, to id: Int, in hub: inout Hub) {
        guard let client = hub.clients[id] else { return }
        guard case .handshaking = client.phase else {
            yield(item, to: id, in: &hub)
            return
        }
        guard client.backlog.count < client.policy.clientBuffer else {
            hub.counters.framesDropped += 1
            metrics.framesDropped.increment()
            return
        }
        hub.clients[id]?.backlog.append(item)
    }

    private func yield(_ item: Outgoing, to id: Int, in hub: inout Hub) {
        guard let client = hub.clients[id] else { return }
        if case .dropped = client.outbound.yield(item) {
            let count = switch item {
            case .frames(let frames): frames.count
            case .messages(let messages): messages.count
            }
            hub.counters.framesDropped += count
            metrics.framesDropped.increment(by: count)
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
