/// A send the slot accepted, as the journal keeps it until the send is settled: enough to
/// put it back in the outbox after a crash under the same packet id and request id.
public struct JournaledSend: Sendable, Equatable {
    public var packetID: UInt32
    public var requestID: String?
    /// When its `ttlSeconds` run out, in milliseconds since the Unix epoch: wall time, since
    /// the monotonic clock starts again with the process.
    public var deadline: Int64
    /// The `MeshPacket` as queued (its `id` is `packetID`), serialized.
    public var packet: [UInt8]

    public init(packetID: UInt32, requestID: String?, deadline: Int64, packet: [UInt8]) {
        self.packetID = packetID
        self.requestID = requestID
        self.deadline = deadline
        self.packet = packet
    }
}

/// One entry of a slot's send journal.
public enum JournalRecord: Sendable, Equatable {
    /// Accepted, with no terminal status yet.
    case accepted(JournaledSend)
    /// The send with this id reached its terminal status (or was never queued).
    case settled(packetID: UInt32)
}

/// The journal's file format, written and read in this one place.
///
/// The file starts with ``magic``; each record is `length: u32le`, `crc32: u32le` (of the
/// body) and the body. A body is a kind byte, then for `accepted`: `packetID: u32le`,
/// `deadline: i64le`, a request id (`0`, or `1` with `length: u16le` and UTF-8), and the
/// packet bytes to the end; for `settled`: `packetID: u32le`. A crash can leave the last
/// record torn: reading stops at the first record that is short or fails its checksum.
public enum JournalFormat {
    /// The first bytes of every journal file; the last byte is the format's version.
    public static let magic: [UInt8] = Array("MBSENDJ".utf8) + [1]
    /// No record body is longer: a packet is at most a few hundred bytes.
    public static let maxBodyLength = 16 * 1024

    static let acceptedKind: UInt8 = 1
    static let settledKind: UInt8 = 2

    /// The record as it goes into the file.
    public static func encode(_ record: JournalRecord) -> [UInt8] {
        var body: [UInt8] = []
        switch record {
        case .accepted(let send):
            body.reserveCapacity(24 + send.packet.count + (send.requestID?.utf8.count ?? 0))
            body.append(acceptedKind)
            appendLittleEndian(send.packetID, to: &body)
            appendLittleEndian(UInt64(bitPattern: send.deadline), to: &body)
            if let requestID = send.requestID {
                let utf8 = Array(requestID.utf8.prefix(Int(UInt16.max)))
                body.append(1)
                appendLittleEndian(UInt16(utf8.count), to: &body)
                body.append(contentsOf: utf8)
            } else {
                body.append(0)
            }
            body.append(contentsOf: send.packet)
        case .settled(let packetID):
            body.append(settledKind)
            appendLittleEndian(packetID, to: &body)
        }
        return frame(body: body)
    }

    /// A record body with its length and checksum in front. An SPI so that the fuzz target
    /// can reach the body parser past the checksum.
    @_spi(Fuzzing) public static func frame(body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8 + body.count)
        appendLittleEndian(UInt32(body.count), to: &out)
        appendLittleEndian(CRC32.checksum(body), to: &out)
        out.append(contentsOf: body)
        return out
    }

    /// What a journal file holds: its records up to the first damaged one.
    public struct Contents: Sendable, Equatable {
        public var records: [JournalRecord]
        /// Bytes after the last good record (a torn write, or damage), not read.
        public var discardedBytes: Int
        /// Why reading stopped early, nil if the whole file was read.
        public var problem: String?
    }

    /// Reads a whole journal file. Never fails: what cannot be read is counted and named.
    public static func decode(_ bytes: [UInt8]) -> Contents {
        guard bytes.count >= magic.count, bytes.starts(with: magic) else {
            if bytes.isEmpty { return Contents(records: [], discardedBytes: 0, problem: nil) }
            return Contents(records: [], discardedBytes: bytes.count, problem: "not a MeshBus send journal (version 1)")
        }
        var records: [JournalRecord] = []
        var offset = magic.count
        while offset < bytes.count {
            let remaining = bytes.count - offset
            guard remaining >= 8 else { return stopped(records, bytes, offset, "a record header cut short") }
            let length = Int(readLittleEndian(UInt32.self, bytes, at: offset))
            let checksum = readLittleEndian(UInt32.self, bytes, at: offset + 4)
            guard length > 0, length <= maxBodyLength else { return stopped(records, bytes, offset, "a record of \(length) bytes") }
            guard remaining - 8 >= length else { return stopped(records, bytes, offset, "a record cut short") }
            let body = bytes[(offset + 8)..<(offset + 8 + length)]
            guard CRC32.checksum(body) == checksum else { return stopped(records, bytes, offset, "a record with a wrong checksum") }
            guard let record = record(body) else { return stopped(records, bytes, offset, "a record of unknown shape") }
            records.append(record)
            offset += 8 + length
        }
        return Contents(records: records, discardedBytes: 0, problem: nil)
    }

    private static func stopped(_ records: [JournalRecord], _ bytes: [UInt8], _ offset: Int, _ why: String) -> Contents {
        Contents(records: records, discardedBytes: bytes.count - offset, problem: "\(why) at byte \(offset)")
    }

    private static func record(_ body: ArraySlice<UInt8>) -> JournalRecord? {
        var offset = body.startIndex
        let kind = body[offset]
        offset += 1
        switch kind {
        case settledKind:
            guard body.endIndex - offset == 4 else { return nil }
            return .settled(packetID: readLittleEndian(UInt32.self, body, at: offset))
        case acceptedKind:
            guard body.endIndex - offset >= 13 else { return nil }
            let packetID = readLittleEndian(UInt32.self, body, at: offset)
            let deadline = Int64(bitPattern: readLittleEndian(UInt64.self, body, at: offset + 4))
            offset += 12
            var requestID: String?
            switch body[offset] {
            case 0:
                offset += 1
            case 1:
                guard body.endIndex - offset >= 3 else { return nil }
                let length = Int(readLittleEndian(UInt16.self, body, at: offset + 1))
                offset += 3
                guard body.endIndex - offset >= length else { return nil }
                guard let text = String(validating: body[offset..<(offset + length)], as: UTF8.self) else { return nil }
                requestID = text
                offset += length
            default:
                return nil
            }
            return .accepted(JournaledSend(packetID: packetID, requestID: requestID, deadline: deadline, packet: Array(body[offset...])))
        default:
            return nil
        }
    }

    private static func appendLittleEndian<Value: FixedWidthInteger>(_ value: Value, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func readLittleEndian<Value: FixedWidthInteger, Bytes: RandomAccessCollection<UInt8>>(
        _: Value.Type, _ bytes: Bytes, at offset: Bytes.Index
    ) -> Value where Bytes.Index == Int {
        var value: Value = 0
        for index in 0..<(Value.bitWidth / 8) {
            value |= Value(bytes[offset + index]) << (8 * index)
        }
        return value
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it), to tell a torn or damaged record from a whole one.
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
