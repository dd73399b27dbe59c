@testable import MQTT
import MQTTWire
import Testing

/// The client's bookkeeping without a network: queueing, packet identifiers and the order of
/// what follows a CONNACK.
@Suite struct MQTTClientStateTests {
    static let connect = MQTTPacket.connect(MQTTConnect(clientID: "c", cleanSession: true, keepAliveSeconds: 30, username: nil, password: nil, will: nil))

    func message(_ name: String, _ qos: MQTTQoS = .atMostOnce) -> MQTTMessage {
        MQTTMessage(topic: "t/\(name)", payload: Array(name.utf8), qos: qos)
    }

    /// Starts connection `id` and has the broker accept it; returns what the writer sends first.
    @discardableResult
    func connect(_ state: inout MQTTClientState, id: Int) -> [MQTTPacket] {
        state.connectionStarted(id: id, connect: Self.connect, wake: AsyncStream<Void>.makeStream().continuation, now: .now)
        #expect(state.takeOutbound(connection: id) == [Self.connect])
        #expect(state.receive(.connack(sessionPresent: false, returnCode: 0), connection: id, now: .now) == .connected(sessionPresent: false))
        return state.takeOutbound(connection: id)
    }

    @Test func queueOverflowDropsTheOldestQoS0MessageFirstThenTheOldest() {
        var state = MQTTClientState(queueLimit: 3)
        for (name, qos) in [("a", MQTTQoS.atLeastOnce), ("b", .atMostOnce), ("c", .atMostOnce), ("d", .atLeastOnce)] {
            _ = state.enqueue(message(name, qos))
        }
        #expect(state.queue.map(\.message.topic) == ["t/a", "t/c", "t/d"])
        _ = state.enqueue(message("e", .atLeastOnce))
        #expect(state.queue.map(\.message.topic) == ["t/a", "t/d", "t/e"])
        #expect(state.enqueue(message("f", .atLeastOnce)) == 1)
        #expect(state.queue.map(\.message.topic) == ["t/d", "t/e", "t/f"])
        #expect(state.statistics.dropped == 3)
    }

