import NIOCore

/// The Meshtastic stream framing used on serial lines and TCP alike.
///
/// ```
///  +------+------+----------+----------+----------------------+
///  | 0x94 | 0xC3 | len high | len low  | protobuf (len bytes) |
///  +------+------+----------+----------+----------------------+
/// ```
/// `len` is big-endian and at most ``maxPayloadLength``. Bytes outside frames are the
/// firmware's debug console on serial.
public enum StreamFraming {
    public static let start1: UInt8 = 0x94
    public static let start2: UInt8 = 0xC3
    public static let headerLength = 4
    public static let maxPayloadLength = 512

    /// What the official client writes before its first frame: wakes a sleeping radio and
    /// makes the radio's parser resynchronise.
    public static let wakeSequence = [UInt8](repeating: start2, count: 32)

    /// Writes one frame around `payload` into `buffer`.
    public static func writeFrame(_ payload: some Collection<UInt8>, into buffer: inout ByteBuffer) throws(FrameTooLong) {
        guard payload.count <= maxPayloadLength else { throw FrameTooLong(length: payload.count) }
        buffer.writeInteger(start1)
        buffer.writeInteger(start2)
        buffer.writeInteger(UInt16(payload.count), endianness: .big)
        buffer.writeBytes(payload)
    }

    /// One frame around `payload` as plain bytes.
    public static func frame(_ payload: some Collection<UInt8>) throws(FrameTooLong) -> [UInt8] {
        var buffer = ByteBuffer()
        try writeFrame(payload, into: &buffer)
        return Array(buffer.readableBytesView)
    }
}

/// A payload longer than ``StreamFraming/maxPayloadLength`` cannot be framed.
public struct FrameTooLong: Error, Equatable, Sendable {
    public let length: Int

    public init(length: Int) { self.length = length }
}

/// What the stream decoder yields: a frame's payload, or a line of text found between frames.
public enum StreamItem: Equatable, Sendable {
    case frame(ByteBuffer)
    case logLine(String)
}

/// Decodes a Meshtastic byte stream into frames and debug-text lines.
///
/// It never fails: a header announcing more than 512 bytes costs one byte and the search
/// for the next `0x94 0xC3` goes on; bytes that belong to no frame are collected into text
/// lines (ANSI colour codes removed, at most ``maxLineLength`` bytes each). Memory stays
/// bounded by one frame plus one line, whatever arrives.
public struct MeshtasticFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = StreamItem

    public static let maxLineLength = 1024

    /// Headers dropped as noise: an announced length over the maximum, or (when payloads
    /// are checked) a payload that is not protobuf wire format.
    public private(set) var invalidHeaders = 0
    private var pendingText: [UInt8] = []
    private let checksPayloads: Bool

    /// `checksPayloads`: treat a header whose payload is not protobuf wire format as noise,
    /// and look for frames right after its first byte instead. Without it, noise on a serial
    /// line that happens to read `0x94 0xC3` plus a small length swallows the real frames that
    /// follow until that many bytes have arrived; with it, a payload is given up as soon as
    /// the bytes already there cannot be protobuf. Every real Meshtastic payload is.
    public init(checksPayloads: Bool = false) {
        self.checksPayloads = checksPayloads
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let item = next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(item))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if let item = next(from: &buffer) {
            context.fireChannelRead(Self.wrapInboundOut(item))
            return .continue
        }
        if let line = flushText() { context.fireChannelRead(Self.wrapInboundOut(.logLine(line))) }
        return .needMoreData
    }

    /// Takes the next item out of `buffer`, or nil if more bytes are needed. Usable without
    /// a channel pipeline.
    public mutating func next(from buffer: inout ByteBuffer) -> StreamItem? {
        while let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) {
            guard first == StreamFraming.start1 else {
                buffer.moveReaderIndex(forwardBy: 1)
                if let line = appendText(first) { return .logLine(line) }
                continue
            }
            guard let second = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) else { return nil }
            guard second == StreamFraming.start2 else {
                buffer.moveReaderIndex(forwardBy: 1)
                if let line = appendText(first) { return .logLine(line) }
                continue
            }
            guard let length = buffer.getInteger(at: buffer.readerIndex + 2, endianness: .big, as: UInt16.self) else {
                return nil
            }
            guard Int(length) <= StreamFraming.maxPayloadLength else {
                invalidHeaders += 1
                buffer.moveReaderIndex(forwardBy: 1)
                continue
            }
            let arrived = min(buffer.readableBytes - StreamFraming.headerLength, Int(length))
            if checksPayloads {
                let payload = buffer.readableBytesView.dropFirst(StreamFraming.headerLength).prefix(arrived)
                let verdict = ProtobufWireFormat.check(payload, complete: arrived == Int(length))
                guard verdict != .invalid else {
                    invalidHeaders += 1
                    buffer.moveReaderIndex(forwardBy: 1)
                    continue
                }
            }
            guard arrived == Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: StreamFraming.headerLength)
            return .frame(buffer.readSlice(length: Int(length))!)
        }
        return nil
    }

    private mutating func appendText(_ byte: UInt8) -> String? {
        if byte == UInt8(ascii: "\n") { return flushText() }
        pendingText.append(byte)
        return pendingText.count >= Self.maxLineLength ? flushText() : nil
    }

    private mutating func flushText() -> String? {
        defer { pendingText.removeAll(keepingCapacity: true) }
        let line = Self.cleanLine(pendingText)
        return line.isEmpty ? nil : line
    }

    /// Removes ANSI escape sequences, carriage returns and other control bytes; decodes UTF-8
    /// leniently.
    static func cleanLine(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x1B {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "[") {
                    index += 1
                    while index < bytes.count, !(0x40...0x7E).contains(bytes[index]) { index += 1 }
                }
                index += 1
                continue
            }
            if byte >= 0x20 || byte == 0x09 { out.append(byte) }
            index += 1
        }
        let text = String(decoding: out, as: UTF8.self)
        return text.trimmingSpaces()
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var slice = Substring(self)
        while slice.first?.isWhitespace == true { slice.removeFirst() }
        while slice.last?.isWhitespace == true { slice.removeLast() }
        return String(slice)
    }
}

