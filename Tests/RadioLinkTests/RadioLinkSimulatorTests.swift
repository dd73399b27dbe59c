import Logging
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import Testing

/// The link against the real simulator over real loopback TCP.
@Suite struct RadioLinkSimulatorTests {
    @Test func linkBecomesReadyWritesQueuedPacketsAndReconnectsAfterEviction() async throws {
        let simulator = try await RadioSimulator.start(SimulatorConfiguration(nodeCount: 3, trafficPerMinute: 0, ackDelay: .milliseconds(10)))
        let transport = TCPRadioTransport(host: "127.0.0.1", port: simulator.port)
        let (link, events) = RadioLink.make(
            slot: "t",
            transport: transport,
            timing: LinkTiming(reconnectCooldown: .milliseconds(50), interfaceInitTimeout: .seconds(10)),
            logger: Logger(label: "test")
        )
        var packet = Meshtastic_MeshPacket()
        packet.id = 1234
        packet.to = NodeNumber.broadcast
        packet.wantAck = true
        packet.decoded.portnum = .textMessageApp
        packet.decoded.payload = .init("queued before ready".utf8)
        #expect(link.enqueue(OutgoingPacket(packet: packet, requestID: "r1")))

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await simulator.run() }
            group.addTask { await link.run() }
            var established: [LinkInfo] = []
            var sawSent = false
            var sawAck = false
            var evicted = false
            for await event in events {
                switch event {
                case .established(let info):
                    established.append(info)
                    #expect(info.myNodeNum == simulator.nodes[0].num)
                    #expect(info.nodeCount == 4)
                    #expect(info.firmware == VirtualMesh.firmwareVersion)
                case .sent(let item):
                    #expect(item.requestID == "r1")
                    sawSent = true
                case .fromRadio(let message, _, _):
                    if case .packet(let reply)? = message.payloadVariant, reply.decoded.requestID == 1234 { sawAck = true }
                case .lost(let reason):
                    #expect(reason == .transportClosed)
                default:
                    break
                }
                if sawSent, sawAck, !evicted {
                    // A second client evicts the link, as firmware does; the link must come back.
                    evicted = true
                    let intruder = try await TCPRadioTransport(host: "127.0.0.1", port: simulator.port).open()
                    try await intruder.channel.close()
                }
                if established.count == 2 { break }
            }
            #expect(established.map(\.attempt) == [1, 2])
            #expect(simulator.receivedPackets.map(\.id) == [1234])
            group.cancelAll()
        }
    }
}
