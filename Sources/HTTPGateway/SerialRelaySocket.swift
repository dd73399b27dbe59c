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
/// code 4001 and the reason (`taken_over`).
enum SerialRelaySocket {
    /// The largest message taken from the page (a read from the port is far smaller).
    static let maxMessageBytes = 64 * 1024
    /// The close code a page gets when its relay ended on MeshBus's side (taken over).
    static let relayEnded = WebSocketErrorCode(codeNumber: 4001)

    static func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, port: WebSerialPort) async throws {
        let relay = port.attach()
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
                            if (try? JSONValue(parsing: text))?["portLost"] == .bool(true) {
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
                }
                if relay.endReason == .takenOver {
                    try await outbound.close(relayEnded, reason: LossReason.takenOver.rawValue)
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

    /// The slot named in `/webserial/<slot>/relay`, nil for any other path.
    static func slot(inPath path: String?) -> String? {
        guard let path = path?.split(separator: "?").first else { return nil }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].isEmpty, parts[1] == "webserial", parts[3] == "relay" else { return nil }
        return String(parts[2])
    }
}
