import HummingbirdWebSocket
import MeshBusModel
import NIOCore
import NIOWebSocket
import RadioLink
import Synchronization
import WebSerial

/// `/webserial/<slot>/relay`: the WebSocket over which a browser page lends its serial port to
/// a `webserial` slot (design.md §9). Binary messages are the port's raw bytes, both ways; the
/// page sends the text message `{"portLost": true}` when the port goes away. MeshBus runs its
/// own handshake, probes and outbox through it; the page only relays.
///
/// One browser holds a slot at a time: a second one takes over, and the first is closed with
/// code 4001 (`taken_over`). `disconnectForRestart` closes the page's socket with 4002
/// (`disconnected_for_restart`) once the link has said goodbye, and refuses pages the same way
/// until `reconnect`; the page closes its port meanwhile and reopens it after.
enum SerialRelaySocket {
    /// The largest message taken from the page (a read from the port is far smaller).
    static let maxMessageBytes = 64 * 1024
    /// The close code of a page whose radio another browser took over.
    static let takenOver = WebSocketErrorCode(codeNumber: 4001)
    /// The close code of a page told to let go of its port until MeshBus reconnects.
    static let heldForRestart = WebSocketErrorCode(codeNumber: 4002)
    static let heldReason = "disconnected_for_restart"

    static func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, port: WebSerialPort) async throws {
        guard let relay = port.attach() else {
            try await outbound.close(heldForRestart, reason: heldReason)
            return
        }
        let toRadio = RadioWriter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // The page's side; when it ends (tab closed, port lost), the relay ends with it.
                var reason = LossReason.browserClosed
                do {
                    reading: for try await message in inbound.messages(maxSize: maxMessageBytes) {
                        switch message {
                        case .binary(let bytes):
                            // Between link sessions there is nobody to take them: dropped, as a
                            // serial line drops what nobody reads.
                            try? await toRadio.current?.write(bytes)
                        case .text(let text):
                            if reportsPortLost(text) {
                                reason = .portLost
                                break reading
                            }
                        }
                    }
                } catch {
                    // A message over the limit or a broken socket ends the relay like a close.
                }
                port.end(relay, reason: reason)
            }
            group.addTask {
                // The radio's side: each link session through the relay in turn, until it ends.
                for await channel in relay.links {
                    try? await channel.executeThenClose { fromRadio, writer in
                        toRadio.current = writer
                        defer { toRadio.current = nil }
                        for try await bytes in fromRadio { try await outbound.write(.binary(bytes)) }
                    }
                    port.sessionEnded(relay)
                }
                switch relay.endReason {
                case .takenOver: try await outbound.close(takenOver, reason: LossReason.takenOver.rawValue)
                case .manual: try await outbound.close(heldForRestart, reason: heldReason)
                default: break
                }
            }
            try await group.next()
            try await group.next()
        }
    }

    /// Where the page's bytes go: the writer of the link's current session through the relay, if any.
    private final class RadioWriter: Sendable {
        private let writer = Mutex<NIOAsyncChannelOutboundWriter<ByteBuffer>?>(nil)

        var current: NIOAsyncChannelOutboundWriter<ByteBuffer>? {
            get { writer.withLock { $0 } }
            set { writer.withLock { $0 = newValue } }
        }
    }

    /// Whether a page's text message is `{"portLost": true}`; any other text is ignored.
    static func reportsPortLost(_ text: String) -> Bool {
        (try? JSONValue(parsing: text))?["portLost"] == .bool(true)
    }

    /// The slot named in `/webserial/<slot>/relay`, nil for any other path.
    static func slot(inPath path: String?) -> String? {
        guard let path = path?.split(separator: "?").first else { return nil }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].isEmpty, parts[1] == "webserial", parts[3] == "relay" else { return nil }
        return String(parts[2])
    }
}
