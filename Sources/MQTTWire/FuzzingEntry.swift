import NIOCore

/// The MQTT decoder, for the fuzz target in `Fuzz/` (an SPI, not an API).
@_spi(Fuzzing) public enum MQTTInputs {
    /// The packets decoded from a broker's bytes arriving in `pieces`, each written again as
    /// bytes, until the first error (described); `pending` is how many bytes wait for more.
    public static func decode(_ pieces: [ArraySlice<UInt8>]) -> (packets: [[UInt8]], error: String?, pending: Int) {
        let decoder = MQTTDecoder()
        var buffer = ByteBuffer()
        var packets: [[UInt8]] = []
        for piece in pieces {
            buffer.writeBytes(piece)
            do {
                while let packet = try decoder.next(from: &buffer) {
                    var out = ByteBuffer()
                    do {
                        try packet.write(to: &out)
                    } catch {
                        return (packets, "decoded but not writable: \(error)", buffer.readableBytes)
                    }
                    packets.append(Array(out.readableBytesView))
                }
            } catch {
                return (packets, "\(error)", buffer.readableBytes)
            }
            buffer.discardReadBytes()
        }
        return (packets, nil, buffer.readableBytes)
    }
}
