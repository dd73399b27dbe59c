import HTTPTypes
import HummingbirdWebSocket

/// The gateway's own parsers of bytes from outside, for the fuzz targets in `Fuzz/` (an SPI,
/// not an API): each returns what a fuzzer can check an invariant on.
@_spi(Fuzzing) public enum HTTPInputs {
    /// A cursor (`Last-Event-ID`, a WebSocket's `after`) parsed, written back and parsed again:
    /// both parses must agree.
    public static func cursorRoundTrip(_ text: String) -> (first: [String: UInt64], again: [String: UInt64]) {
        let cursor = StreamCursor(parsing: text)
        return (cursor.seqs, StreamCursor(parsing: cursor.description).seqs)
    }

    /// Whether a WebSocket client's text message is taken as subscribe or unsubscribe.
    public static func takesSocketMessage(_ text: String) -> Bool {
        switch EventSocket.parse(.text(text)) {
        case .subscribe, .unsubscribe: true
        case .refuse: false
        }
    }

    /// The slot a WebSerial relay's path names, and whether a page's text message reports its
    /// port lost.
    public static func relay(path: String, message: String) -> (slot: String?, portLost: Bool) {
        (SerialRelaySocket.slot(inPath: path), SerialRelaySocket.reportsPortLost(message))
    }

    /// The bearer token a request with this path and `Authorization` header presents.
    public static func token(path: String, authorization: String?) -> Substring? {
        var request = HTTPRequest(method: .get, scheme: "http", authority: "127.0.0.1", path: path)
        if let authorization { request.headerFields[.authorization] = authorization }
        return AccessGate.token(in: request)
    }
}
