import Foundation
import MeshBusModel
import MeshBusTestSupport
import MeshtasticProtocol
import NIOCore
import NIOPosix
import RadioLink
import RadioSimulator
import Testing
import VirtualRadio

@testable import Broker

/// A Meshtastic API client over real TCP, speaking the stream framing: what the official
/// clients do, reduced to sending `ToRadio` and reading `FromRadio`.
final class RadioTestClient {
    private var iterator: AsyncStream<Meshtastic_FromRadio>.Iterator
    private let requests: AsyncStream<StreamOutbound>.Continuation
    private let pump: Task<Void, Never>

    init(port: Int) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in StreamChannel.configure(channel) }
        let (messages, delivered) = AsyncStream<Meshtastic_FromRadio>.makeStream()
        let (requests, requestContinuation) = AsyncStream<StreamOutbound>.makeStream()
        iterator = messages.makeAsyncIterator()
        self.requests = requestContinuation
        pump = Task {
            try? await channel.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { for await request in requests { try await outbound.write(request) } }
                    group.addTask {
                        for try await item in inbound {
                            if case .frame(let frame) = item, let message = try? Meshtastic_FromRadio(serializedBytes: Array(frame.readableBytesView)) {
                                delivered.yield(message)
                            }
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
            delivered.finish()
        }
    }

    deinit {
        requests.finish()
        pump.cancel()
    }

    func send(_ request: Meshtastic_ToRadio) throws {
        requests.yield(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
    }

    func sendRaw(_ bytes: [UInt8]) {
        requests.yield(.raw(ByteBuffer(bytes: bytes)))
    }

    /// The next message, nil once the connection closed.
    func next() async -> Meshtastic_FromRadio? { await iterator.next() }

    /// Messages up to and including the first that `stop` accepts.
    func read(until stop: (Meshtastic_FromRadio) -> Bool) async -> [Meshtastic_FromRadio] {
        var messages: [Meshtastic_FromRadio] = []
        while let message = await next() {
            messages.append(message)
            if stop(message) { break }
        }
        return messages
    }

    /// Runs the handshake with `nonce`; returns the burst, `config_complete_id` last.
    func handshake(nonce: UInt32) async throws -> [Meshtastic_FromRadio] {
        try send(.with { $0.wantConfigID = nonce })
        return await read { $0.configCompleteID == nonce }
    }

    /// The next packet (other messages skipped).
    func nextPacket() async -> Meshtastic_MeshPacket? {
        while let message = await next() {
            if case .packet(let packet)? = message.payloadVariant { return packet }
        }
        return nil
    }
}

extension Meshtastic_FromRadio {
    var hasPacket: Bool { if case .packet? = payloadVariant { true } else { false } }
    var hasNodeInfo: Bool { if case .nodeInfo? = payloadVariant { true } else { false } }
    var hasChannel: Bool { if case .channel? = payloadVariant { true } else { false } }
    var hasQueueStatus: Bool { if case .queueStatus? = payloadVariant { true } else { false } }
    var hasClientNotification: Bool { if case .clientNotification? = payloadVariant { true } else { false } }
}

/// A raw socket that connects and then misbehaves: never reads (with a tiny receive
/// buffer), or writes garbage.
struct RawSocket: ~Copyable {
    let descriptor: Int32

    init(port: Int, receiveBuffer: Int32? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    deinit { close(descriptor) }
}

@Suite(.timeLimit(.minutes(1))) struct VirtualRadioPortTests {
    /// A broker with one slot on a simulated radio (no background traffic, fast ACKs, no
    /// text rate limit, no send spacing) and a virtual radio port on a picked port.
    func withBroker(
        clientBuffer: Int = 1024,
        allowAdmin: Bool = false,
        sendTimeout: Duration = .seconds(60),
        textSpacing: Duration? = nil,
        _ body: (RadioSimulator, Broker, Int) async throws -> Void
    ) async throws {
        try await BrokerHarness.run { slot in
            slot.timing.sendSpacing = textSpacing.map { [.textMessageApp: $0] } ?? [:]
            slot.virtualRadio = VirtualRadioConfiguration(port: 0, allowAdmin: allowAdmin, clientBuffer: clientBuffer, sendTimeout: sendTimeout)
        } _: { simulator, broker in
            let address = try #require(broker.virtualRadioAddresses.first?.address)
            let port = try #require(Int(address.split(separator: ":").last ?? ""))
            try await body(simulator, broker, port)
        }
    }

    func virtualRadioStatus(_ broker: Broker) throws -> JSONValue {
        let result = try broker.execute(.status(slot: "radio"), requestID: nil).get()
        return try #require(result["slots"]?["radio"]?["virtualRadio"] ?? result["virtualRadio"])
    }

    @Test func twoClientsGetTheirOwnHandshakeAndTheSameLivePackets() async throws {
        try await withBroker { simulator, _, port in
            let first = try await RadioTestClient(port: port)
            let second = try await RadioTestClient(port: port)
            let firstBurst = try await first.handshake(nonce: 1111)
            let secondBurst = try await second.handshake(nonce: 2222)
            #expect(firstBurst.last?.configCompleteID == 1111)
            #expect(secondBurst.last?.configCompleteID == 2222)
            #expect(Array(firstBurst.dropLast()) == Array(secondBurst.dropLast()))
            let nodes = Set(firstBurst.compactMap { $0.hasNodeInfo ? $0.nodeInfo.num : nil })
            #expect(nodes == Set(simulator.nodes.map(\.num)))
            #expect(firstBurst.first?.myInfo.myNodeNum == simulator.nodes.first?.num)
            #expect(firstBurst.filter(\.hasChannel).count == 8)

            let emitted = simulator.emit(.text)
            #expect(await first.nextPacket() == emitted)
            #expect(await second.nextPacket() == emitted)
        }
    }

    @Test func repliesGoToTheClientThatSentEvenWhenClientsPickTheSameID() async throws {
        try await withBroker { simulator, _, port in
            let first = try await RadioTestClient(port: port)
            let second = try await RadioTestClient(port: port)
            _ = try await first.handshake(nonce: 1)
            _ = try await second.handshake(nonce: 2)
            let target = simulator.nodes[1].num
            for (client, text) in [(first, "from first"), (second, "from second")] {
                try client.send(.with {
                    $0.packet = .with { packet in
                        packet.id = 42
                        packet.to = target
                        packet.wantAck = true
                        packet.decoded.portnum = .textMessageApp
                        packet.decoded.payload = Data(text.utf8)
                    }
                })
            }
            for client in [first, second] {
                let replies = await client.read { $0.hasPacket && $0.packet.decoded.portnum == .routingApp }
                let queued = replies.filter(\.hasQueueStatus).map(\.queueStatus)
                #expect(queued.map(\.meshPacketID) == [42])
                #expect(queued.first?.res == 0)
                #expect(replies.last?.packet.decoded.requestID == 42)
                let routing = try Meshtastic_Routing(serializedBytes: replies.last!.packet.decoded.payload)
                #expect(routing.errorReason == .none)
            }
            let reached = simulator.receivedPackets.filter { $0.decoded.portnum == .textMessageApp }
            #expect(Set(reached.map { String(decoding: $0.decoded.payload, as: UTF8.self) }) == ["from first", "from second"])
            #expect(Set(reached.map(\.id)).count == 2, "ids made unique on the way to the radio")
        }
    }

    @Test func heartbeatIsAnsweredByTheVirtualRadioWithTheSlotsOutbox() async throws {
        try await withBroker { _, broker, port in
            let client = try await RadioTestClient(port: port)
            _ = try await client.handshake(nonce: 7)
            try client.send(.with { $0.heartbeat = .init() })
            let status = await client.read(until: \.hasQueueStatus).last?.queueStatus
            #expect(status?.meshPacketID == 0)
            #expect(status?.maxlen == UInt32(broker.configuration.outboxCapacity), "the slot's outbox, not the radio's 16-place queue")
        }
    }

    @Test func adminChangesAreRefusedAndReadsReachTheRadio() async throws {
        try await withBroker { simulator, broker, port in
            let client = try await RadioTestClient(port: port)
            let burst = try await client.handshake(nonce: 3)
            let myNodeNum = try #require(burst.first?.myInfo.myNodeNum)
            func admin(_ id: UInt32, _ build: (inout Meshtastic_AdminMessage) -> Void) throws -> Meshtastic_ToRadio {
                var message = Meshtastic_AdminMessage()
                build(&message)
                let payload = try message.serializedData()
                return .with {
                    $0.packet = .with { packet in
                        packet.id = id
                        packet.to = myNodeNum
                        packet.wantAck = true
                        packet.decoded.portnum = .adminApp
                        packet.decoded.wantResponse = true
                        packet.decoded.payload = payload
                    }
                }
            }
            try client.send(admin(501) { $0.setOwner = .with { $0.longName = "Intruder" } })
            let refusal = await client.read(until: \.hasClientNotification)
            let nak = try #require(refusal.first(where: \.hasPacket)?.packet)
            #expect(nak.decoded.portnum == .routingApp)
            #expect(nak.decoded.requestID == 501)
            #expect(try Meshtastic_Routing(serializedBytes: nak.decoded.payload).errorReason == .notAuthorized)
            #expect(refusal.first(where: \.hasQueueStatus)?.queueStatus.meshPacketID == 501, "taken, so the client does not send it again")
            let notification = try #require(refusal.last?.clientNotification)
            #expect(notification.replyID == 501)
            #expect(notification.message.contains("set_owner"))

            try client.send(admin(502) { $0.getDeviceMetadataRequest = true })
            let answer = await client.read { $0.hasPacket && $0.packet.decoded.portnum == .adminApp }.last?.packet
            #expect(answer?.decoded.requestID == 502)
            #expect(try Meshtastic_AdminMessage(serializedBytes: answer?.decoded.payload ?? Data()).getDeviceMetadataResponse.firmwareVersion.isEmpty == false)
            #expect(!simulator.receivedPackets.contains { $0.decoded.payload.contains(Data("Intruder".utf8)) })
            #expect(try virtualRadioStatus(broker)["adminRefused"] == .int(1))
        }
    }

    @Test func aClientThatNeverReadsOrSendsGarbageHoldsNobodyBack() async throws {
        try await withBroker(clientBuffer: 64) { simulator, broker, port in
            let good = try await RadioTestClient(port: port)
            _ = try await good.handshake(nonce: 10)
            let stalled = try RawSocket(port: port, receiveBuffer: 4096)
            let config = try Meshtastic_ToRadio.with { $0.wantConfigID = 11 }.serializedBytes() as [UInt8]
            stalled.write(try StreamFraming.frame(config))
            let noisy = try RawSocket(port: port)
            noisy.write(Array(repeating: 0x55, count: 300) + Array("not a frame\n".utf8))
            noisy.write(try StreamFraming.frame([0x0A, 0x03, 0xFF, 0xFF, 0xFF]))

            var emitted: [UInt32] = []
            var received: [UInt32] = []
            // Until the stalled client's own queue overflows (the kernel buffers fill first), in
            // bursts the good client's 64-place queue holds.
            while try virtualRadioStatus(broker)["framesDropped"]?.int64Value ?? 0 == 0, emitted.count < 20_000 {
                for _ in 0..<32 { emitted.append(simulator.emit(.text).id) }
                while received.count < emitted.count, let packet = await good.nextPacket() { received.append(packet.id) }
            }
            #expect(received == emitted, "the good client got every packet, in order")
            let status = try virtualRadioStatus(broker)
            #expect((status["framesDropped"]?.int64Value ?? 0) > 0)
            #expect((status["undecodable"]?.int64Value ?? 0) >= 1)
            #expect(status["clients"] == .int(3))
        }
    }

    func text(_ id: UInt32, _ body: String) -> Meshtastic_ToRadio {
        .with {
            $0.packet = .with { packet in
                packet.id = id
                packet.wantAck = true
                packet.decoded.portnum = .textMessageApp
                packet.decoded.payload = Data(body.utf8)
            }
        }
    }

    @Test func aPacketThatExpiresInTheOutboxIsNAKedToItsClient() async throws {
        try await withBroker(sendTimeout: .milliseconds(300), textSpacing: .seconds(5)) { simulator, broker, port in
            let client = try await RadioTestClient(port: port)
            _ = try await client.handshake(nonce: 40)
            for id: UInt32 in [61, 62] { try client.send(text(id, "spaced \(id)")) }
            // 61 is written at once; 62 waits for the spacing and expires first.
            let replies = await client.read { $0.hasPacket && $0.packet.decoded.requestID == 62 }
            let nak = try #require(replies.last?.packet)
            #expect(try Meshtastic_Routing(serializedBytes: nak.decoded.payload).errorReason == .timeout)
            #expect(!simulator.receivedPackets.contains { $0.decoded.payload == Data("spaced 62".utf8) })
            #expect(try virtualRadioStatus(broker)["failedSends"] == .int(1))
        }
    }

    @Test func packetsBeforeTheHandshakeAreIgnored() async throws {
        try await withBroker { simulator, broker, port in
            let client = try await RadioTestClient(port: port)
            try client.send(text(70, "too early"))
            _ = try await client.handshake(nonce: 41)
            try client.send(text(71, "in session"))
            _ = await client.read { $0.hasPacket && $0.packet.decoded.requestID == 71 }
            let texts = simulator.receivedPackets.map { String(decoding: $0.decoded.payload, as: UTF8.self) }
            #expect(texts.contains("in session") && !texts.contains("too early"))
            #expect(try virtualRadioStatus(broker)["ignored"] == .int(1))
        }
    }

    @Test func reloadThatChangesOnlyTheVirtualRadioLeavesTheRadioLinkAlone() async throws {
        try await withBroker { simulator, broker, port in
            let client = try await RadioTestClient(port: port)
            _ = try await client.handshake(nonce: 30)
            var configuration = broker.configuration
            configuration.slots[0].virtualRadio?.allowAdmin = true
            let report = await broker.apply(configuration)
            #expect(report.changed == ["radio"])
            while await client.next() != nil {}
            let address = try #require(broker.virtualRadioAddresses.first?.address)
            let moved = try await RadioTestClient(port: try #require(Int(address.split(separator: ":").last ?? "")))
            #expect(try await moved.handshake(nonce: 31).last?.configCompleteID == 31)
            #expect(simulator.counters.connections == 1, "the radio was not reconnected")
            #expect(try virtualRadioStatus(broker)["allowAdmin"] == .bool(true))
        }
    }

    @Test func aLostLinkClosesClientsAndTheyComeBackWhenItIsReady() async throws {
        try await withBroker { simulator, _, port in
            let client = try await RadioTestClient(port: port)
            _ = try await client.handshake(nonce: 20)
            simulator.dropClient()
            while await client.next() != nil {}
            let again = try await RadioTestClient(port: port)
            let burst = try await again.handshake(nonce: 21)
            #expect(burst.last?.configCompleteID == 21)
            #expect(simulator.counters.handshakes >= 2, "the handshake came after the link's own new handshake")
            let emitted = simulator.emit(.position)
            #expect(await again.nextPacket() == emitted)
        }
    }
}
