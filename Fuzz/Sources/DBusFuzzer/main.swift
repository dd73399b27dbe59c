@_spi(Fuzzing) import DBus
import FuzzSupport

/// Bytes from the system bus, as the connection reads them (SASL lines until `OK`, then
/// messages), and one message decoded alone. Checks: nothing traps; feeding the bytes in
/// pieces (sizes taken from the input) gives what feeding them whole gives; a message that
/// decodes, written again, decodes to the same bytes once more.
func fuzzBusBytes(_ bytes: [UInt8]) {
    let whole = DBusInputs.decode([bytes[...]])
    let split = DBusInputs.decode(pieces(of: bytes, maximum: 13))
    guard whole.lines == split.lines, whole.messages == split.messages, (whole.error == nil) == (split.error == nil) else {
        fatalError("split input decoded differently: \(whole) vs \(split)")
    }
    if let message = try? DBusMessage(decoding: bytes) {
        let encoded = message.encoded()
        guard let again = try? DBusMessage(decoding: encoded), again.encoded() == encoded else {
            fatalError("a decoded message, written again, did not decode to the same bytes")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzBusBytes(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
