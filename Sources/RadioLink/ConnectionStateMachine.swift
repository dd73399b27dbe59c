import MeshBusModel
import MeshtasticProtocol

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
    /// A browser-held radio (design.md §9): the tab or its WebSocket closed.
    case browserClosed = "browser_closed"
    /// A browser-held radio: the page reported the serial port gone (unplugged).
    case portLost = "port_lost"
    /// A browser-held radio: another browser took it over.
    case takenOver = "taken_over"
}

/// How a session (one open transport) ended, as its task reports it.
public enum SessionEnd: Sendable, Equatable {
    /// The transport could not be opened (refused, unreachable, open error).
    case unreachable
    /// There is nothing to open yet (a serial path that does not exist): poll, do not count.
    case deviceAbsent
    /// The transport opens only through a peer that holds the radio (a browser), and none
    /// does: wait idle, without timers, until the transport reports one.
    case awaitingPeer
    /// An open transport closed or failed.
    case lost(LossReason)
}

/// What an inbound frame means to the connection manager.
public enum InboundFrame: Sendable, Equatable {
    case configComplete(id: UInt32)
    case rebooted
    /// Any other frame: it proves the link alive, nothing more.
    case other
}

/// The probe request a ready link sends.
public enum ProbeRequest: Sendable, Equatable {
    /// `ToRadio.heartbeat`: firmware 2.6+ answers with `FromRadio.queueStatus`. The nonce
    /// differs from the last one sent (over BLE the firmware drops a write identical to the
    /// previous) and is never 1 (which asks the radio to broadcast its node info).
    case heartbeat(nonce: UInt32)
    /// `AdminMessage.get_device_metadata_request` to the local node, with this packet id:
    /// answered by every firmware that has the admin module, including those that ignore
    /// heartbeats. Used after a strike, so a radio that merely ignores heartbeats is not
    /// declared dead.
    case deviceMetadata(packetID: UInt32)
}

/// The published states of design.md §5.
public enum LinkState: Equatable, Sendable {
    case idle
    /// Opening the transport for `attempt` (counted from 1 over the slot's life).
    case connecting(attempt: Int)
    /// Transport open, `want_config_id = nonce` sent, handshake running.
    case configuring(attempt: Int, nonce: UInt32)
    /// Handshake complete; sends flow.
    case ready(attempt: Int)
    /// Ready, but a probe went unanswered: `strikes` of `maxStrikes`. Sends pause.
    case degraded(attempt: Int, strikes: Int)
    /// A ready link was lost; reopening after `retryIn`.
    case cooldown(attempt: Int, retryIn: Duration)
    /// Attempts failed (or a radio flaps); reopening after `retryIn`.
    case backoff(attempt: Int, retryIn: Duration)
    /// Closed on request and held closed until `reconnect`.
    case disconnectedForRestart(attempt: Int)
    case stopped

    /// The state as published in `connection.state` and `status` (its name is spelled there, once).
    public var published: MeshBus.LinkState {
        switch self {
        case .idle: .idle
        case .connecting: .connecting
        case .configuring: .configuring
        case .ready: .ready
        case .degraded: .degraded
        case .cooldown: .cooldown
        case .backoff: .backoff
        case .disconnectedForRestart: .disconnectedForRestart
        case .stopped: .stopped
        }
    }

    /// The state's name as published.
    public var name: String { published.rawValue }

    /// Every state's name, in the order of design.md §5.
    public static var names: [String] { MeshBus.LinkState.allKnown.map(\.rawValue) }

    /// The latest connection attempt, 0 before the first.
    public var attempt: Int {
        switch self {
        case .connecting(let attempt), .configuring(let attempt, _), .ready(let attempt), .degraded(let attempt, _),
            .cooldown(let attempt, _), .backoff(let attempt, _), .disconnectedForRestart(let attempt):
            attempt
        case .idle, .stopped: 0
        }
    }

    /// Consecutive unanswered probes.
    public var strikes: Int {
        if case .degraded(_, let strikes) = self { strikes } else { 0 }
    }

    /// Time until the next attempt, for `cooldown` and `backoff`.
    public var retryIn: Duration? {
        switch self {
        case .cooldown(_, let delay), .backoff(_, let delay): delay
        default: nil
        }
    }

    /// Whether sends may be written now.
    public var isReady: Bool {
        if case .ready = self { true } else { false }
    }

    /// Whether an attempt is under way: opening the transport or in the handshake.
    public var isHandshaking: Bool {
        switch self {
        case .connecting, .configuring: true
        default: false
        }
    }

