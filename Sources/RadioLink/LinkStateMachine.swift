/// Why a link that was up (or coming up) went down; published as `connection.lost` `reason`.
public enum LossReason: String, Sendable, Equatable {
    case probeStrikes = "probe_strikes"
    case transportClosed = "transport_closed"
    case writeFailed = "write_failed"
    case initTimeout = "init_timeout"
    case radioRebooted = "radio_rebooted"
    case shutdown
    case reload
    case manual
}

/// The connection state of one slot, as a pure value: every event is a `mutating func` that
/// returns the action its driver (``RadioLink``) must carry out. No I/O, no clocks, no
/// randomness inside, so every edge is a plain unit test.
///
/// ```
/// idle ──start──▶ connecting ──opened──▶ configuring ──configComplete(nonce)──▶ ready
///   ▲                 │ failed               │ closed / timeout                    │ closed
///   │                 ▼                      ▼                                     ▼
///   └────────────── cooldown ◀───────────────┴─────────────────────────────────────┘
///                     │ elapsed ──▶ connecting (attempt + 1)
/// any ──stop──▶ stopped
/// ```
/// Probes, strikes, degraded, exponential backoff and the hold for a restart grow on this
/// machine in the connection-manager work; the shape stays.
public struct LinkStateMachine: Sendable {
    public enum State: Equatable, Sendable {
        case idle
        case connecting(attempt: Int)
        case configuring(attempt: Int, nonce: UInt32)
        case ready(attempt: Int)
        case cooldown(attempt: Int)
        case stopped

        /// The connection attempt the state belongs to, 0 where there is none.
        public var attempt: Int {
            switch self {
            case .connecting(let attempt), .configuring(let attempt, _), .ready(let attempt), .cooldown(let attempt): attempt
            case .idle, .stopped: 0
            }
        }

        /// The state's name as published in `connection.state`.
        public var name: String {
            switch self {
            case .idle: "idle"
            case .connecting: "connecting"
            case .configuring: "configuring"
            case .ready: "ready"
            case .cooldown: "cooldown"
            case .stopped: "stopped"
            }
        }
    }

    public enum Action: Equatable, Sendable {
        /// Open the transport for this attempt.
        case open(attempt: Int)
        /// Send `want_config_id` with this nonce and arm the init timeout.
        case requestConfig(nonce: UInt32)
        /// The handshake matched: the slot is ready.
        case becomeReady(attempt: Int)
        /// Close the transport; `wasReady` tells whether `connection.lost` is due. Then wait
        /// `cooldown` and report ``LinkStateMachine/cooldownElapsed()``.
        case closeAndWait(reason: LossReason, wasReady: Bool, cooldown: Duration)
        /// Close the transport if open; the loop ends.
        case closeAndStop(wasReady: Bool)
        /// Nothing to do (a stale or irrelevant event).
        case none
    }

    public private(set) var state: State = .idle
    public let cooldown: Duration

    public init(cooldown: Duration) {
        self.cooldown = cooldown
    }

    public mutating func start() -> Action {
        guard case .idle = state else { return .none }
        state = .connecting(attempt: 1)
        return .open(attempt: 1)
    }

    /// The transport opened; `nonce` is the fresh `want_config_id` for this attempt.
    public mutating func opened(nonce: UInt32) -> Action {
        guard case .connecting(let attempt) = state else { return .none }
        state = .configuring(attempt: attempt, nonce: nonce)
        return .requestConfig(nonce: nonce)
    }

    /// `config_complete_id` arrived. Only the nonce of this attempt makes the slot ready.
    public mutating func configComplete(id: UInt32) -> Action {
        guard case .configuring(let attempt, let nonce) = state, id == nonce else { return .none }
        state = .ready(attempt: attempt)
        return .becomeReady(attempt: attempt)
    }

    /// The link failed or closed, for `reason`, in whatever phase it was.
    public mutating func failed(_ reason: LossReason) -> Action {
        switch state {
        case .connecting(let attempt), .configuring(let attempt, _):
            state = .cooldown(attempt: attempt)
            return .closeAndWait(reason: reason, wasReady: false, cooldown: cooldown)
        case .ready(let attempt):
            state = .cooldown(attempt: attempt)
            return .closeAndWait(reason: reason, wasReady: true, cooldown: cooldown)
        case .idle, .cooldown, .stopped:
            return .none
        }
    }

    public mutating func cooldownElapsed() -> Action {
        guard case .cooldown(let attempt) = state else { return .none }
        state = .connecting(attempt: attempt + 1)
        return .open(attempt: attempt + 1)
    }

    public mutating func stop() -> Action {
        let wasReady = if case .ready = state { true } else { false }
        guard state != .stopped else { return .none }
        state = .stopped
        return .closeAndStop(wasReady: wasReady)
    }
}
