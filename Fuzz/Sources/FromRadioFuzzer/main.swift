import FuzzSupport
import MeshBusModel
import MeshtasticProtocol

/// Arbitrary bytes as a frame's payload. Checks: parsing and the JSON conversion never trap
/// (unknown fields, unknown enum numbers, corrupt sub-messages included); the packet JSON
/// that `PacketJSON.write` puts in envelopes is valid JSON; any JSON written reads back to
/// the same value; packet bytes cut from the frame decode to the packet the frame carries.
func fuzzFromRadio(_ bytes: [UInt8]) {
    guard let message = try? Meshtastic_FromRadio(serializedBytes: bytes) else { return }
    let json: JSONValue
    if case .packet(let packet)? = message.payloadVariant {
        var written: [UInt8] = []
        PacketJSON.write(packet, to: &written)
        guard let parsed = try? JSONValue(parsing: written) else {
            fatalError("PacketJSON.write wrote invalid JSON: \(String(decoding: written, as: UTF8.self))")
        }
        json = parsed
        // Compared as encodings, not with `==`: a NaN rxSnr is never equal to itself.
        if let cut = ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: bytes),
            (try? Meshtastic_MeshPacket(serializedBytes: Array(cut)).serializedBytes() as [UInt8]) != (try? packet.serializedBytes() as [UInt8])
        {
            fatalError("packet bytes cut from the frame do not decode to its packet")
        }
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
