@_spi(Fuzzing) import HTTPGateway
import FuzzSupport
import MeshBusModel

/// The HTTP gateway's own parsers, fed one input as a client could send it: a cursor
/// (`Last-Event-ID`), a WebSocket message, a query, an `Authorization` header and a WebSerial
/// relay's path and message. Checks: nothing traps; a cursor written back parses to itself; a
/// socket message is taken only from a JSON object; a query token never carries the next
/// parameter with it; a relay path names one path segment; only a JSON object reports a lost port.
func fuzzHTTPInputs(_ bytes: [UInt8]) {
    let text = String(decoding: bytes, as: UTF8.self)
    let cursor = HTTPInputs.cursorRoundTrip(text)
    if cursor.first != cursor.again {
        fatalError("a cursor written back parsed differently: \(cursor.first) then \(cursor.again)")
    }
    // A WebSocket text message is UTF-8 (the server checks it); the fuzzer's bytes may not be.
    if HTTPInputs.takesSocketMessage(text), (try? JSONValue(parsing: Array(text.utf8)))?.objectValue == nil {
        fatalError("a socket message was taken from something that is not a JSON object")
    }
    // Only an encoded ampersand (%26) may appear in a token; a raw one ends the parameter.
    if let token = HTTPInputs.token(path: "/ws?" + text, authorization: nil), token.contains("&"), !text.lowercased().contains("%26") {
        fatalError("a query token ran into the next parameter: \(token)")
    }
    _ = HTTPInputs.token(path: "/", authorization: text)
    let relay = HTTPInputs.relay(path: "/webserial/" + text, message: text)
    if let slot = relay.slot, slot.contains("/") || slot.contains("?") {
        fatalError("a relay path named more than one segment as its slot: \(slot)")
    }
    if relay.portLost, (try? JSONValue(parsing: Array(text.utf8)))?.objectValue == nil {
        fatalError("a lost port was read from something that is not a JSON object")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzHTTPInputs(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
