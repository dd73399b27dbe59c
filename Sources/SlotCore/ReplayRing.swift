import MeshBusModel
import MeshtasticProtocol

/// What the replay ring keeps of one event: what its envelope is made from, not the envelope.
/// A packet is its protobuf bytes (frame 3, which the event carries anyway); a node update is
/// the node's `NodeInfo` bytes; any other event is its fields as they were written.
enum ReplayRecord {
    case receive(packet: [UInt8], backlog: Bool)
    case sent(packet: [UInt8], requestID: String?)
    case nodeUpdated(node: [UInt8])
    /// `fields`: the `,"key":value` members after the envelope's own keys.
    case other(topic: String, fields: [UInt8])
}

/// The last events of one slot, kept so that a consumer that missed some (a `seq` jump, a
/// reconnect) can ask for them with `replay`. Bounded: the oldest go first.
///
/// Compact: records (``ReplayRecord``) and times are packed into chunks of bytes, a few
/// hundred events each, so a full ring of 10,000 packets costs about their raw bytes and no
/// allocation per event. The envelopes are written again on the way out
/// (``ReplayWindow/events``), byte for byte as they were published.
struct ReplayRing: Sendable {
    typealias GapTooOld = ReplayGapTooOld

    /// Consecutive events packed one after another; `ends[i]` is where the `i`th ends.
    struct Chunk: Sendable {
        var firstSeq: UInt64
        var bytes: [UInt8] = []
        var ends: [UInt32] = []
    }

    let capacity: Int
    /// Events per chunk: small enough that the evicted events a chunk still holds are a few
    /// percent of the ring, large enough that a chunk's two arrays cost little per event.
    let chunkSize: Int
    private var chunks: [Chunk] = []
    /// The oldest seq held, and one past the newest.
    private var oldest: UInt64 = 0
    private var end: UInt64 = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        chunkSize = min(256, max(1, self.capacity / 16))
    }

    var count: Int { Int(end - oldest) }

    /// The oldest seq held, nil when empty.
    var oldestSeq: UInt64? { count == 0 ? nil : oldest }

    /// Keeps event `seq` (one more than the last kept, the slot numbers them so) published at `time`.
    mutating func append(seq: UInt64, time: EventTime, record: ReplayRecord) {
        if count == 0 || seq != end {
            chunks.removeAll()
            oldest = seq
        }
        end = seq + 1
        if chunks.isEmpty || chunks[chunks.count - 1].ends.count == chunkSize {
            if !chunks.isEmpty { chunks[chunks.count - 1].seal() }
            var chunk = Chunk(firstSeq: seq)
            chunk.ends.reserveCapacity(chunkSize)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(time: time, record: record)
        if count > capacity {
            oldest += 1
            if chunks[0].firstSeq + UInt64(chunks[0].ends.count) <= oldest { chunks.removeFirst() }
        }
    }

    /// The events with a seq greater than `seq`, oldest first, at most `limit`, still in
    /// compact form. Throws ``GapTooOld`` if some of them are no longer held.
    func events(after seq: UInt64, limit: Int, head: [UInt8], slot: String) throws(GapTooOld) -> ReplayWindow {
        // Nothing newer (this also keeps `seq + 1` from overflowing on a cursor of 2⁶⁴−1).
        guard count > 0, seq < end - 1 else { return ReplayWindow(head: head, slot: slot) }
        guard seq + 1 >= oldest else { throw GapTooOld(oldestSeq: oldest) }
        let first = max(seq + 1, oldest)
        let last = min(end, first &+ UInt64(max(0, min(limit, count))))
        guard first < last else { return ReplayWindow(head: head, slot: slot) }
        let firstChunk = Int((first - chunks[0].firstSeq) / UInt64(chunkSize))
        let lastChunk = Int((last - 1 - chunks[0].firstSeq) / UInt64(chunkSize))
        return ReplayWindow(head: head, slot: slot, chunks: Array(chunks[firstChunk...lastChunk]), seqs: first..<last, chunkSize: chunkSize)
    }

    /// The bytes the ring holds for its records and their index (for tests and figures).
    var heldBytes: Int { chunks.reduce(0) { $0 + $1.bytes.capacity + $1.ends.capacity * 4 } }
}

