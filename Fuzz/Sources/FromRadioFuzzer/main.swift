import FuzzSupport
import MeshtasticProtocol

/// Arbitrary bytes as a frame's payload. Checks: parsing and the JSON conversion never trap
/// (unknown fields, unknown enum numbers, corrupt sub-messages included), and the JSON
/// written is valid JSON that reads back to the same value.
func fuzzFromRadio(_ bytes: [UInt8]) {
    guard let message = try? Meshtastic_FromRadio(serializedBytes: bytes) else { return }
    let json: JSONValue
    if case .packet(let packet)? = message.payloadVariant {
        json = PacketJSON.packet(packet)
    } else {
        json = PacketJSON.message(message)
    }
    let written = json.jsonBytes
    guard let again = try? JSONValue(parsing: written), again == json else {
        fatalError("MeshBus wrote JSON that does not read back: \(String(decoding: written, as: UTF8.self))")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzFromRadio(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
