import NIOCore
import RadioLink
import Testing

@testable import WebSerial

/// The port's rules for browsers (design.md §9): one holds the radio, a second takes over, a
/// restart hold refuses them until `reconnect`, and the link opens only through a holder.
@Suite struct WebSerialPortTests {
    @Test func withoutABrowserTheLinkIsToldToAwaitAPeer() async throws {
        let transport = WebSerialTransport(port: WebSerialPort(slot: "laptop"))
        await #expect(throws: RadioTransportError.awaitingPeer("no browser holds the radio")) { try await transport.open() }
    }

    @Test func aSecondBrowserTakesOverAndTheFirstLearnsWhy() {
        let port = WebSerialPort(slot: "laptop")
        let first = try! #require(port.attach())
        let second = try! #require(port.attach())
        #expect(first.endReason == .takenOver)
        #expect(second.endReason == nil && port.isAttached)
        #expect(WebSerialTransport(port: port).takeCloseReason() == .takenOver, "the link's loss names the takeover")
    }

    @Test func aRestartHoldEndsAnIdleRelayAtOnceAndRefusesBrowsersUntilReleased() {
        let port = WebSerialPort(slot: "laptop")
        let relay = try! #require(port.attach())
        port.holdForRestart()
        #expect(relay.endReason == .manual && !port.isAttached)
        #expect(port.attach() == nil, "no browser attaches while held")
        port.release()
        #expect(port.attach() != nil)
    }

    @Test(.timeLimit(.minutes(1))) func aRestartHoldWaitsForTheOpenSessionToCloseFirst() async throws {
        let port = WebSerialPort(slot: "laptop")
        let relay = try #require(port.attach())
        let link = try await WebSerialTransport(port: port).open()
        var sessions = relay.links.makeAsyncIterator()
        let relayEnd = try #require(await sessions.next())
        port.holdForRestart()
        #expect(relay.endReason == nil, "the link's goodbye still has a way to the radio")
        try await link.channel.close()
        try await relayEnd.channel.closeFuture.get()
        port.sessionEnded(relay)
        #expect(relay.endReason == .manual)
        #expect(await sessions.next() == nil, "no further session through an ended relay")
    }

    @Test(.timeLimit(.minutes(1))) func aBrowserArrivingEndsTheLinksWaitForAPeer() async {
        let port = WebSerialPort(slot: "laptop")
        let transport = WebSerialTransport(port: port)
        async let waited: Void = transport.waitForPeer()
        try? await Task.sleep(for: .milliseconds(20))
        _ = port.attach()
        await waited
        #expect(port.isAttached)
    }
}
