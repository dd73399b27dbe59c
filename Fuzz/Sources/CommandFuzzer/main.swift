import Broker
import FuzzSupport
import MeshBusModel
import MeshtasticProtocol

/// One command request body, as a client could send it. Checks: decoding never traps,
/// whatever the bytes; a request is accepted only from a JSON object; any JSON the parser
/// accepts survives a write-and-parse round trip unchanged.
func fuzzCommand(_ bytes: [UInt8]) {
    let envelope = CommandEnvelope(parsing: [bytes])
    let parsed = try? JSONValue(parsing: bytes)
    if case .success = envelope.command, parsed?.objectValue == nil {
        fatalError("a command was accepted from something that is not a JSON object")
    }
    if let parsed {
        let written = parsed.jsonBytes
        guard let again = try? JSONValue(parsing: written), again == parsed else {
            fatalError("JSON round trip changed the value: \(String(decoding: written, as: UTF8.self))")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzCommand(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
