import NIOCore

/// What the bus sends: text lines while authenticating, then messages.
enum DBusInbound: Sendable {
    case authLine(String)
    case message(DBusMessage)
}

/// Splits the bus's byte stream: `\r\n`-terminated SASL lines until the server's `OK`, then
/// whole messages (their length read from the fixed header). A malformed message is an error
/// that closes the connection: a byte stream cannot be resynchronised.
struct DBusFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = DBusInbound

    private enum Mode {
        case authenticating
        case messages
    }
    private var mode = Mode.authenticating

    /// The longest SASL line taken (real ones are well under 100 bytes).
    static let maximumLineLength = 16 * 1024

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let item = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(item))
        return .continue
    }

    /// The next line or message in `buffer`, consumed; nil when it is not all there yet.
    mutating func next(from buffer: inout ByteBuffer) throws -> DBusInbound? {
        switch mode {
        case .authenticating:
            let view = buffer.readableBytesView
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                if view.count > Self.maximumLineLength { throw DBusWireError.invalidHeader("authentication line over \(Self.maximumLineLength) bytes") }
                return nil
            }
            let length = newline - view.startIndex + 1
            var line = buffer.readString(length: length) ?? ""
            line.removeLast()
            if line.hasSuffix("\r") { line.removeLast() }
            if line.hasPrefix("OK ") { mode = .messages }
            return .authLine(line)
        case .messages:
            guard let length = try DBusMessage.length(ofMessageStartingWith: buffer.readableBytesView),
                let bytes = buffer.readBytes(length: length)
            else { return nil }
            return .message(try DBusMessage(decoding: bytes))
        }
    }
}