/// The wall-clock time of an event: milliseconds since 1970 (8 bytes in the ring) where the
/// envelope's text was made from them, the text itself otherwise.
enum EventTime {
    case milliseconds(Int64)
    case text(String)

    var text: String {
        switch self {
        case .milliseconds(let value): Envelope.timestamp(millisecondsSince1970: value)
        case .text(let text): text
        }
    }
}

/// Some consecutive events of a replay ring, taken under the slot's lock in compact form and
/// written out as published events after it is released.
public struct ReplayWindow: Sendable {
    let head: [UInt8]
    let slot: String
    var chunks: [ReplayRing.Chunk] = []
    /// The seqs of the events, all held by `chunks`.
    var seqs: Range<UInt64> = 0..<0
    var chunkSize = 1

    /// The events, oldest first, exactly as they were published.
    public var events: [SlotEvent] {
        seqs.map { seq in
            let offset = Int(seq - chunks[0].firstSeq)
            let (time, record) = chunks[offset / chunkSize].record(at: offset % chunkSize)
            return record.event(seq: seq, time: time, head: head, slot: slot)
        }
    }
}

extension ReplayRecord {
    /// The published event this record was made from.
    func event(seq: UInt64, time: EventTime, head: [UInt8], slot: String) -> SlotEvent {
        switch self {
        case .receive(let bytes, let backlog):
            let packet = (try? Meshtastic_MeshPacket(serializedBytes: bytes)) ?? Meshtastic_MeshPacket()
            let envelope = Envelope.write(head: head, topic: MeshBus.Topic.receive, seq: seq, time: time.text) {
                EventFields.receive(packet, backlog: backlog, to: &$0)
            }.bytes
            return SlotEvent(seq: seq, topic: MeshBus.Topic.frame(MeshBus.Topic.receive, slot: slot, port: PacketJSON.portName(packet)), envelope: envelope, raw: bytes)
        case .sent(let bytes, let requestID):
            let packet = (try? Meshtastic_MeshPacket(serializedBytes: bytes)) ?? Meshtastic_MeshPacket()
            let envelope = Envelope.write(head: head, topic: MeshBus.Topic.sent, seq: seq, time: time.text) {
                EventFields.sent(packet, requestID: requestID, to: &$0)
            }.bytes
            return SlotEvent(seq: seq, topic: MeshBus.Topic.frame(MeshBus.Topic.sent, slot: slot), envelope: envelope, raw: bytes)
        case .nodeUpdated(let bytes):
            let node = (try? Meshtastic_NodeInfo(serializedBytes: bytes)) ?? Meshtastic_NodeInfo()
            let envelope = Envelope.write(head: head, topic: MeshBus.Topic.nodeUpdated, seq: seq, time: time.text) {
                EventFields.nodeUpdated(node, to: &$0)
            }.bytes
            return SlotEvent(seq: seq, topic: MeshBus.Topic.frame(MeshBus.Topic.nodeUpdated, slot: slot), envelope: envelope, raw: nil)
        case .other(let topic, let fields):
            let envelope = Envelope.write(head: head, topic: topic, seq: seq, time: time.text) { $0.append(contentsOf: fields) }.bytes
            return SlotEvent(seq: seq, topic: MeshBus.Topic.frame(topic, slot: slot), envelope: envelope, raw: nil)
        }
    }
}

/// The fields of the events whose ring records are rendered again: one writer for the
/// published envelope and the replayed one.
enum EventFields {
    static func receive(_ packet: Meshtastic_MeshPacket, backlog: Bool, to out: inout [UInt8]) -> PacketJSONSummary {
        out.append(contentsOf: ",\"packet\":".utf8)
        let summary = PacketJSON.write(packet, to: &out)
        out.append(contentsOf: (backlog ? ",\"backlog\":true" : ",\"backlog\":false").utf8)
        return summary
    }

