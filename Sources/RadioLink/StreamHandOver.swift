import MeshtasticProtocol
import Synchronization

/// Keeps a session's reads in order across the moment its channel starts handing them to
/// the event loop (`divertInbound(to:)`). Items the channel passed to its stream before
/// that are taken by the session's reader; what the loop hands over while some of those
/// are still to be taken waits here, and is released behind them.
final class StreamHandOver: Sendable {
    private struct State {
        /// Items still in the stream from before the hand-over; nil until known.
        var streamItemsLeft: Int?
        /// Everything earlier is in: the loop's items go straight on.
        var open = false
        var waiting: [StreamItem] = []
    }

    private let state = Mutex(State())

    init() {}

    /// For the loop: true if `item` may go on now; false if it waits here instead.
    func admit(_ item: StreamItem) -> Bool {
        state.withLock { state in
            if state.open { return true }
            state.waiting.append(item)
            return false
        }
    }

    /// The stream holds `count` items from before the hand-over; with none, what waits is
    /// released now.
    func expect(streamItems count: Int, release: (StreamItem) -> Void) {
        state.withLock { $0.streamItemsLeft = count }
        if count == 0 { open(release: release) }
    }

    /// The reader has put one more stream item in; after the last earlier one, what waits
    /// is released.
    func takenFromStream(release: (StreamItem) -> Void) {
        let caughtUp = state.withLock { state -> Bool in
            guard let left = state.streamItemsLeft, left > 0 else { return false }
            state.streamItemsLeft = left - 1
            return left == 1
        }
        if caughtUp { open(release: release) }
    }

    /// The stream ended: nothing earlier is left to wait for.
    func streamEnded(release: (StreamItem) -> Void) {
        let alreadyOpen = state.withLock { state -> Bool in
            state.streamItemsLeft = 0
            return state.open
        }
        if !alreadyOpen { open(release: release) }
    }

    /// Releases what waits, in order, until nothing does; only then lets the loop's items
    /// go on, so none can overtake one released here.
    private func open(release: (StreamItem) -> Void) {
        while true {
            let batch = state.withLock { state -> [StreamItem] in
                if state.waiting.isEmpty {
                    state.open = true
                    return []
                }
                defer { state.waiting = [] }
                return state.waiting
            }
            if batch.isEmpty { return }
            batch.forEach(release)
        }
    }
}
