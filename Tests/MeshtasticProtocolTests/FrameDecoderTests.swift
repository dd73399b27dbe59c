@testable import MeshtasticProtocol
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

    // MARK: Payload checking (as the radio link and the simulator run the decoder)

    func decodeChecked(_ chunks: [[UInt8]]) -> (items: [StreamItem], invalidHeaders: Int) {
        var decoder = MeshtasticFrameDecoder(checksPayloads: true)
        var buffer = ByteBuffer()
        var items: [StreamItem] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while let item = decoder.next(from: &buffer) { items.append(item) }
            buffer.discardReadBytes()
        }
        return (items, decoder.invalidHeaders)
    }

    /// A real payload: FromRadio with queueStatus (what a probe's answer looks like).
    static let queueStatus: [UInt8] = [0x5A, 0x04, 0x10, 0x0F, 0x18, 0x10]

    @Test(arguments: [1, 3, 64])
    func noiseLookingLikeAHeaderDoesNotSwallowTheFramesAfterIt(chunkSize: Int) {
        // Noise announcing 256 bytes, then real frames: without the check the decoder would
        // wait for 256 bytes and swallow them.
        let bytes = [0x94, 0xC3, 0x01, 0x00, 0xFF, 0x07] + frame(Self.queueStatus) + frame(Self.queueStatus)
        let chunks = stride(from: 0, to: bytes.count, by: chunkSize).map { Array(bytes[$0..<min($0 + chunkSize, bytes.count)]) }
        let (items, invalid) = decodeChecked(chunks)
        let frames = items.filter { if case .frame = $0 { true } else { false } }
        #expect(frames == [.frame(ByteBuffer(bytes: Self.queueStatus)), .frame(ByteBuffer(bytes: Self.queueStatus))])
        #expect(invalid >= 1)
    }

    @Test func headerWhosePayloadStillLooksLikeProtobufIsWaitedFor() {
        let payload: [UInt8] = [0x08, 0x96, 0x01, 0x12, 0x03, 0x61, 0x62, 0x63]
        let whole = frame(payload)
        let (partial, _) = decodeChecked([Array(whole.prefix(7))])
        #expect(partial.isEmpty, "a valid prefix waits for the rest")
        let (items, invalid) = decodeChecked([Array(whole.prefix(7)), Array(whole.dropFirst(7))])
        #expect(items == [.frame(ByteBuffer(bytes: payload))])
        #expect(invalid == 0)
    }

    @Test func wireFormatCheckAcceptsProtobufAndRejectsNoise() {
        #expect(ProtobufWireFormat.check(Self.queueStatus, complete: true) == .valid)
        #expect(ProtobufWireFormat.check([UInt8](), complete: true) == .valid)
        #expect(ProtobufWireFormat.check([0x5A, 0x04, 0x10], complete: false) == .incomplete)
        #expect(ProtobufWireFormat.check([0x5A, 0x04, 0x10], complete: true) == .invalid)
        #expect(ProtobufWireFormat.check([0x00], complete: false) == .invalid, "field number 0")
        #expect(ProtobufWireFormat.check([0x0B], complete: false) == .invalid, "groups are not proto3")
        #expect(ProtobufWireFormat.check([0x0A, 0xFF, 0xFF, 0x03], complete: false) == .invalid, "length over the frame maximum")
        #expect(ProtobufWireFormat.check([0x08] + [UInt8](repeating: 0xFF, count: 10) + [0x01], complete: true) == .invalid, "varint over 10 bytes")
    }
}
