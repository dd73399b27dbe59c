import FuzzSupport
import MeshtasticProtocol
import NIOCore

/// Arbitrary bytes on a serial line or TCP stream, through the decoder as the radio link
/// runs it (payloads checked). Checks: the decoder never traps; no
/// frame exceeds 512 bytes and no log line 1024; and feeding the bytes in pieces (sizes
/// taken from the input itself) gives exactly the items that feeding them whole gives.
func fuzzFrames(_ bytes: [UInt8]) {
    let whole = decodeAll([bytes[...]])
    let split = decodeAll(pieces(of: bytes, maximum: 7))
    guard whole == split else { fatalError("split input decoded differently: \(whole.count) vs \(split.count) items") }
    for item in whole {
        switch item {
        case .frame(let payload): precondition(payload.readableBytes <= StreamFraming.maxPayloadLength)
        case .logLine(let line): precondition(line.utf8.count <= MeshtasticFrameDecoder.maxLineLength * 3)
        }
    }
}

func decodeAll(_ pieces: [ArraySlice<UInt8>]) -> [StreamItem] {
    var decoder = MeshtasticFrameDecoder(checksPayloads: true)
    var buffer = ByteBuffer()
    var items: [StreamItem] = []
    for piece in pieces {
        buffer.writeBytes(piece)
        while let item = decoder.next(from: &buffer) { items.append(item) }
        buffer.discardReadBytes()
    }
    return items
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzFrames(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
