import Foundation
import MeshtasticProtocol
import NIOCore
import RadioLink
import RadioSimulator
import Testing

/// The simulator's benchmark load, over real loopback TCP: every text arrives, in order,
/// carrying its sequence number and a send time a subscriber can measure latency from.
@Suite(.timeLimit(.minutes(1))) struct SimulatorLoadTests {
    @Test func loadSendsEveryTextInOrderWithItsSequenceAndSendTime() async throws {
        let simulator = try await RadioSimulator.start(SimulatorConfiguration(nodeCount: 3, trafficPerMinute: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await simulator.run() }
            defer { group.cancelAll() }
            let channel = try await TCPRadioTransport(host: "127.0.0.1", port: simulator.port).open()
            let before = Int64(Date().timeIntervalSince1970 * 1e9)
            let texts = try await channel.executeThenClose { inbound, outbound in
                var request = Meshtastic_ToRadio()
                request.wantConfigID = 7
                try await outbound.write(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
                var texts: [String] = []
                for try await item in inbound {
                    guard case .frame(let frame) = item, let message = try? Meshtastic_FromRadio(serializedBytes: Array(frame.readableBytesView)) else { continue }
                    if message.configCompleteID == 7 {
                        #expect(simulator.startLoad(count: 500, rate: 0))
                    } else if case .packet(let packet)? = message.payloadVariant {
                        texts.append(String(decoding: packet.decoded.payload, as: UTF8.self))
                        if texts.count == 500 { break }
                    }
                }
                return texts
            }
            let after = Int64(Date().timeIntervalSince1970 * 1e9)
            let parsed = texts.map { $0.split(separator: " ") }
            #expect(parsed.allSatisfy { $0.count == 3 && $0[0] == "bench" })
            #expect(parsed.map { Int($0[1]) } == Array(1...500))
            #expect(parsed.allSatisfy { Int64($0[2]).map { (before...after).contains($0) } == true })
            let progress = simulator.loadProgress
            #expect(progress.emitted == 500 && progress.count == 500)
        }
    }

    @Test func loadWithoutAClientIsRefused() async throws {
        let simulator = try await RadioSimulator.start(SimulatorConfiguration(nodeCount: 3, trafficPerMinute: 0))
        #expect(!simulator.startLoad(count: 10, rate: 0))
        #expect(simulator.control(.object(["load": .int(10)]))["error"]?.stringValue == "no client connected to load")
        #expect(simulator.control(.object(["load": .int(0)]))["error"]?.stringValue == "'load' must be a count from 1 to 100000000")
    }

    @Test func aHandshakeOfThousandsOfNodesArrivesWhole() async throws {
        let simulator = try await RadioSimulator.start(SimulatorConfiguration(nodeCount: 3_000, trafficPerMinute: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await simulator.run() }
            defer { group.cancelAll() }
            let channel = try await TCPRadioTransport(host: "127.0.0.1", port: simulator.port).open()
            let nodes = try await channel.executeThenClose { inbound, outbound in
                var request = Meshtastic_ToRadio()
                request.wantConfigID = 9
                try await outbound.write(.frame(ByteBuffer(bytes: try request.serializedBytes() as [UInt8])))
                var nodes = 0
                for try await item in inbound {
                    guard case .frame(let frame) = item, let message = try? Meshtastic_FromRadio(serializedBytes: Array(frame.readableBytesView)) else { continue }
                    if case .nodeInfo? = message.payloadVariant { nodes += 1 }
                    if message.configCompleteID == 9 { break }
                }
                return nodes
            }
            #expect(nodes == 3_001, "every node of the burst, the radio's own included")
        }
    }
}
