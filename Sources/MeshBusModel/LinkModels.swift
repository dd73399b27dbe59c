extension MeshBus {
    /// A slot's connection-manager state as published (design.md §5).
    public enum LinkState: OpenStringEnum {
        case idle, connecting, configuring, ready, degraded, cooldown, backoff, disconnectedForRestart, stopped
        /// A state this build does not know (a newer broker's).
        case unknown(String)

        public static let allKnown: [LinkState] = [
            .idle, .connecting, .configuring, .ready, .degraded, .cooldown, .backoff, .disconnectedForRestart, .stopped,
        ]

        public init(rawValue: String) {
            self = Self.allKnown.first { $0.rawValue == rawValue } ?? .unknown(rawValue)
        }

        public var rawValue: String {
            switch self {
            case .idle: "idle"
            case .connecting: "connecting"
            case .configuring: "configuring"
            case .ready: "ready"
            case .degraded: "degraded"
            case .cooldown: "cooldown"
            case .backoff: "backoff"
            case .disconnectedForRestart: "disconnectedForRestart"
            case .stopped: "stopped"
            case .unknown(let name): name
            }
        }

        /// Whether sends are written in this state (`ready`, or `degraded` while a strike is pending).
        public var isUp: Bool { self == .ready || self == .degraded }
    }

    /// Why a ready link was declared dead (`meshtastic.connection.lost`).
    public enum LossReason: OpenStringEnum {
        case probeStrikes, transportClosed, writeFailed, initTimeout, radioRebooted, shutdown, reload, manual
        /// A browser-held radio (WebSerial): the tab closed, the port was unplugged, another browser took over.
        case browserClosed, portLost, takenOver
        case unknown(String)

        public static let allKnown: [LossReason] = [
            .probeStrikes, .transportClosed, .writeFailed, .initTimeout, .radioRebooted, .shutdown, .reload, .manual,
            .browserClosed, .portLost, .takenOver,
        ]

        public init(rawValue: String) {
            self = Self.allKnown.first { $0.rawValue == rawValue } ?? .unknown(rawValue)
        }

        public var rawValue: String {
            switch self {
            case .probeStrikes: "probe_strikes"
            case .transportClosed: "transport_closed"
            case .writeFailed: "write_failed"
            case .initTimeout: "init_timeout"
            case .radioRebooted: "radio_rebooted"
            case .shutdown: "shutdown"
            case .reload: "reload"
            case .manual: "manual"
            case .browserClosed: "browser_closed"
            case .portLost: "port_lost"
            case .takenOver: "taken_over"
            case .unknown(let reason): reason
            }
        }
    }

    /// `meshtastic.connection.state`: any change of a slot's connection manager.
    public struct LinkStateChange: Codable, Sendable, Equatable, JSONValueConvertible {
        public var state: LinkState
        public var previous: LinkState?
        public var strikes: Int?
        public var attempt: Int?
        /// Seconds until the next attempt, in `cooldown` and `backoff`.
        public var retryInSeconds: Double?

        public init(state: LinkState, previous: LinkState?, strikes: Int?, attempt: Int?, retryInSeconds: Double?) {
            self.state = state
            self.previous = previous
            self.strikes = strikes
            self.attempt = attempt
            self.retryInSeconds = retryInSeconds
        }

        public var jsonValue: JSONValue {
            .object([
                "state": .string(state.rawValue),
                "previous": .optional(previous) { .string($0.rawValue) },
                "strikes": .optional(strikes, JSONValue.int),
                "attempt": .optional(attempt, JSONValue.int),
                "retryInSeconds": .optional(retryInSeconds, JSONValue.double),
            ])
        }
    }

    /// One entry of `status`'s `history`: a link state and when the slot entered it, so a
    /// page can draw the last hour without replaying events.
    public struct LinkStateSpan: Codable, Sendable, Equatable, JSONValueConvertible {
        public var state: LinkState
        /// ISO 8601 UTC, as an envelope's `time`.
        public var since: String

        public init(state: LinkState, since: String) {
            self.state = state
            self.since = since
        }

        public var jsonValue: JSONValue {
            .object(["state": .string(state.rawValue), "since": .string(since)])
        }
    }

    /// `meshtastic.connection.established`: the slot finished its handshake and is ready.
    public struct LinkEstablished: Codable, Sendable, Equatable, JSONValueConvertible {
        public var myNodeNum: UInt32
        public var firmware: String?
        public var nodeCount: Int
        public var attempt: Int

        public init(myNodeNum: UInt32, firmware: String?, nodeCount: Int, attempt: Int) {
            self.myNodeNum = myNodeNum
            self.firmware = firmware
            self.nodeCount = nodeCount
            self.attempt = attempt
        }

        public var jsonValue: JSONValue {
            .object([
                "myNodeNum": .int(myNodeNum), "firmware": .optional(firmware, JSONValue.string), "nodeCount": .int(nodeCount),
                "attempt": .int(attempt),
            ])
        }
    }

    /// `meshtastic.connection.lost`: a ready slot's link was declared dead.
    public struct LinkLost: Codable, Sendable, Equatable, JSONValueConvertible {
        public var reason: LossReason

        public init(reason: LossReason) {
            self.reason = reason
        }

        public var jsonValue: JSONValue { .object(["reason": .string(reason.rawValue)]) }
    }
}
