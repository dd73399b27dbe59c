import Broker
import EventLoopTime
import HTTPTypes
import Hummingbird
import MeshBusModel
import NIOCore
import ServiceLifecycle
import SlotCore

/// Where a stream of events stands: the last `seq` delivered per slot. It is the SSE `id`
/// (`sim:1042,roof:77`), and a client that reconnects sends it back as `Last-Event-ID`.
struct StreamCursor: Equatable, CustomStringConvertible {
    private(set) var seqs: [String: UInt64] = [:]

    init() {}

    /// Parses `slot:seq` pairs separated by commas (spaces around either part allowed); pairs
    /// that do not parse, or whose name cannot be a slot's, are left out.
    init(parsing text: String) {
        func trimmed(_ part: Substring.UTF8View.SubSequence) -> String {
            String(decoding: part.drop { $0 == UInt8(ascii: " ") }.reversed().drop { $0 == UInt8(ascii: " ") }.reversed(), as: UTF8.self)
        }
        for pair in text.utf8.split(separator: UInt8(ascii: ",")) {
            let parts = pair.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard parts.count == 2, let seq = UInt64(trimmed(parts[1])) else { continue }
            let slot = trimmed(parts[0])
            if SlotConfiguration.isValidName(slot) { seqs[slot] = seq }
        }
    }

    /// Whether `seq` of `slot` comes after what was delivered (so it is not a repeat).
    func isNew(slot: String, seq: UInt64) -> Bool { seq > (seqs[slot] ?? 0) }

    mutating func delivered(slot: String, seq: UInt64) { seqs[slot] = seq }

    var description: String { seqs.keys.sorted().map { "\($0):\(seqs[$0]!)" }.joined(separator: ",") }

    /// What a stream resuming from `start` sends before live events.
    enum Resumed {
        case event(SlotEvent)
        /// The slot's events after `afterSeq` cannot be sent: the ring no longer holds them
        /// (`gap_too_old`), or the seq is from an earlier run of the broker (`broker_restarted`).
        case gap(slot: String, afterSeq: UInt64, reason: String)
    }

    /// Per slot of `start` (by name) this stream has not yet passed: the held events after its
    /// seq that match `prefixes`, or a gap where the ring no longer reaches. Moves the cursor
    /// over all of it, so the live events that follow repeat none.
    mutating func resume(from start: StreamCursor, prefixes: [String], broker: Broker) -> [Resumed] {
        let prefixBytes = prefixes.map { Array($0.utf8) }
        var resumed: [Resumed] = []
        for (slot, seq) in start.seqs.sorted(by: { $0.key < $1.key }) where seqs[slot].map({ seq > $0 }) ?? true {
            seqs[slot] = seq
            switch broker.heldEvents(slot: slot, after: seq) {
            case .events(let events):
                for event in events where EventHub.matches(event.topic, prefixBytes) {
                    seqs[slot] = event.seq
                    resumed.append(.event(event))
                }
            case .gap:
                resumed.append(.gap(slot: slot, afterSeq: seq, reason: "gap_too_old"))
            case .ahead:
                // Every live event of the slot passes from here: the client takes a snapshot.
                seqs[slot] = 0
                resumed.append(.gap(slot: slot, afterSeq: seq, reason: "broker_restarted"))
            case .unknownSlot:
                continue
            }
        }
        return resumed
    }
}

extension HTTPGateway {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!

    /// The most events one write carries.
    static let batchLimit = 256

    /// Comments sent while nothing happens, so proxies and browsers keep the stream open.
    static let keepAliveInterval = Duration.seconds(15)

    /// `GET /events`: every event whose topic frame starts with one of the `prefix` query
    /// values (none: all), as Server-Sent Events. With `Last-Event-ID` (or `?lastEventId=`,
    /// which `EventSource` cannot set), each named slot's events after its seq come first,
    /// from the replay ring, then live ones, with none repeated; a slot the ring no longer
    /// covers gets an `event: gap` first. A reader that falls behind the hub's limits gets a
    /// final `gap` with `slow_consumer` and is closed.
    static func events(_ request: Request, context: GatewayContext, broker: Broker) -> Response {
        let asked = request.uri.queryParameters.getAll("prefix").map { String($0) }
        let prefixes = asked.isEmpty ? [""] : asked
        let resumeFrom = request.headers[lastEventID] ?? request.uri.queryParameters.get("lastEventId").map { String($0) }
        let start = resumeFrom.map(StreamCursor.init(parsing:))
        let subscription = broker.eventHub.subscribe(prefixes: prefixes)
        let channel = context.channel
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { (writer: inout any ResponseBodyWriter) in
            defer { subscription.cancel() }
            // A stream never ends by itself: on shutdown its connection is closed, so that the
            // server's graceful shutdown does not wait for it (or for a write stuck on it).
            try await withGracefulShutdownHandler {
                try await serve(&writer, subscription: subscription, prefixes: prefixes, start: start, broker: broker, channel: channel)
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        })
    }