    /// Whether the handshake completed and the link has not been declared lost.
    public var isUp: Bool {
        switch self {
        case .ready, .degraded: true
        default: false
        }
    }
}

/// The connection manager of one slot, as a pure value (design.md §5).
///
/// One transition function, ``handle(_:)``, takes an ``Event`` and returns the actions its
/// driver (``RadioLink``) carries out: open a transport, write a request, schedule a timer,
/// close the session, report the link up or down. It never sleeps, reads a clock or does I/O; the current
/// time comes in with the events that need it and randomness from its own seeded
/// generator, so every edge is a plain, exact unit test.
///
/// ```
///            start                opened                 config_complete_id == nonce
///  idle ───────────▶ connecting ─────────▶ configuring ─────────────────────────────▶ ready ◀──┐
///                       ▲   │ failed          │ failed / init timeout                  │ strike │ frame
///                       │   ▼                 ▼                                        ▼        │
///                       ├── backoff ◀─────────┴──────────── (died before stableAfter) degraded ─┘
///                       │  (exponential, jitter, storm guard)                          │ maxStrikes
///                       └── cooldown ◀──────────────────────── (stayed ready) ◀────────┘ or loss
///  any ──disconnectForRestart──▶ disconnectedForRestart ──reconnect (after settle)──▶ connecting
///  any ──shutdown──▶ stopped
/// ```
///
/// A new transport is opened only after the previous session reported its end, so the
/// transport is always closed before the next attempt.
public struct ConnectionStateMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public typealias State = LinkState

    /// A timer the driver runs; when it fires the driver calls ``timerFired(_:now:)``. A
    /// timer superseded in the meantime is recognised by its `id` and ignored.
    public struct Timer: Hashable, Sendable {
        public enum Kind: Hashable, Sendable {
            /// Open + handshake deadline of one attempt.
            case initTimeout
            /// Next probe of a ready link.
            case probe
            /// Deadline of the probe in flight.
            case probeTimeout
            /// Next `ToRadio.heartbeat`.
            case heartbeat
            /// End of cooldown or backoff.
            case retry
            /// End of the settle time after `disconnectForRestart`.
            case settle

            /// Whether the timer belongs to one session (and dies with it).
            public var isSessionScoped: Bool {
                switch self {
                case .initTimeout, .probe, .probeTimeout, .heartbeat: true
                case .retry, .settle: false
                }
            }
        }

        public var kind: Kind
        public var id: Int
        public var delay: Duration
    }

    /// A message the driver writes to the current session's transport.
    public enum Request: Equatable, Sendable {
        case wantConfig(nonce: UInt32)
        case probe(ProbeRequest)
        /// The keep-alive heartbeat, with a nonce as for ``ProbeRequest/heartbeat(nonce:)``.
        case heartbeat(nonce: UInt32)
    }

    public enum Action: Equatable, Sendable {
        /// Open the transport for `attempt` in a new session.
        case connect(attempt: Int)
        /// Write to the current session.
        case send(Request)
        case schedule(Timer)
        /// The handshake matched this attempt's nonce: publish `connection.established`.
        case established(attempt: Int)
        /// A ready link is gone: publish `connection.lost` with `reason`.
        case lost(LossReason)
        /// A probe was answered this long after it was written (for the round-trip metric).
        case probeAnswered(roundTrip: Duration)
        /// End the current session and close its transport; `goodbye` writes
        /// `ToRadio.disconnect` first (a clean close the radio is told about).
        case closeSession(goodbye: Bool)
        /// Wait for the transport's peer, then report ``Event/peerAvailable``.
        case awaitPeer
    }

    public private(set) var state: State = .idle
    public let timing: LinkTiming
    /// Consecutive failed attempts (attempts that never became ready, and ready links that
    /// died before `stableAfter`); drives the backoff.
    public private(set) var failures = 0
    /// When the last probe (or any frame answering it) succeeded.
    public private(set) var lastProbeSuccess: Instant?
    /// The round trip of the last answered probe (`status`, the status page).
    public private(set) var lastProbeRoundTrip: Duration?
    /// Whether a session task exists (from `connect` until it reported its end).
    public private(set) var sessionActive = false

    private var generator: SeededGenerator
    private var sessionAttempt = 0
    private var readySince: Instant?
    private var recentLosses: [Instant] = []
    private var probeInFlight = false
    private var heartbeatNonce: UInt32 = 1
    /// When the probe in flight was written.
    private var probeSentAt: Instant?
    private var connectPending = false
    private var settled = true
    private var reconnectRequested = false
    private var timerIDs: [Timer.Kind: Int] = [:]
    private var nextTimerID = 0

    public init(timing: LinkTiming, seed: UInt64) {
        self.timing = timing
        self.generator = SeededGenerator(seed: seed)
    }

    /// Whether the driver may end: stopped, and the last session closed.
    public var isFinished: Bool { state == .stopped && !sessionActive }

    /// Everything that can happen to a slot's connection.
    public enum Event: Sendable {
        case start
        /// The session of `attempt` opened its transport.
        case transportOpened(attempt: Int)
        /// A frame arrived on the session of `attempt`.
        case received(InboundFrame, attempt: Int, now: Instant)
        /// The session of `attempt` ended (or never opened).
        case sessionEnded(SessionEnd, attempt: Int, now: Instant)
        case timerFired(Timer, now: Instant)
        /// The transport that ended a session with ``SessionEnd/awaitingPeer`` has a peer now.
        case peerAvailable
        /// The `reconnect` command.
        case reconnect
        /// The `disconnectForRestart` command.
        case disconnectForRestart(settle: Duration)
        /// Shutdown: close cleanly and stop for good; a ready link reports `reason` as lost
        /// (`shutdown`, or `reload` when the slot was removed from the configuration).
        case shutdown(reason: LossReason)
    }

    /// The transition function: applies `event` to the state and returns what the driver
    /// must do, in order.
    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .start: start()
        case .transportOpened(let attempt): transportOpened(attempt: attempt)
        case .received(let frame, let attempt, let now): received(frame, attempt: attempt, now: now)
        case .sessionEnded(let end, let attempt, let now): sessionEnded(end, attempt: attempt, now: now)
        case .timerFired(let timer, let now): timerFired(timer, now: now)
        case .peerAvailable: peerAvailable()
        case .reconnect: reconnect()
        case .disconnectForRestart(let settle): disconnectForRestart(settle: settle)
        case .shutdown(let reason): shutdown(reason: reason)
        }
    }

    // MARK: Events

    /// Opens from `idle`: at start, and when a peer arrives for a transport that waits for one.
    private mutating func start() -> [Action] {
        guard case .idle = state, !sessionActive else { return [] }
        return connect(attempt: sessionAttempt + 1)
    }

    /// A peer holds the radio now: open at once from the idle wait, or cut short the pause
    /// after a peer's loss (a browser that left and came back, or took over, waits for nothing).
    private mutating func peerAvailable() -> [Action] {
        switch state {
        case .idle:
            return start()
        case .cooldown(let attempt, _), .backoff(let attempt, _):
            return retryNow(after: attempt)
        default:
            return []
        }
    }

    /// Ends a cooldown or backoff early: the next attempt opens now, or once the last
    /// session has reported its end.
    private mutating func retryNow(after attempt: Int) -> [Action] {
        cancel(.retry)
        guard !sessionActive else {
            connectPending = true
            return []
        }
        return connect(attempt: attempt + 1)
    }

    /// The session of `attempt` opened its transport.
    private mutating func transportOpened(attempt: Int) -> [Action] {
        guard case .connecting(attempt) = state else { return [] }
        var nonce: UInt32
        repeat { nonce = UInt32.random(in: 1...UInt32.max, using: &generator) } while nonce == 69420 || nonce == 69421
        state = .configuring(attempt: attempt, nonce: nonce)
        return [.send(.wantConfig(nonce: nonce))]
    }

    /// A frame arrived on the session of `attempt`. Any frame proves the link alive.
    private mutating func received(_ frame: InboundFrame, attempt: Int, now: Instant) -> [Action] {
        guard attempt == state.attempt else { return [] }
        switch (state, frame) {
        case (.configuring(_, let nonce), .configComplete(let id)) where id == nonce:
            state = .ready(attempt: attempt)
            readySince = now
            lastProbeSuccess = now
            cancel(.initTimeout)
            return [.established(attempt: attempt), schedule(.probe, after: timing.healthCheckInterval), schedule(.heartbeat, after: timing.heartbeatInterval)]
        case (.configuring, .rebooted):
            return failedAttempt(closing: true)
        case (.ready, .rebooted), (.degraded, .rebooted):
            return lostReadyLink(.radioRebooted, now: now, closing: true)
        case (.ready, _), (.degraded, _):
            guard probeInFlight else { return [] }
            probeInFlight = false
            lastProbeSuccess = now
            cancel(.probeTimeout)
            state = .ready(attempt: attempt)
            var actions = [schedule(.probe, after: timing.healthCheckInterval)]
            if let sent = probeSentAt {
                let roundTrip = sent.duration(to: now)
                lastProbeRoundTrip = roundTrip
                actions.append(.probeAnswered(roundTrip: roundTrip))
            }
            probeSentAt = nil
            return actions
        default:
            return []
        }
    }

    /// The session of `attempt` ended (or never opened).
    private mutating func sessionEnded(_ end: SessionEnd, attempt: Int, now: Instant) -> [Action] {
        guard sessionActive, attempt == sessionAttempt else { return [] }
        let actions = endSession(end, attempt: attempt, now: now)
        // The peer itself went (or was replaced): its return is the moment to reopen.
        if case .lost(let reason) = end, [.browserClosed, .portLost, .takenOver].contains(reason), !actions.contains(.awaitPeer) {
            return actions + [.awaitPeer]
        }
        return actions
    }

    private mutating func endSession(_ end: SessionEnd, attempt: Int, now: Instant) -> [Action] {
        sessionActive = false
        switch (state, end) {
        case (.connecting, .deviceAbsent):
            cancel(.initTimeout)
            return retry(.backoff(attempt: attempt, retryIn: timing.disconnectedPollInterval), after: timing.disconnectedPollInterval)
        case (.connecting, .awaitingPeer):
            cancel(.initTimeout)
            state = .idle
            return [.awaitPeer]
        case (.connecting, _), (.configuring, _):
            return failedAttempt(closing: false)
        case (.ready, let end), (.degraded, let end):
            let reason: LossReason = if case .lost(let reason) = end { reason } else { .transportClosed }
            return lostReadyLink(reason, now: now, closing: false)
        case (.cooldown, _), (.backoff, _):
            guard connectPending else { return [] }
            return connect(attempt: attempt + 1)
        case (.disconnectedForRestart(let attempt), _):
            guard reconnectRequested, settled else { return [] }
            return connect(attempt: attempt + 1)
        case (.stopped, _), (.idle, _):
            return []
        }
    }

    private mutating func timerFired(_ timer: Timer, now: Instant) -> [Action] {
        guard timerIDs[timer.kind] == timer.id else { return [] }
        timerIDs[timer.kind] = nil
        switch (timer.kind, state) {
        case (.initTimeout, .connecting), (.initTimeout, .configuring):
            return failedAttempt(closing: true)
        case (.probe, .ready):
            probeInFlight = true
            probeSentAt = now
            return [.send(.probe(.heartbeat(nonce: nextHeartbeatNonce()))), schedule(.probeTimeout, after: timing.probeTimeout)]
        case (.probeTimeout, .ready(let attempt)), (.probeTimeout, .degraded(let attempt, _)):
            let strikes = state.strikes + 1
            guard strikes < timing.maxStrikes else { return lostReadyLink(.probeStrikes, now: now, closing: true) }
            state = .degraded(attempt: attempt, strikes: strikes)
            probeSentAt = now
            let packetID = UInt32.random(in: 1...UInt32.max, using: &generator)
            return [.send(.probe(.deviceMetadata(packetID: packetID))), schedule(.probeTimeout, after: timing.probeTimeout)]
        case (.heartbeat, .ready), (.heartbeat, .degraded):
            return [.send(.heartbeat(nonce: nextHeartbeatNonce())), schedule(.heartbeat, after: timing.heartbeatInterval)]
        case (.retry, .cooldown(let attempt, _)), (.retry, .backoff(let attempt, _)):
            guard !sessionActive else {
                connectPending = true
                return []
            }
            return connect(attempt: attempt + 1)
        case (.settle, .disconnectedForRestart(let attempt)):
            settled = true
            guard reconnectRequested, !sessionActive else { return [] }
            return connect(attempt: attempt + 1)
        default:
            return []
        }
    }

    /// The `reconnect` command: a ready or opening link is closed and reopened after the
    /// cooldown; a waiting one is opened now; a held one is opened once settled.
    private mutating func reconnect() -> [Action] {
        switch state {
        case .idle:
            return start()
        case .connecting(let attempt), .configuring(let attempt, _):
            failures = 0
            cancelSessionTimers()
            return [.closeSession(goodbye: true)] + retry(.cooldown(attempt: attempt, retryIn: timing.reconnectCooldown), after: timing.reconnectCooldown)
        case .ready(let attempt), .degraded(let attempt, _):
            failures = 0
            cancelSessionTimers()
            return [.lost(.manual), .closeSession(goodbye: true)]
                + retry(.cooldown(attempt: attempt, retryIn: timing.reconnectCooldown), after: timing.reconnectCooldown)
        case .cooldown(let attempt, _), .backoff(let attempt, _):
            return retryNow(after: attempt)
        case .disconnectedForRestart(let attempt):
            reconnectRequested = true
            guard settled, !sessionActive else { return [] }
            return connect(attempt: attempt + 1)
        case .stopped:
            return []
        }
    }

    /// The `disconnectForRestart` command: close cleanly, then hold closed until
    /// `reconnect`, which waits out `settle` first.
    private mutating func disconnectForRestart(settle: Duration) -> [Action] {
        guard state != .stopped else { return [] }
        var actions: [Action] = state.isUp ? [.lost(.manual)] : []
        if sessionActive { actions.append(.closeSession(goodbye: true)) }
        cancelAllTimers()
        state = .disconnectedForRestart(attempt: max(state.attempt, sessionAttempt))
        settled = false
        reconnectRequested = false
        connectPending = false
        failures = 0
        actions.append(schedule(.settle, after: settle))
        return actions
    }

    /// 2, 3, … wrapping back to 2: never 1, never the one before.
    private mutating func nextHeartbeatNonce() -> UInt32 {
        heartbeatNonce = heartbeatNonce == UInt32.max ? 2 : heartbeatNonce + 1
        return heartbeatNonce
    }

    /// Shutdown: close cleanly and stop for good.
    private mutating func shutdown(reason: LossReason) -> [Action] {
        guard state != .stopped else { return [] }
        var actions: [Action] = state.isUp ? [.lost(reason)] : []
        if sessionActive { actions.append(.closeSession(goodbye: true)) }
        cancelAllTimers()
        state = .stopped
        return actions
    }

    // MARK: Transitions

    private mutating func connect(attempt: Int) -> [Action] {
        state = .connecting(attempt: attempt)
        sessionActive = true
        sessionAttempt = attempt
        connectPending = false
        reconnectRequested = false
        probeInFlight = false
        return [.connect(attempt: attempt), schedule(.initTimeout, after: timing.interfaceInitTimeout)]
    }

    /// An attempt failed before the link was ready: back off exponentially.
    private mutating func failedAttempt(closing: Bool) -> [Action] {
        let opened = if case .configuring = state { true } else { false }
        let attempt = state.attempt
        failures += 1
        cancelSessionTimers()
        var delay = timing.backoff(failures: failures, using: &generator)
        // A transport that was open is given the cooldown before it is reopened.
        if opened { delay = max(delay, timing.reconnectCooldown) }
        let close: [Action] = closing && sessionActive ? [.closeSession(goodbye: false)] : []
        return close + retry(.backoff(attempt: attempt, retryIn: delay), after: delay)
    }

    /// A ready (or degraded) link is gone. Cooldown if it had stayed up; backoff if it died
    /// young (a flap); the storm guard holds retries at the maximum after too many losses.
    private mutating func lostReadyLink(_ reason: LossReason, now: Instant, closing: Bool) -> [Action] {
        let attempt = state.attempt
        cancelSessionTimers()
        recentLosses = recentLosses.filter { $0.duration(to: now) < timing.stormWindow } + [now]
        let stayedUp = readySince.map { $0.duration(to: now) >= timing.stableAfter } ?? false
        let close: [Action] = closing && sessionActive ? [.closeSession(goodbye: false)] : []
        let next: [Action]
        if recentLosses.count > timing.stormLimit {
            failures += 1
            let delay = timing.stormDelay(using: &generator)
            next = retry(.backoff(attempt: attempt, retryIn: delay), after: delay)
        } else if stayedUp {
            failures = 0
            next = retry(.cooldown(attempt: attempt, retryIn: timing.reconnectCooldown), after: timing.reconnectCooldown)
        } else {
            failures += 1
            let delay = max(timing.backoff(failures: failures, using: &generator), timing.reconnectCooldown)
            next = retry(.backoff(attempt: attempt, retryIn: delay), after: delay)
        }
        return [.lost(reason)] + close + next
    }

    private mutating func retry(_ waiting: State, after delay: Duration) -> [Action] {
        state = waiting
        readySince = nil
        probeInFlight = false
        return [schedule(.retry, after: delay)]
    }

    private mutating func schedule(_ kind: Timer.Kind, after delay: Duration) -> Action {
        nextTimerID += 1
        timerIDs[kind] = nextTimerID
        return .schedule(Timer(kind: kind, id: nextTimerID, delay: delay))
    }

    private mutating func cancel(_ kind: Timer.Kind) {
        timerIDs[kind] = nil
    }

    private mutating func cancelSessionTimers() {
        for kind in timerIDs.keys where kind.isSessionScoped { timerIDs[kind] = nil }
    }

    private mutating func cancelAllTimers() {
        timerIDs.removeAll()
    }
}