/// What a client writes to the stream: a payload to frame, or raw bytes (the wake sequence).
public enum StreamOutbound: Sendable {
    case frame(ByteBuffer)
    case raw(ByteBuffer)
}

/// Frames outgoing payloads (serialized `ToRadio` or `FromRadio`) for the stream.
public struct MeshtasticFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = StreamOutbound

    public init() {}

    public func encode(data: StreamOutbound, out: inout ByteBuffer) throws {
        switch data {
        case .frame(let payload): try StreamFraming.writeFrame(payload.readableBytesView, into: &out)
        case .raw(var bytes): out.writeBuffer(&bytes)
        }
    }
}

/// A TCP connection or serial line carrying the Meshtastic stream, framed: items in,
/// payloads out. The radio side (RadioLink) and the simulator use the same codec.
public typealias StreamChannel = NIOAsyncChannel<StreamItem, StreamOutbound>

extension NIOAsyncChannel where Inbound == StreamItem, Outbound == StreamOutbound {
    /// Adds the stream codec to a fresh channel and wraps it for async use (with the point
    /// ``divertInbound(to:)`` attaches to).
    public static func configure(_ channel: any Channel) -> EventLoopFuture<StreamChannel> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MeshtasticFrameDecoder(checksPayloads: true)))
            try channel.pipeline.syncOperations.addHandler(StreamDiversion())
            try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(MeshtasticFrameEncoder()))
            return try StreamChannel(wrappingChannelSynchronously: channel)
        }
    }
}

/// Whether bytes can be (the start of) a protobuf message, judged on the wire format alone:
/// field keys with a field number of at least 1 and a wire type of 0, 1, 2 or 5 (proto3 has
/// no groups), varints of at most 10 bytes, lengths and fixed fields within bounds.
enum ProtobufWireFormat {
    enum Verdict: Equatable {
        /// Well-formed to the last byte.
        case valid
        /// Well-formed so far; more bytes are due.
        case incomplete
        /// Not protobuf.
        case invalid
    }

    static func check(_ bytes: some Collection<UInt8>, complete: Bool) -> Verdict {
        var index = bytes.startIndex
        func varint() -> UInt64?? {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 70, by: 7) {
                guard index < bytes.endIndex else { return .some(nil) }
                let byte = bytes[index]
                bytes.formIndex(after: &index)
                if shift == 63, byte > 1 { return nil }
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte & 0x80 == 0 { return .some(value) }
            }
            return nil
        }
        func skip(_ count: UInt64) -> Bool {
            let remaining = UInt64(bytes.distance(from: index, to: bytes.endIndex))
            guard count <= remaining else {
                index = bytes.endIndex
                return false
            }
            index = bytes.index(index, offsetBy: Int(count))
            return true
        }
        while index < bytes.endIndex {
            guard let keyOrEnd = varint() else { return .invalid }
            guard let key = keyOrEnd else { return complete ? .invalid : .incomplete }
            guard key >> 3 >= 1, key >> 3 <= 0x1FFF_FFFF else { return .invalid }
            switch key & 7 {
            case 0:
                guard let valueOrEnd = varint() else { return .invalid }
                if valueOrEnd == nil { return complete ? .invalid : .incomplete }
            case 1:
                if !skip(8) { return complete ? .invalid : .incomplete }
            case 2:
                guard let lengthOrEnd = varint() else { return .invalid }
                guard let length = lengthOrEnd else { return complete ? .invalid : .incomplete }
                guard length <= UInt64(StreamFraming.maxPayloadLength) else { return .invalid }
                if !skip(length) { return complete ? .invalid : .incomplete }
            case 5:
                if !skip(4) { return complete ? .invalid : .incomplete }
            default:
                return .invalid
            }
        }
        return complete ? .valid : .incomplete
    }
}