    /// The stream, with a watcher that drops a reader stuck behind its limits.
    private static func serve(
        _ writer: inout any ResponseBodyWriter, subscription: EventHub.Subscription, prefixes: [String], start: StreamCursor?, broker: Broker,
        channel: any Channel
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            // A reader that falls behind is cut off at once, even while a write to it waits.
            group.addTask {
                await subscription.waitForOverflow()
                // The stream ends itself once it sees the overflow; a write still stuck
                // after a grace second means the reader stopped reading: drop it.
                guard (try? await EventLoopClock(eventLoop: channel.eventLoop).sleep(for: .seconds(1))) != nil else { return }
                channel.close(promise: nil)
            }
            defer { group.cancelAll() }
            try await stream(to: &writer, subscription: subscription, prefixes: prefixes, start: start, broker: broker)
        }
    }

    /// Writes the resumed events, then live ones, until the client leaves (a write throws) or
    /// falls behind (it returns).
    private static func stream(
        to writer: inout any ResponseBodyWriter, subscription: EventHub.Subscription, prefixes: [String], start: StreamCursor?, broker: Broker
    ) async throws {
        var cursor = StreamCursor()
        try await writer.write(ByteBuffer(string: ": meshbus events\n\n"))
        if let start {
            var running = start  // each message's id is the cursor as of that message
            for item in cursor.resume(from: start, prefixes: prefixes, broker: broker) {
                switch item {
                case .event(let event):
                    running.delivered(slot: slotName(event.topic), seq: event.seq)
                    try await writer.write(message(event, cursor: running))
                case .gap(let slot, let afterSeq, let reason):
                    if reason == "broker_restarted" { running.delivered(slot: slot, seq: 0) }
                    try await writer.write(gap(slot: slot, afterSeq: afterSeq, reason: reason))
                }
            }
        }
        var batch: [ByteBuffer] = []
        while !Task.isCancelled {
            // What waits goes out in one write: a reader keeps up with bursts far above one
            // write per event.
            while batch.count < batchLimit, let item = subscription.take() {
                guard case .event(let event) = item else {
                    // Fell behind: a last word, and the stream ends.
                    batch.append(gap(slot: nil, afterSeq: nil, reason: "slow_consumer"))
                    try await writer.write(contentsOf: batch)
                    return
                }
                let slot = slotName(event.topic)
                guard cursor.isNew(slot: slot, seq: event.seq) else { continue }
                cursor.delivered(slot: slot, seq: event.seq)
                batch.append(message(event, cursor: cursor))
            }
            if !batch.isEmpty {
                try await writer.write(contentsOf: batch)
                batch.removeAll(keepingCapacity: true)
                continue
            }
            if await !waitForItem(subscription) {
                try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
            }
        }
    }

    /// Waits for the next item (true) or the keep-alive interval (false).
    private static func waitForItem(_ subscription: EventHub.Subscription) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await subscription.waitForItem()
                return true
            }
            group.addTask {
                (try? await EventLoopClock().sleep(for: keepAliveInterval)) == nil
            }
            let woke = await group.next() ?? true
            group.cancelAll()
            return woke
        }
    }

    /// One event as an SSE message: its topic frame, the envelope (one line) and the cursor.
    static func message(_ event: SlotEvent, cursor: StreamCursor) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("event: ")
        buffer.writeBytes(event.topic)
        buffer.writeString("\nid: \(cursor)\ndata: ")
        buffer.writeBytes(event.envelope)
        buffer.writeString("\n\n")
        return buffer
    }

    /// The `gap` message: for a slot whose events after `afterSeq` are gone, or (no slot) the
    /// stream's end for a reader that fell behind.
    static func gap(slot: String?, afterSeq: UInt64?, reason: String) -> ByteBuffer {
        var fields = JSONObject()
        if let slot { fields["slot"] = .string(slot) }
        if let afterSeq { fields["afterSeq"] = .int(afterSeq) }
        fields["reason"] = .string(reason)
        return ByteBuffer(string: "event: gap\ndata: \(JSONValue.object(fields).jsonString)\n\n")
    }

    /// The slot of a topic frame `topic/slot[/PORT]`.
    static func slotName(_ topic: [UInt8]) -> String {
        let parts = topic.split(separator: UInt8(ascii: "/"), maxSplits: 2, omittingEmptySubsequences: false)
        return parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : ""
    }
}