    static func sent(_ packet: Meshtastic_MeshPacket, requestID: String?, to out: inout [UInt8]) {
        out.append(contentsOf: ",\"packet\":".utf8)
        PacketJSON.write(packet, to: &out)
        Envelope.writeMember("requestId", requestID.map(JSONValue.string) ?? .null, to: &out)
    }

    static func nodeUpdated(_ node: Meshtastic_NodeInfo, to out: inout [UInt8]) {
        out.append(contentsOf: ",\"node\":".utf8)
        PacketJSON.writeNode(node, to: &out)
    }
}

// MARK: The packed form

/// A record's first byte: its kind, and whether its time is 8 bytes of milliseconds.
private enum RecordKind: UInt8 {
    case receive = 1, receiveBacklog, sent, nodeUpdated, other
    static let millisecondsFlag: UInt8 = 0x80
}

extension ReplayRing.Chunk {
    mutating func append(time: EventTime, record: ReplayRecord) {
        let kind: RecordKind
        switch record {
        case .receive(_, let backlog): kind = backlog ? .receiveBacklog : .receive
        case .sent: kind = .sent
        case .nodeUpdated: kind = .nodeUpdated
        case .other: kind = .other
        }
        switch time {
        case .milliseconds(let value):
            bytes.append(kind.rawValue | RecordKind.millisecondsFlag)
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        case .text(let text):
            bytes.append(kind.rawValue)
            appendString(text)
        }
        switch record {
        case .receive(let packet, _): bytes.append(contentsOf: packet)
        case .sent(let packet, let requestID):
            if let requestID {
                bytes.append(1)
                appendString(requestID)
            } else {
                bytes.append(0)
            }
            bytes.append(contentsOf: packet)
        case .nodeUpdated(let node): bytes.append(contentsOf: node)
        case .other(let topic, let fields):
            appendString(topic)
            bytes.append(contentsOf: fields)
        }
        ends.append(UInt32(bytes.count))
    }

    /// Gives the bytes back that growing by doubling left spare, once no event will be added.
    mutating func seal() {
        bytes = [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, initialized in
            initialized = buffer.initialize(fromContentsOf: bytes)
        }
    }

    func record(at index: Int) -> (EventTime, ReplayRecord) {
        var position = index == 0 ? 0 : Int(ends[index - 1])
        let recordEnd = Int(ends[index])
        let first = bytes[position]
        position += 1
        let time: EventTime
        if first & RecordKind.millisecondsFlag != 0 {
            var value: Int64 = 0
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[position..<position + 8]) }
            time = .milliseconds(Int64(littleEndian: value))
            position += 8
        } else {
            time = .text(readString(at: &position))
        }
        let rest = { (from: Int) in Array(bytes[from..<recordEnd]) }
        switch RecordKind(rawValue: first & ~RecordKind.millisecondsFlag) {
        case .receive: return (time, .receive(packet: rest(position), backlog: false))
        case .receiveBacklog: return (time, .receive(packet: rest(position), backlog: true))
        case .sent:
            let hasRequestID = bytes[position] == 1
            position += 1
            let requestID = hasRequestID ? readString(at: &position) : nil
            return (time, .sent(packet: rest(position), requestID: requestID))
        case .nodeUpdated: return (time, .nodeUpdated(node: rest(position)))
        case .other, nil:
            let topic = readString(at: &position)
            return (time, .other(topic: topic, fields: rest(position)))
        }
    }

    /// A length (LEB128) and the UTF-8 bytes.
    private mutating func appendString(_ string: String) {
        var length = string.utf8.count
        while length >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: length) | 0x80)
            length >>= 7
        }
        bytes.append(UInt8(length))
        bytes.append(contentsOf: string.utf8)
    }

    private func readString(at position: inout Int) -> String {
        var length = 0
        var shift = 0
        while true {
            let byte = bytes[position]
            position += 1
            length |= Int(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        defer { position += length }
        return String(decoding: bytes[position..<position + length], as: UTF8.self)
    }
}

/// Asked for events older than a slot's replay ring still holds.
public struct ReplayGapTooOld: Error, Equatable {
    /// The oldest `seq` still held.
    public var oldestSeq: UInt64
}
