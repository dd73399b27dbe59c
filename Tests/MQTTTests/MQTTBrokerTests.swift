import MQTT
import MQTTWire
import Testing

/// The client against a real mosquitto (Debian's `mosquitto` package), one broker per test.
/// A client that should see a message subscribes and first receives a marker it published
/// itself: SUBSCRIBE precedes its PUBLISH, so once the marker arrives the subscription is live.
@Suite(.enabled(if: Mosquitto.executable != nil, "mosquitto not installed"), .timeLimit(.minutes(1)))
struct MQTTBrokerTests {
    func subscribeAndWait(_ running: RunningClient, _ filter: String, marker: String) async throws {
        running.client.subscribe(filter, qos: .atLeastOnce)
        running.client.publish(MQTTMessage(topic: marker, payload: []))
        try await running.waitForMessages(on: marker)
    }

    @Test func qos1MessageFromOneClientReachesAnotherThatSubscribed() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        try await withClient(testConfiguration(broker, clientID: "subscriber")) { subscriber in
            try await subscribeAndWait(subscriber, "rt/#", marker: "rt/ready")
            try await withClient(testConfiguration(broker, clientID: "publisher")) { publisher in
                publisher.client.publish(MQTTMessage(topic: "rt/data", payload: Array("hello".utf8), qos: .atLeastOnce))
                let received = try await subscriber.waitForMessages(on: "rt/data")
                #expect(received == [MQTTMessage(topic: "rt/data", payload: Array("hello".utf8), qos: .atLeastOnce)])
                #expect(publisher.client.statistics.messagesSent == 1)
            }
            #expect(subscriber.client.statistics.messagesReceived == 2)
            #expect(subscriber.client.statistics.connects == 1)
        }
    }

    @Test func retainedStateIsRestoredAfterABrokerRestartWithoutPersistence() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        let online = Array("online".utf8)
        try await withClient(testConfiguration(broker, clientID: "a")) { a in
            a.client.subscribe("state/#", qos: .atLeastOnce)
            a.client.retain(topic: "state/a", payload: online)
            try await a.waitForMessages(on: "state/a")
            broker.stop()
            try await a.waitUntilConnectionLost()
            try await broker.start()
            try await a.waitUntilConnected(times: 2)
            // A hears its own retained value again once the new broker holds it.
            try await a.waitForMessages(on: "state/a", count: 2)
            try await withClient(testConfiguration(broker, clientID: "b")) { b in
                b.client.subscribe("state/a", qos: .atLeastOnce)
                let received = try await b.waitForMessages(on: "state/a")
                #expect(received == [MQTTMessage(topic: "state/a", payload: online, qos: .atLeastOnce, retain: true)])
            }
        }
    }

    @Test func clearingRetainedStateRemovesItFromTheBroker() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        try await withClient(testConfiguration(broker, clientID: "a")) { a in
            a.client.subscribe("state/#", qos: .atLeastOnce)
            a.client.retain(topic: "state/a", payload: [1])
            try await a.waitForMessages(on: "state/a")
            a.client.retain(topic: "state/a", payload: [])
            let received = try await a.waitForMessages(on: "state/a", count: 2)
            #expect(received.map(\.payload) == [[1], []])
        }
        try await withClient(testConfiguration(broker, clientID: "b")) { b in
            try await subscribeAndWait(b, "state/#", marker: "state/marker")
            #expect(b.messages.elements.allSatisfy { $0.topic == "state/marker" }, "no retained value left")
        }
    }

    @Test func messagesPublishedWhileTheBrokerIsDownArriveInOrderAfterItReturns() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        try await withClient(testConfiguration(broker, clientID: "a")) { a in
            try await subscribeAndWait(a, "queue/#", marker: "queue/ready")
            broker.stop()
            try await a.waitUntilConnectionLost()
            let sent = (0..<10).map { MQTTMessage(topic: "queue/n", payload: [UInt8($0)], qos: $0.isMultiple(of: 2) ? .atLeastOnce : .atMostOnce) }
            for message in sent { a.client.publish(message) }
            try await broker.start()
            let received = try await a.waitForMessages(on: "queue/n", count: sent.count)
            #expect(received.map(\.payload) == sent.map(\.payload))
            #expect(a.client.statistics.dropped == 0)
        }
    }

    @Test func silentBrokerIsDeclaredDeadAndTheWillIsPublishedForTheUncleanDrop() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        var observerConfiguration = testConfiguration(broker, clientID: "observer")
        observerConfiguration.keepAlive = .seconds(60)
        var willConfiguration = testConfiguration(broker, clientID: "mortal")
        willConfiguration.will = MQTTMessage(topic: "will/mortal", payload: Array("gone".utf8), qos: .atLeastOnce)
        willConfiguration.initialReconnectDelay = .seconds(5)
        try await withClient(observerConfiguration) { observer in
            try await subscribeAndWait(observer, "will/#", marker: "will/ready")
            try await withClient(willConfiguration) { mortal in
                try await mortal.waitUntilConnected()
                broker.pause()
                try await mortal.waitUntilConnectionLost()
                broker.resume()
                #expect(mortal.events.elements.losses.first?.hasPrefix("keep alive timeout") == true)
                let will = try await observer.waitForMessages(on: "will/mortal")
                #expect(will == [MQTTMessage(topic: "will/mortal", payload: Array("gone".utf8), qos: .atLeastOnce)])
            }
        }
    }

    @Test func cleanStopSendsDisconnectSoTheWillIsNotPublished() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        var willConfiguration = testConfiguration(broker, clientID: "polite")
        willConfiguration.will = MQTTMessage(topic: "will/polite", payload: Array("gone".utf8))
        try await withClient(testConfiguration(broker, clientID: "observer")) { observer in
            try await subscribeAndWait(observer, "will/#", marker: "will/ready")
            try await withClient(willConfiguration) { polite in
                try await polite.waitUntilConnected()
            }
            observer.client.publish(MQTTMessage(topic: "will/after", payload: []))
            try await observer.waitForMessages(on: "will/after")
            #expect(!observer.messages.elements.contains { $0.topic == "will/polite" })
        }
    }

    @Test func flushWaitsForTheBrokersAcknowledgementsAndGivesUpAfterItsTimeout() async throws {
        let broker = try await Mosquitto.start()
        defer { broker.stop() }
        try await withClient(testConfiguration(broker, clientID: "a")) { a in
            a.client.retain(topic: "state/a", payload: [1])
            a.client.publish(MQTTMessage(topic: "data/a", payload: [2], qos: .atLeastOnce))
            #expect(await a.client.flush(within: .seconds(10)))
            broker.stop()
            try await a.waitUntilConnectionLost()
            a.client.publish(MQTTMessage(topic: "data/a", payload: [3], qos: .atLeastOnce))
            #expect(await !a.client.flush(within: .milliseconds(200)))
        }
    }

    @Test func refusedConnectionReportsTheReasonAndKeepsRetrying() async throws {
        let broker = try await Mosquitto.start(allowAnonymous: false)
        defer { broker.stop() }
        try await withClient(testConfiguration(broker, clientID: "stranger")) { stranger in
            let events = try await stranger.events.wait("two refusals") { $0.count >= 2 }
            #expect(events.prefix(2).allSatisfy { $0 == .disconnected(reason: "connection refused: not authorized") })
            #expect(stranger.client.statistics.connects == 0)
        }
    }
}
