import FuzzSupport
@_spi(Fuzzing) import VirtualRadio

/// A virtual radio client's bytes, as the port reads them: frames, each a `ToRadio`, each
/// packet through the admin policy. Checks: nothing traps; feeding the bytes in pieces gives
/// what feeding them whole gives; a readable admin packet passes the policy exactly when it
/// asks for something (`get_…_request`): changes and responses are refused.
func fuzzClientBytes(_ bytes: [UInt8]) {
    let whole = VirtualRadioInputs.read([bytes[...]])
    let split = VirtualRadioInputs.read(pieces(of: bytes, maximum: 9))
    guard whole == split else { fatalError("split input read differently: \(whole) vs \(split)") }
    for reading in whole where reading.kind == "packet" {
        if let request = reading.adminRequest {
            guard (reading.refusal == nil) == (request.hasPrefix("get_") && request.hasSuffix("_request")) else {
                fatalError("admin request '\(request)' \(reading.refusal == nil ? "allowed" : "refused")")
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzClientBytes(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