    @Test func afterConnackSubscriptionsThenRetainedStateThenResendsThenTheQueue() {
        var state = MQTTClientState(queueLimit: 100)
        connect(&state, id: 1)
        _ = state.enqueue(message("unacked", .atLeastOnce))
        #expect(state.takeOutbound(connection: 1) == [.publish(message("unacked", .atLeastOnce), packetID: 1, dup: false)])
        let wasLive = state.connectionEnded(id: 1)
        #expect(wasLive)

        _ = state.enqueue(message("queued"))
        state.subscribe("s/#", qos: .atLeastOnce)
        state.retain(topic: "r", payload: [1])
        let retained = MQTTMessage(topic: "r", payload: [1], qos: .atLeastOnce, retain: true)
        #expect(connect(&state, id: 2) == [
            .subscribe(packetID: 2, subscriptions: [MQTTSubscription(filter: "s/#", qos: .atLeastOnce)]),
            .publish(retained, packetID: 3, dup: false),
            .publish(message("unacked", .atLeastOnce), packetID: 1, dup: true),
            .publish(message("queued"), packetID: nil, dup: false),
        ])
        #expect(state.statistics.connects == 2)
        #expect(state.statistics.messagesSent == 4)
    }

    @Test func packetIDsWrapAfter65535AndSkipIdentifiersStillInFlight() {
        var state = MQTTClientState(queueLimit: 10)
        connect(&state, id: 1)
        var sent: [UInt16] = []
        for index in 0..<65_536 {
            _ = state.enqueue(message("m", .atLeastOnce))
            guard case .publish(_, let packetID?, _) = state.takeOutbound(connection: 1).first else {
                Issue.record("no PUBLISH")
                return
            }
            sent.append(packetID)
            // Identifier 1 stays unacknowledged; all others are acknowledged at once.
            if index > 0 { _ = state.receive(.puback(packetID: packetID), connection: 1, now: .now) }
        }
        #expect(sent[0] == 1)
        #expect(sent[65_533] == 65_534)
        #expect(sent[65_534] == 65_535)
        #expect(sent[65_535] == 2, "wrapped, skipping 1")
        #expect(state.inFlight.keys.sorted() == [1], "only the unacknowledged identifier 1 is left")
    }

    @Test func pubackReleasesTheMessageAndUnknownIdentifiersAreIgnored() {
        var state = MQTTClientState(queueLimit: 10)
        connect(&state, id: 1)
        _ = state.enqueue(message("m", .atLeastOnce))
        _ = state.takeOutbound(connection: 1)
        #expect(state.receive(.puback(packetID: 999), connection: 1, now: .now) == MQTTClientState.Reaction.none)
        #expect(state.inFlight.count == 1)
        #expect(state.receive(.puback(packetID: 1), connection: 1, now: .now) == MQTTClientState.Reaction.none)
        #expect(state.inFlight.isEmpty)
    }

    @Test func inboundQoS1PublishIsDeliveredAndAcknowledged() {
        var state = MQTTClientState(queueLimit: 10)
        connect(&state, id: 1)
        let inbound = MQTTMessage(topic: "in", payload: [7], qos: .atLeastOnce)
        #expect(state.receive(.publish(inbound, packetID: 42, dup: false), connection: 1, now: .now) == .deliver(inbound))
        #expect(state.takeOutbound(connection: 1) == [.puback(packetID: 42)])
        #expect(state.statistics.messagesReceived == 1)
    }

    @Test func clearedRetainedTopicIsPublishedOnceThenForgottenOnItsPuback() {
        var state = MQTTClientState(queueLimit: 10)
        state.retain(topic: "r", payload: [1])
        connect(&state, id: 1)
        state.retain(topic: "r", payload: [])
        #expect(state.takeOutbound(connection: 1) == [.publish(MQTTMessage(topic: "r", payload: [], qos: .atLeastOnce, retain: true), packetID: 2, dup: false)])
        _ = state.receive(.puback(packetID: 2), connection: 1, now: .now)
        #expect(state.retained.isEmpty)
        _ = state.connectionEnded(id: 1)
        #expect(connect(&state, id: 2) == [])
    }

    @Test func unacknowledgedClearIsRepeatedAfterAReconnect() {
        var state = MQTTClientState(queueLimit: 10)
        connect(&state, id: 1)
        state.retain(topic: "r", payload: [])
        _ = state.takeOutbound(connection: 1)
        _ = state.connectionEnded(id: 1)
        #expect(connect(&state, id: 2) == [.publish(MQTTMessage(topic: "r", payload: [], qos: .atLeastOnce, retain: true), packetID: 2, dup: false)])
    }

    @Test func flushedOnlyOnceQueueInFlightAndRetainedStateAreAcknowledged() {
        var state = MQTTClientState(queueLimit: 10)
        #expect(state.isFlushed)
        state.retain(topic: "r", payload: [1])
        _ = state.enqueue(message("m", .atLeastOnce))
        #expect(!state.isFlushed)
        let sent = connect(&state, id: 1)
        #expect(sent.count == 2)
        _ = state.receive(.puback(packetID: 2), connection: 1, now: .now)
        #expect(!state.isFlushed, "the retained value is not acknowledged yet")
        _ = state.receive(.puback(packetID: 1), connection: 1, now: .now)
        #expect(state.isFlushed)
        _ = state.connectionEnded(id: 1)
        connect(&state, id: 2)
        #expect(!state.isFlushed, "republished after the reconnect, awaiting its PUBACK again")
    }

    @Test func refusedConnackClosesWithAReadableReason() {
        var state = MQTTClientState(queueLimit: 10)
        state.connectionStarted(id: 1, connect: Self.connect, wake: AsyncStream<Void>.makeStream().continuation, now: .now)
        #expect(state.receive(.connack(sessionPresent: false, returnCode: 5), connection: 1, now: .now) == .close(reason: "connection refused: not authorized"))
        let wasLive = state.connectionEnded(id: 1)
        #expect(!wasLive)
    }

    @Test func anythingButConnackBeforeItClosesTheConnection() {
        var state = MQTTClientState(queueLimit: 10)
        state.connectionStarted(id: 1, connect: Self.connect, wake: AsyncStream<Void>.makeStream().continuation, now: .now)
        #expect(state.receive(.pingresp, connection: 1, now: .now) == .close(reason: "expected CONNACK, received pingresp"))
    }

    @Test func queuedMessagesWaitForConnack() {
        var state = MQTTClientState(queueLimit: 10)
        _ = state.enqueue(message("early"))
        state.connectionStarted(id: 1, connect: Self.connect, wake: AsyncStream<Void>.makeStream().continuation, now: .now)
        #expect(state.takeOutbound(connection: 1) == [Self.connect])
        _ = state.receive(.connack(sessionPresent: false, returnCode: 0), connection: 1, now: .now)
        #expect(state.takeOutbound(connection: 1) == [.publish(message("early"), packetID: nil, dup: false)])
    }

    @Test func topicNamesAndFiltersAreCheckedUpFront() {
        #expect(MQTTTopic.isValidName("a/b"))
        #expect(!MQTTTopic.isValidName(""))
        #expect(!MQTTTopic.isValidName("a/+"))
        #expect(!MQTTTopic.isValidName("a/#"))
        #expect(MQTTTopic.isValidFilter("a/+/c/#"))
        #expect(MQTTTopic.isValidFilter("#"))
        #expect(!MQTTTopic.isValidFilter("a/#/c"))
        #expect(!MQTTTopic.isValidFilter("a/b+"))
        #expect(!MQTTTopic.isValidFilter("a#"))
    }
}
