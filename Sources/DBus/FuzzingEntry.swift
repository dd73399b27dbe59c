import NIOCore

/// The parsers of bytes from the bus, for the fuzz target in `Fuzz/` (an SPI, not an API).
@_spi(Fuzzing) public enum DBusInputs {
    /// What the connection's decoder makes of the bus's bytes arriving in `pieces`: SASL lines,
    /// then messages (re-encoded, little-endian), until the first error (described).
    public static func decode(_ pieces: [ArraySlice<UInt8>]) -> (lines: [String], messages: [[UInt8]], error: String?) {
        var decoder = DBusFrameDecoder()
        var buffer = ByteBuffer()
        var lines: [String] = []
        var messages: [[UInt8]] = []
        for piece in pieces {
            buffer.writeBytes(piece)
            do {
                while let item = try decoder.next(from: &buffer) {
                    switch item {
                    case .authLine(let line): lines.append(line)
                    case .message(let message): messages.append(message.encoded())
                    }
                }
            } catch {
                return (lines, messages, "\(error)")
            }
            buffer.discardReadBytes()
        }
        return (lines, messages, nil)
    }
}
