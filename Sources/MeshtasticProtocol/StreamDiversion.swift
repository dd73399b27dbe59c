import NIOCore

/// Sits between a stream channel's decoder and its async stream. Until a consumer is
/// attached, items go on to the stream; afterwards each goes to the consumer, on the event
/// loop, as it is read. A radio link attaches one per session, so a frame is handled where
/// it was read instead of waking a reader task and then the link's supervisor.
final class StreamDiversion: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = StreamItem
    typealias InboundOut = StreamItem

    private var consumer: (@Sendable (StreamItem) -> Void)?
    /// Items passed on to the stream so far.
    private var passedOn = 0

    init() {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let consumer {
            consumer(unwrapInboundIn(data))
        } else {
            passedOn += 1
            context.fireChannelRead(data)
        }
    }

    /// Sends every later item to `consumer`; returns how many went to the stream before.
    func divert(to consumer: @escaping @Sendable (StreamItem) -> Void) -> Int {
        precondition(self.consumer == nil, "A stream's items are diverted once")
        self.consumer = consumer
        return passedOn
    }
}

extension NIOAsyncChannel where Inbound == StreamItem, Outbound == StreamOutbound {
    /// From now on hands each item read to `consumer` on the channel's event loop, instead
    /// of to `inbound`. Returns how many items went to `inbound` before: a caller that needs
    /// them in order takes those from `inbound` first (it then only ends). `consumer` must
    /// not block. Throws if the channel has no diversion point (it was not made by
    /// ``configure(_:)``) or is already closed.
    public func divertInbound(to consumer: @escaping @Sendable (StreamItem) -> Void) async throws -> Int {
        let channel = self.channel
        return try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: StreamDiversion.self).divert(to: consumer)
        }.get()
    }
}
