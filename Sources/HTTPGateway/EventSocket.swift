import Broker
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import MeshBusModel
import NIOCore
import SlotCore
import Synchronization

/// `GET /ws`: the events over a WebSocket, for pages that also talk back (design.md §8).
///
/// The client sends `{"subscribe": [prefixes], "after": "sim:1042"}` (`after` optional: resume
/// as with SSE's `Last-Event-ID`) and `{"unsubscribe": [prefixes]}`; each is answered with
/// `{"subscribed": [current prefixes]}`. The server sends `{"topic", "envelope", "raw"?}` per
/// event (`raw`: base64 of the MeshPacket), `{"gap": {...}}` where the ring no longer reaches
/// or (last) when the reader fell behind, and `{"error": {...}}` for a message it cannot take.
/// All writes go through one task, so replayed events always come before live ones.
enum EventSocket {
    /// The largest client message taken.
    static let maxMessageBytes = 16 * 1024
    /// The most prefixes one socket follows, so that a client cannot grow the matching without bound.
    static let maxPrefixes = 64

    /// What the client asked for that the writing task carries out.
    enum Control: Sendable, Equatable {
        case subscribe([String], after: StreamCursor?)
        case unsubscribe([String])
        case refuse(String)
    }

    /// The client's requests, from the reading task to the writing one.
    private final class ControlQueue: Sendable {
        private let pending = Mutex<[Control]>([])

        func post(_ control: Control) { pending.withLock { $0.append(control) } }

        func takeAll() -> [Control] {
            pending.withLock { pending in
                defer { pending.removeAll() }
                return pending
            }
        }
    }

    /// Whether an upgrade from `request` may go ahead: a browser's `Origin` must be this host
    /// (a foreign page must not read or steer MeshBus), and the path must be `/ws`.
    static func allows(_ request: HTTPRequest) -> Bool {
        guard request.path?.split(separator: "?").first == "/ws" || SerialRelaySocket.slot(inPath: request.path) != nil else { return false }
        guard let origin = request.headerFields[.origin] else { return true }
        guard let host = request.authority else { return false }
        return URL(string: origin)?.hostWithPort == host
    }

    static func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, broker: Broker) async throws {
        let subscription = broker.eventHub.subscribe(prefixes: [])
        defer { subscription.cancel() }
        let controls = ControlQueue()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await message in inbound.messages(maxSize: maxMessageBytes) {
                    controls.post(parse(message))
                    subscription.wake()
                }
            }
            group.addTask {
                try await pump(subscription: subscription, controls: controls, outbound: outbound, broker: broker)
            }
            // The first to end (the client leaves, or falls behind) ends the session.
            try await group.next()
            group.cancelAll()
        }
    }

    static func parse(_ message: WebSocketMessage) -> Control {
        guard case .text(let text) = message, let request = try? JSONValue(parsing: text), request.objectValue != nil else {
            return .refuse("a message is a JSON object with subscribe or unsubscribe")
        }
        func prefixes(_ key: String) -> [String]? {
            guard case .array(let values)? = request[key] else { return nil }
            let strings = values.compactMap(\.stringValue)
            return strings.count == values.count ? strings : nil
        }
        if let list = prefixes("subscribe") {
            return .subscribe(list, after: request["after"]?.stringValue.map(StreamCursor.init(parsing:)))
        }
        if let list = prefixes("unsubscribe") { return .unsubscribe(list) }
        return .refuse("expected {\"subscribe\": [prefixes]} or {\"unsubscribe\": [prefixes]} (prefixes are strings)")
    }

    /// The one task that writes: carries out what the client asked, then sends what waits.
    private static func pump(
        subscription: EventHub.Subscription, controls: ControlQueue, outbound: WebSocketOutboundWriter, broker: Broker
    ) async throws {
        var cursor = StreamCursor()
        while !Task.isCancelled {
            for control in controls.takeAll() {
                switch control {
                case .subscribe(let added, let after):
                    // Live events for the new prefixes queue up from here; the replay below
                    // covers what came before, and the cursor skips the overlap.
                    let current = subscription.prefixes
                    // One cursor per socket: a resume joined to live prefixes could skip or repeat.
                    guard after == nil || current.isEmpty else {
                        try await send(["error": .object(["code": .string("bad_request"), "message": .string("after only with a socket's first subscribe")])], outbound)
                        continue
                    }
                    let prefixes = current + added.filter { !current.contains($0) }
                    guard prefixes.count <= maxPrefixes else {
                        try await send(["error": .object(["code": .string("bad_request"), "message": .string("at most \(maxPrefixes) prefixes per socket")])], outbound)
                        continue
                    }
                    subscription.setPrefixes(prefixes)
                    for item in after.map({ cursor.resume(from: $0, prefixes: added, broker: broker) }) ?? [] {
                        switch item {
                        case .event(let event):
                            try await outbound.write(.text(message(event)))
                        case .gap(let slot, let afterSeq, let reason):
                            try await send(["gap": .object(["slot": .string(slot), "afterSeq": .int(afterSeq), "reason": .string(reason)])], outbound)
                        }
                    }
                    try await send(["subscribed": .array(subscription.prefixes.map(JSONValue.string))], outbound)
                case .unsubscribe(let removed):
                    subscription.setPrefixes(subscription.prefixes.filter { !removed.contains($0) })
                    try await send(["subscribed": .array(subscription.prefixes.map(JSONValue.string))], outbound)
                case .refuse(let message):
                    try await send(["error": .object(["code": .string("bad_request"), "message": .string(message)])], outbound)
                }
            }
            while let item = subscription.take() {
                guard case .event(let event) = item else {
                    try await send(["gap": .object(["reason": .string("slow_consumer")])], outbound)
                    return
                }
                let slot = HTTPGateway.slotName(event.topic)
                guard cursor.isNew(slot: slot, seq: event.seq) else { continue }
                cursor.delivered(slot: slot, seq: event.seq)
                try await outbound.write(.text(message(event)))
            }
            await subscription.waitForItem()
        }
    }

    /// One event: `{"topic": frame, "envelope": {…}, "raw": base64}`, the envelope's bytes as published.
    static func message(_ event: SlotEvent) -> String {
        var out = Array("{\"topic\":".utf8)
        JSONValue.writeString(String(decoding: event.topic, as: UTF8.self), to: &out)
        out.append(contentsOf: ",\"envelope\":".utf8)
        out.append(contentsOf: event.envelope)
        if let raw = event.raw {
            out.append(contentsOf: ",\"raw\":\"".utf8)
            raw.withUnsafeBytes { JSONValue.writeBase64($0, to: &out) }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    private static func send(_ object: JSONObject, _ outbound: WebSocketOutboundWriter) async throws {
        try await outbound.write(.text(JSONValue.object(object).jsonString))
    }
}

extension URL {
    /// `host:port` as a `Host` header says it (the port only when the URL names one).
    fileprivate var hostWithPort: String? {
        guard let host else { return nil }
        return port.map { "\(host):\($0)" } ?? host
    }
}
