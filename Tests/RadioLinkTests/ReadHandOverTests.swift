import MeshBusTestSupport
import MeshtasticProtocol
import NIOCore
import Synchronization
import Testing

@testable import RadioLink

/// A session's reads leave the async stream for the event loop mid-session
/// (`divertInbound(to:)`), and none overtakes one read before.
@Suite struct ReadHandOverTests {
    @Test func aDivertedChannelHandsLaterItemsToTheConsumerAndCountsEarlierOnes() async throws {
        let (radio, link) = try await SocketPairChannels.framed()
        // Payloads are valid protobuf (field 1, a varint): the decoder checks them.
        let consumed = Recorder<StreamItem>()
        try await radio.executeThenClose { _, radioOut in
            try await link.executeThenClose { inbound, _ in
                var iterator = inbound.makeAsyncIterator()
                try await radioOut.write(.frame(ByteBuffer(bytes: [0x08, 1])))
                try await radioOut.write(.raw(ByteBuffer(string: "boot\n")))
                #expect(try await iterator.next() == .frame(ByteBuffer(bytes: [0x08, 1])))
                #expect(try await iterator.next() == .logLine("boot"))

                let earlier = try await link.divertInbound { consumed.append($0) }
                #expect(earlier == 2, "both items went to the stream before")
                try await radioOut.write(.frame(ByteBuffer(bytes: [0x08, 2])))
                try await radioOut.write(.frame(ByteBuffer(bytes: [0x08, 3])))
                try await consumed.wait("two diverted frames") { $0.count == 2 }
                #expect(consumed.elements == [.frame(ByteBuffer(bytes: [0x08, 2])), .frame(ByteBuffer(bytes: [0x08, 3]))])

                try await radio.channel.close()
                #expect(try await iterator.next() == nil, "the stream only ends: nothing diverted reaches it")
            }
        }
    }

    @Test func itemsHandedOverWaitUntilTheReaderHasPutInEveryEarlierOne() {
        let handOver = StreamHandOver()
        var released: [StreamItem] = []
        #expect(!handOver.admit(.logLine("early loop item")), "nothing goes on before the count is known")
        handOver.expect(streamItems: 2) { released.append($0) }
        #expect(!handOver.admit(.logLine("second loop item")))

        released.append(.logLine("stream 1"))
        handOver.takenFromStream { released.append($0) }
        #expect(released == [.logLine("stream 1")], "one earlier item is still in the stream")

        released.append(.logLine("stream 2"))
        handOver.takenFromStream { released.append($0) }
        #expect(released == [.logLine("stream 1"), .logLine("stream 2"), .logLine("early loop item"), .logLine("second loop item")])
        #expect(handOver.admit(.logLine("later")), "after the catch-up the loop's items go straight on")
    }

    @Test func withNoEarlierItemsWhatWaitedIsReleasedAtOnce() {
        let handOver = StreamHandOver()
        var released: [StreamItem] = []
        #expect(!handOver.admit(.logLine("raced the count")))
        handOver.expect(streamItems: 0) { released.append($0) }
        #expect(released == [.logLine("raced the count")])
        #expect(handOver.admit(.logLine("next")))
    }

    @Test func aStreamThatEndsEarlyStillReleasesWhatWaited() {
        let handOver = StreamHandOver()
        var released: [StreamItem] = []
        handOver.expect(streamItems: 3) { released.append($0) }
        #expect(!handOver.admit(.logLine("waiting")))
        handOver.takenFromStream { released.append($0) }
        handOver.streamEnded { released.append($0) }
        #expect(released == [.logLine("waiting")])
    }
}
