import NIOCore

/// Splits a byte stream into ``MQTTPacket``s. Waits for whole packets, and rejects an
/// unknown type, bad flags, a malformed length or an oversized packet before its body arrives.
package struct MQTTDecoder: ByteToMessageDecoder {
    package typealias InboundOut = MQTTPacket

    /// The default ``maximumPacketSize``: 1 MiB.
    package static let defaultMaximumPacketSize = 1 << 20

    /// The largest packet accepted, fixed header included.
    package let maximumPacketSize: Int

    package init(maximumPacketSize: Int = MQTTDecoder.defaultMaximumPacketSize) {
        self.maximumPacketSize = maximumPacketSize
    }

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let packet = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(packet))
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// Takes the next whole packet out of `buffer`; nil (consuming nothing) while it is incomplete.
    package func next(from buffer: inout ByteBuffer) throws -> MQTTPacket? {
        let start = buffer.readerIndex
        guard let fixedHeader = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
        _ = try MQTTPacket.kind(ofFixedHeader: fixedHeader)
        var remainingLength = 0
        var headerSize = 1
        while true {
            guard let byte = buffer.getInteger(at: start + headerSize, as: UInt8.self) else { return nil }
            remainingLength |= Int(byte & 0x7F) << (7 * (headerSize - 1))
            headerSize += 1
            if byte & 0x80 == 0 { break }
            guard headerSize < 5 else { throw MQTTProtocolError.malformedRemainingLength }
        }
        let size = headerSize + remainingLength
        guard size <= maximumPacketSize else { throw MQTTProtocolError.packetTooLarge(size: size, maximum: maximumPacketSize) }
        guard buffer.readableBytes >= size else { return nil }
        buffer.moveReaderIndex(forwardBy: headerSize)
        var body = buffer.readSlice(length: remainingLength)!
        return try MQTTPacket.read(fixedHeader: fixedHeader, body: &body)
    }
}

/// Writes ``MQTTPacket``s as bytes; a packet that cannot be encoded fails its write.
package struct MQTTEncoder: MessageToByteEncoder {
    package typealias OutboundIn = MQTTPacket

    package init() {}

    package func encode(data: MQTTPacket, out: inout ByteBuffer) throws {
        try data.write(to: &out)
    }
}
