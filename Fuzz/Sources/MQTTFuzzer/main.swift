import FuzzSupport
@_spi(Fuzzing) import MQTTWire

/// A broker's bytes through the bridge's MQTT decoder. Checks: nothing traps; feeding the
/// bytes in pieces (sizes taken from the input) gives what feeding them whole gives; every
/// packet decoded can be written again, and its bytes decode to exactly that packet.
func fuzzBrokerBytes(_ bytes: [UInt8]) {
    let whole = MQTTInputs.decode([bytes[...]])
    let split = MQTTInputs.decode(pieces(of: bytes, maximum: 11))
    guard whole.packets == split.packets, (whole.error == nil) == (split.error == nil) else {
        fatalError("split input decoded differently: \(whole) vs \(split)")
    }
    if let error = whole.error, error.hasPrefix("decoded but not writable") { fatalError(error) }
    for packet in whole.packets {
        let again = MQTTInputs.decode([packet[...]])
        guard again.packets == [packet], again.error == nil, again.pending == 0 else {
            fatalError("a decoded packet, written again, did not decode to itself: \(packet) gave \(again)")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzBrokerBytes(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
