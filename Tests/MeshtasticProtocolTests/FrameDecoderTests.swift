import MeshtasticProtocol
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@Suite struct FrameDecoderTests {
    func frame(_ payload: [UInt8]) -> [UInt8] { try! StreamFraming.frame(payload) }

    func decodeAll(_ chunks: [[UInt8]]) -> [StreamItem] {
        var decoder = MeshtasticFrameDecoder()
        var buffer = ByteBuffer()
        var items: [StreamItem] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while let item = decoder.next(from: &buffer) { items.append(item) }
            buffer.discardReadBytes()
        }
        return items
    }

    @Test func twoFramesInOneReadYieldTwoPayloads() {
        let items = decodeAll([frame([1, 2, 3]) + frame([4])])
        #expect(items == [.frame(ByteBuffer(bytes: [1, 2, 3])), .frame(ByteBuffer(bytes: [4]))])
    }

    @Test(arguments: [1, 2, 3, 5])
    func frameSplitAcrossReadsIsReassembled(chunkSize: Int) {
        let bytes = frame(Array(0..<40))
        let chunks = stride(from: 0, to: bytes.count, by: chunkSize).map { Array(bytes[$0..<min($0 + chunkSize, bytes.count)]) }
        #expect(decodeAll(chunks) == [.frame(ByteBuffer(bytes: Array(0..<40)))])
    }

    @Test func garbageBeforeAFrameBecomesALogLineAndTheFrameSurvives() {
        let items = decodeAll([Array("INFO boot ok\n".utf8) + [0x00, 0x94, 0x01] + frame([9, 9])])
        #expect(items.first == .logLine("INFO boot ok"))
        #expect(items.last == .frame(ByteBuffer(bytes: [9, 9])))
    }

    @Test func oversizeLengthIsSkippedAndTheNextFrameIsFound() {
        // 0x94 0xC3 0x02 0x01 announces 513 bytes: invalid, one byte is dropped, the search goes on.
        let items = decodeAll([[0x94, 0xC3, 0x02, 0x01] + frame([7])])
        #expect(items.contains(.frame(ByteBuffer(bytes: [7]))))
        #expect(!items.contains { if case .frame(let b) = $0 { b.readableBytes > 1 } else { false } })
    }

    @Test func maximumLengthFrameIsAccepted() {
        let payload = [UInt8](repeating: 0xAB, count: StreamFraming.maxPayloadLength)
        #expect(decodeAll([frame(payload)]) == [.frame(ByteBuffer(bytes: payload))])
    }

    @Test func framingRefusesPayloadsOverTheMaximum() {
        #expect(throws: FrameTooLong(length: 513)) { try StreamFraming.frame([UInt8](repeating: 0, count: 513)) }
    }

    @Test func ansiColourCodesAreStrippedFromLogLines() {
        let line = Array("\u{1B}[34mDEBUG\u{1B}[0m | radio up\r\n".utf8)
        #expect(decodeAll([line]) == [.logLine("DEBUG | radio up")])
    }

    @Test func decoderPassesNIOsVerifierWithByteByByteAndCoalescedInput() throws {
        let input = ByteBuffer(bytes: frame([1, 2]) + frame([3]) + frame([]))
        let expected: [StreamItem] = [.frame(ByteBuffer(bytes: [1, 2])), .frame(ByteBuffer(bytes: [3])), .frame(ByteBuffer())]
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(input, expected)],
            decoderFactory: { MeshtasticFrameDecoder() }
        )
    }

    @Test func decoderInAPipelineDecodesFromEmbeddedChannel() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MeshtasticFrameDecoder()))
        try channel.writeInbound(ByteBuffer(bytes: frame([5, 6])))
        #expect(try channel.readInbound(as: StreamItem.self) == .frame(ByteBuffer(bytes: [5, 6])))
        _ = try channel.finish()
    }
}
