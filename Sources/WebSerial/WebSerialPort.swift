import MeshtasticProtocol
import NIOCore
import NIOPosix
import RadioLink
import Synchronization

/// One `webserial` slot's meeting point (design.md §9): a browser page relays its serial port's
/// bytes over a WebSocket; the slot's link opens through whichever browser holds the radio.
///
/// One browser at a time: a second one takes over, as a radio's second client does. Each time
/// the link opens, a socket pair joins the two: the link's end carries the usual framing, the
/// relay's end the raw bytes the page reads from and writes to the port.
///
/// `disconnectForRestart` holds the port: the relay ends once the link's session has closed
/// (after its goodbye), and no browser attaches until `reconnect` releases it.
public final class WebSerialPort: Sendable {
    public let slot: String

    private struct State {
        var relay: WebSerialRelay?
        var nextID = 1
        /// Why the last relay ended, for the link's `connection.lost`.
        var closeReason: LossReason?
        var peerWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        /// Between `disconnectForRestart` and `reconnect`.
        var held = false
    }

    private let state = Mutex(State())

    public init(slot: String) {
        self.slot = slot
    }

    /// A browser attaches: the relay that now holds the radio. One already attached is taken
    /// over. Nil while the port is held for a restart.
    public func attach() -> WebSerialRelay? {
        let attached = state.withLock { state -> (WebSerialRelay, WebSerialRelay?, [CheckedContinuation<Void, Never>])? in
            guard !state.held else { return nil }
            let relay = WebSerialRelay(id: state.nextID)
            state.nextID += 1
            let previous = state.relay
            state.relay = relay
            let waiters = Array(state.peerWaiters.values)
            state.peerWaiters.removeAll()
            return (relay, previous, waiters)
        }
        guard let (relay, previous, waiters) = attached else { return nil }
        if let previous { end(previous, reason: .takenOver) }
        for waiter in waiters { waiter.resume() }
        return relay
    }

    /// Ends `relay` (its browser left, lost its port, or was taken over): the link's channel
    /// through it closes, with `reason` as the link's loss.
    public func end(_ relay: WebSerialRelay, reason: LossReason) {
        state.withLock { state in
            if state.relay === relay {
                state.relay = nil
                state.closeReason = reason
            } else if reason == .takenOver {
                state.closeReason = reason
            }
        }
        relay.finish(reason: reason)
    }

    /// Whether a browser holds the radio now.
    public var isAttached: Bool { state.withLock { $0.relay != nil } }

    /// `disconnectForRestart`: the browser lets go of the port once no link session runs
    /// through it, and none attaches until ``release()``.
    public func holdForRestart() {
        let relay = state.withLock { state -> WebSerialRelay? in
            state.held = true
            return state.relay
        }
        if let relay, !relay.hasSession { end(relay, reason: .manual) }
    }

    /// `reconnect`: browsers may attach again (a page that let go reopens its port).
    public func release() {
        state.withLock { $0.held = false }
    }

    /// A link session through `relay` has closed; a held port ends the relay now.
    public func sessionEnded(_ relay: WebSerialRelay) {
        relay.clearSession()
        if state.withLock({ $0.held && $0.relay === relay }) { end(relay, reason: .manual) }
    }

    fileprivate var currentRelay: WebSerialRelay? { state.withLock { $0.relay } }

    fileprivate func takeCloseReason() -> LossReason? {
        state.withLock { state in
            defer { state.closeReason = nil }
            return state.closeReason
        }
    }

    fileprivate func waitForRelay() async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.relay != nil || Task.isCancelled { return true }
                    state.peerWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.peerWaiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// One browser's relay: the WebSocket session's side of the slot. Each time the link opens
/// through it, ``links`` yields the relay's end of a new socket pair.
public final class WebSerialRelay: Sendable {
    public let id: Int
    /// The relay's end of each link session, raw bytes both ways.
    public let links: AsyncStream<NIOAsyncChannel<ByteBuffer, ByteBuffer>>
    private let linkContinuation: AsyncStream<NIOAsyncChannel<ByteBuffer, ByteBuffer>>.Continuation
    private let ending = Mutex<(reason: LossReason?, channel: (any Channel)?)>((nil, nil))

    init(id: Int) {
        self.id = id
        (links, linkContinuation) = AsyncStream.makeStream()
    }

    /// Why the relay ended, once it has.
    public var endReason: LossReason? { ending.withLock { $0.reason } }

    fileprivate var hasSession: Bool { ending.withLock { $0.channel != nil } }

    fileprivate func clearSession() { ending.withLock { $0.channel = nil } }

    fileprivate func offer(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, underlying: any Channel) -> Bool {
        let open = ending.withLock { ending in
            guard ending.reason == nil else { return false }
            ending.channel = underlying
            return true
        }
        if open { linkContinuation.yield(channel) }
        return open
    }

    fileprivate func finish(reason: LossReason) {
        let channel = ending.withLock { ending -> (any Channel)? in
            if ending.reason == nil { ending.reason = reason }
            defer { ending.channel = nil }
            return ending.channel
        }
        linkContinuation.finish()
        channel?.close(promise: nil)
    }
}

/// The slot's transport: opens through the browser that holds the radio, or reports that
/// none does (the link then waits idle until one attaches).
public struct WebSerialTransport: ChannelRadioTransport {
    public let port: WebSerialPort
    let group: any EventLoopGroup

    public init(port: WebSerialPort, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.port = port
        self.group = group
    }

    public var kind: String { "webserial" }
    public var description: String { "webserial://\(port.slot)" }
    /// As for a serial radio: the page wrote the wake-up bytes to a port that may be asleep.
    public var wakeDelay: Duration { .milliseconds(100) }

    public func open() async throws -> StreamChannel {
        guard let relay = port.currentRelay else { throw RadioTransportError.awaitingPeer("no browser holds the radio") }
        _ = port.takeCloseReason()  // a reason left from an earlier session is not this one's
        let (linkEnd, relayEnd) = try await SocketPairChannels.make(
            group: group,
            first: { StreamChannel.configure($0) },
            second: { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        )
        guard relay.offer(relayEnd, underlying: relayEnd.channel) else {
            // The browser left while the pair was made.
            try? await relayEnd.channel.close()
            try? await linkEnd.channel.close()
            throw RadioTransportError.awaitingPeer("no browser holds the radio")
        }
        return linkEnd
    }

    public func waitForPeer() async { await port.waitForRelay() }

    public func takeCloseReason() -> LossReason? { port.takeCloseReason() }
}
