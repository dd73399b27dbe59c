/// When an MQTT client connects again after a connection ends: a pure state machine with the
/// shape of the radio link's (events in, actions as values, generic over the instant, its
/// jitter from the generator it is given), so with a seeded generator every delay is a
/// plain, exact unit test.
///
/// The first failure waits ``MQTTConfiguration/initialReconnectDelay``; each further one
/// doubles it up to ``MQTTConfiguration/maximumReconnectDelay``; every wait gets ±20 %
/// jitter. A connection that was live (CONNACK) starts the count afresh. It never gives up.
struct MQTTReconnectMachine<Instant: InstantProtocol, Generator: RandomNumberGenerator & Sendable>: Sendable
where Instant.Duration == Duration {
    enum State: Equatable, Sendable {
        case idle
        /// A connection for `attempt` runs.
        case connecting(attempt: Int)
        /// Waiting until `retryAt` before the next attempt.
        case waiting(attempt: Int, retryAt: Instant)
        case stopped
    }

    enum Event: Sendable {
        case start
        /// The connection of `attempt` ended; `wasLive` if the broker had accepted it.
        case connectionEnded(attempt: Int, reason: String, wasLive: Bool, now: Instant)
        /// The wait for the next attempt is over.
        case retryDue(now: Instant)
        case stop
    }

    enum Action: Equatable, Sendable {
        /// Run one connection for `attempt` and report its end.
        case connect(attempt: Int)
        /// Say why the connection ended, wait until `retryAt`, then send ``Event/retryDue(now:)``.
        case retry(reason: String, wasLive: Bool, delay: Duration, retryAt: Instant)
        /// Woken before the retry time: wait out the rest, then send ``Event/retryDue(now:)`` again.
        case wait(until: Instant)
    }

    private(set) var state: State = .idle
    /// Consecutive connections that failed before the broker accepted them (1 after a live one ended).
    private(set) var failures = 0
    let initialDelay: Duration
    let maximumDelay: Duration
    private var generator: Generator

    init(initialDelay: Duration, maximumDelay: Duration, generator: Generator) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.generator = generator
    }

    mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.idle, .start):
            state = .connecting(attempt: 1)
            return [.connect(attempt: 1)]
        case (.connecting(let current), .connectionEnded(let attempt, let reason, let wasLive, let now)) where attempt == current:
            failures = wasLive ? 1 : failures + 1
            let delay = Self.delay(afterFailures: failures, initial: initialDelay, maximum: maximumDelay, jitter: .random(in: 0.8...1.2, using: &generator))
            let retryAt = now.advanced(by: delay)
            state = .waiting(attempt: attempt, retryAt: retryAt)
            return [.retry(reason: reason, wasLive: wasLive, delay: delay, retryAt: retryAt)]
        case (.waiting(let attempt, let retryAt), .retryDue(let now)):
            guard now >= retryAt else {
                // Woken early: wait out the rest.
                return [.wait(until: retryAt)]
            }
            state = .connecting(attempt: attempt + 1)
            return [.connect(attempt: attempt + 1)]
        case (_, .stop):
            state = .stopped
            return []
        default:
            return []
        }
    }

    /// The wait before the next attempt after `failures` failures, before jitter doubled from
    /// `initial` per further failure and capped at `maximum`.
    static func delay(afterFailures failures: Int, initial: Duration, maximum: Duration, jitter: Double) -> Duration {
        var delay = initial
        for _ in 1..<max(1, failures) where delay < maximum { delay *= 2 }
        return min(delay, maximum) * jitter
    }
}
