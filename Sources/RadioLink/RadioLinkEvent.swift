import MeshtasticProtocol

/// What a slot's link reports to the broker, in order.
public enum RadioLinkEvent: Sendable {
    /// The manager changed state.
    case stateChanged(LinkState, previous: LinkState)
    /// The handshake completed with this attempt's nonce; the slot is ready.
    case established(LinkInfo)
    /// A ready link went down.
    case lost(LossReason)
    /// A health probe came back after `roundTrip`.
    case probeAnswered(roundTrip: Duration)
    /// A message from the radio, with its raw bytes. `backlog` is true for packets that
    /// arrived before the handshake completed (the radio flushing what it stored).
    case fromRadio(Meshtastic_FromRadio, raw: [UInt8], backlog: Bool)
    /// A packet was written to the radio.
    case sent(OutgoingPacket)
    /// A line of the radio's debug console (bytes between frames).
    case logLine(String)
    /// A frame that is not a valid `FromRadio`; dropped and counted.
    case undecodableFrame(length: Int)
}

/// What the handshake told about the radio.
public struct LinkInfo: Sendable, Equatable {
    public var myNodeNum: UInt32
    public var firmware: String
    public var nodeCount: Int
    public var attempt: Int

    public init(myNodeNum: UInt32, firmware: String, nodeCount: Int, attempt: Int) {
        self.myNodeNum = myNodeNum
        self.firmware = firmware
        self.nodeCount = nodeCount
        self.attempt = attempt
    }
}

/// A link's manager state for `status`.
public struct LinkStatus: Sendable, Equatable {
    public var state: LinkState
    /// Time since the last successful probe (or frame answering one), nil before the first.
    public var sinceLastProbeSuccess: Duration?
    /// The round trip of the last answered probe, nil before the first.
    public var lastProbeRoundTrip: Duration?
    /// Why the link is not up, in words (a failed open, a loss); nil once it is ready.
    public var lastError: String?
    /// Consecutive failed attempts behind the current backoff.
    public var failures: Int
}
