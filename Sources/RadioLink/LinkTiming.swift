import MeshtasticProtocol

/// The timing of one slot's connection manager. Defaults are design.md §5; tests and the
/// chaos run shrink them.
public struct LinkTiming: Sendable, Equatable {
    /// Time between probes of a ready radio.
    public var healthCheckInterval: Duration
    /// A probe without any answer in this time is a strike.
    public var probeTimeout: Duration
    /// Consecutive strikes that declare the link dead.
    public var maxStrikes: Int
    /// Pause between closing a link that was ready and opening the next.
    public var reconnectCooldown: Duration
    /// First delay after a failed attempt; doubles per consecutive failure up to `maxBackoff`.
    public var baseBackoff: Duration
    public var maxBackoff: Duration
    /// Each backoff delay moves by a uniform random amount within ± this.
    public var backoffJitter: Duration
    /// Open plus the whole config handshake must finish in this time.
    public var interfaceInitTimeout: Duration
    /// Retry interval while the device is absent (a serial path that does not exist).
    public var disconnectedPollInterval: Duration
    /// Interval of `ToRadio.heartbeat`, well under the firmware's 15-minute idle timeout.
    public var heartbeatInterval: Duration
    /// TCP connect timeout (TCP transports only).
    public var connectTimeout: Duration
    /// A link that stayed ready this long resets the backoff; one that died sooner counts as
    /// a failed attempt, so a radio that connects and dies at once backs off exponentially.
    public var stableAfter: Duration
    /// Storm guard: more than `stormLimit` losses of a ready link within `stormWindow` hold
    /// retries at `maxBackoff` until the window clears.
    public var stormWindow: Duration
    public var stormLimit: Int
    /// TCP keepalive (TCP transports only): idle time, probe interval, probe count.
    public var tcpKeepalive: TCPKeepalive
    /// Minimum time between two packets of one port written to the radio. Firmware 2.7
    /// drops a text sent within 2 s of the previous one (`RATE_LIMIT_EXCEEDED`), and
    /// position/waypoint/alert within 10 s, traceroute within 30 s; the defaults keep a
    /// margin above those.
    public var sendSpacing: [Meshtastic_PortNum: Duration]

    public static let defaultSendSpacing: [Meshtastic_PortNum: Duration] = [
        .textMessageApp: .milliseconds(2500),
        .positionApp: .milliseconds(10_500),
        .waypointApp: .milliseconds(10_500),
        .alertApp: .milliseconds(10_500),
        .tracerouteApp: .milliseconds(30_500),
    ]

    /// The kernel's TCP keepalive settings for a radio socket.
    public struct TCPKeepalive: Sendable, Equatable {
        public var idle: Duration
        public var interval: Duration
        public var count: Int

        public init(idle: Duration = .seconds(10), interval: Duration = .seconds(5), count: Int = 3) {
            self.idle = idle
            self.interval = interval
            self.count = count
        }
    }

    public init(
        healthCheckInterval: Duration = .seconds(12),
        probeTimeout: Duration = .seconds(8),
        maxStrikes: Int = 2,
        reconnectCooldown: Duration = .seconds(3),
        baseBackoff: Duration = .seconds(2),
        maxBackoff: Duration = .seconds(15),
        backoffJitter: Duration = .seconds(1),
        interfaceInitTimeout: Duration = .seconds(25),
        disconnectedPollInterval: Duration = .seconds(5),
        heartbeatInterval: Duration = .seconds(300),
        connectTimeout: Duration = .seconds(10),
        stableAfter: Duration = .seconds(30),
        stormWindow: Duration = .seconds(60),
        stormLimit: Int = 4,
        tcpKeepalive: TCPKeepalive = TCPKeepalive(),
        sendSpacing: [Meshtastic_PortNum: Duration] = defaultSendSpacing
    ) {
        self.healthCheckInterval = healthCheckInterval
        self.probeTimeout = probeTimeout
        self.maxStrikes = max(1, maxStrikes)
        self.reconnectCooldown = reconnectCooldown
        self.baseBackoff = baseBackoff
        self.maxBackoff = max(baseBackoff, maxBackoff)
        self.backoffJitter = backoffJitter
        self.interfaceInitTimeout = interfaceInitTimeout
        self.disconnectedPollInterval = disconnectedPollInterval
        self.heartbeatInterval = heartbeatInterval
        self.connectTimeout = connectTimeout
        self.stableAfter = stableAfter
        self.stormWindow = stormWindow
        self.stormLimit = max(1, stormLimit)
        self.tcpKeepalive = tcpKeepalive
        self.sendSpacing = sendSpacing
    }

    /// The delay before attempt `failures + 1` after `failures` consecutive failed attempts
    /// (1 or more): `baseBackoff · 2^(failures-1)`, capped at `maxBackoff`, then moved by a
    /// uniform jitter within ±`backoffJitter`, never below zero.
    public func backoff(failures: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let doublings = min(max(failures - 1, 0), 30)
        let base = Double(attoseconds: baseBackoff) * Double(1 << doublings)
        let capped = min(base, Double(attoseconds: maxBackoff))
        return Self.jittered(capped, by: backoffJitter, using: &generator)
    }

    /// `maxBackoff` with jitter: what the storm guard waits.
    public func stormDelay(using generator: inout some RandomNumberGenerator) -> Duration {
        Self.jittered(Double(attoseconds: maxBackoff), by: backoffJitter, using: &generator)
    }

    private static func jittered(_ attoseconds: Double, by jitter: Duration, using generator: inout some RandomNumberGenerator) -> Duration {
        let spread = Double(attoseconds: jitter)
        let offset = spread > 0 ? Double.random(in: -spread...spread, using: &generator) : 0
        return Duration(attoseconds: max(0, attoseconds + offset))
    }
}

extension Double {
    init(attoseconds duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = Double(seconds) * 1e18 + Double(attoseconds)
    }
}

extension Duration {
    init(attoseconds value: Double) {
        let seconds = (value / 1e18).rounded(.down)
        self = .seconds(Int64(seconds)) + .nanoseconds(Int64(((value - seconds * 1e18) / 1e9).rounded()))
    }

    /// The duration in seconds, as a Double (for JSON and logs).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
