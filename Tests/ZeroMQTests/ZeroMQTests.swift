import Foundation
import Testing

@testable import ZeroMQ

@Suite struct ZeroMQTests {
    @Test func routerAnswersReqThroughTheEnvelope() throws {
        let context = try ZMQContext()
        defer { context.terminate() }
        let router = try ZMQSocket(context: context, type: .router)
        try router.setLinger(milliseconds: 0)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let request = try ZMQSocket(context: context, type: .req)
        try request.setLinger(milliseconds: 0)
        try request.setReceiveTimeout(milliseconds: 5000)
        try request.connect(endpoint)
        try request.send(Array("ping".utf8))
        try router.setReceiveTimeout(milliseconds: 5000)
        let frames = try #require(try router.receiveMultipart())
        #expect(frames.count == 3, "identity, empty delimiter, body")
        #expect(frames[1].isEmpty)
        try router.send(multipart: Array(frames.dropLast()) + [Array("pong".utf8)])
        #expect(try request.receiveMultipart() == [Array("pong".utf8)])
        request.close()
        router.close()
    }

    @Test func subscriberGetsOnlyItsPrefixOverIPC() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zmq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let endpoint = "ipc://\(directory.path)/events"
        let context = try ZMQContext()
        defer { context.terminate() }
        let publisher = try ZMQSocket(context: context, type: .pub)
        try publisher.setLinger(milliseconds: 0)
        try publisher.bind(endpoint)
        let subscriber = try ZMQSocket(context: context, type: .sub)
        try subscriber.setLinger(milliseconds: 0)
        try subscriber.setReceiveTimeout(milliseconds: 100)
        try subscriber.connect(endpoint)
        try subscriber.subscribe("a/roof")
        // A subscription reaches the publisher asynchronously: publish until one arrives.
        var received: [[UInt8]]?
        for _ in 0..<100 where received == nil {
            try publisher.send(multipart: [Array("a/desk".utf8), [1]])
            try publisher.send(multipart: [Array("a/roof/X".utf8), [2], [3]])
            received = try subscriber.receiveMultipart()
        }
        #expect(received == [Array("a/roof/X".utf8), [2], [3]])
        publisher.close()
        subscriber.close()
    }

    @Test func errorsCarryZMQText() throws {
        let context = try ZMQContext()
        defer { context.terminate() }
        let socket = try ZMQSocket(context: context, type: .pub)
        defer { socket.close() }
        let error = #expect(throws: ZMQError.self) { try socket.bind("nonsense://x") }
        #expect(error?.description.contains("bind(nonsense://x)") == true)
        #expect(error?.message.isEmpty == false)
    }

    @Test func curveKeyPairsAreZ85AndConsistent() throws {
        try #require(ZMQContext.hasCurve)
        let pair = try ZMQCurveKeyPair.generate()
        #expect(pair.publicKey.count == 40)
        #expect(try ZMQCurveKeyPair.publicKey(forSecret: pair.secretKey) == pair.publicKey)
    }

    @Test func z85RoundTripsAndRejectsNonKeys() throws {
        let bytes = (0..<32).map { UInt8($0 * 7 & 0xFF) }
        let text = try #require(Z85.encode(bytes))
        #expect(text.count == 40 && Z85.isCurveKey(text))
        #expect(Z85.decode(text) == bytes)
        #expect(!Z85.isCurveKey("too short"))
        #expect(Z85.encode([1, 2, 3]) == nil, "Z85 takes whole 4-byte groups")
    }

    /// A real CURVE REQ/ROUTER pair in one context: the ZAP handler admits the listed client
    /// key, the ROUTER sees its user id on the message, and an unlisted key gets nothing.
    @Test func zapHandlerAdmitsListedKeysAndTagsTheirMessages() async throws {
        try #require(ZMQContext.hasCurve)
        let context = try ZMQContext()
        defer { context.terminate() }
        let server = try ZMQCurveKeyPair.generate()
        let admitted = try ZMQCurveKeyPair.generate()
        let stranger = try ZMQCurveKeyPair.generate()
        let authenticator = try ZMQAuthenticator(context: context) { request in
            request.domain == "test" && request.publicKey == admitted.publicKey ? .admit(userID: "bot") : .refuse("not listed")
        }
        let router = try ZMQSocket(context: context, type: .router)
        defer { router.close() }
        try router.setZAPDomain("test")
        try router.setCurveServer(secretKey: Array(server.secretKey.utf8))
        try router.setReceiveTimeout(milliseconds: 5000)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint

        func client(_ pair: ZMQCurveKeyPair) throws -> ZMQSocket {
            let socket = try ZMQSocket(context: context, type: .dealer)
            try socket.setLinger(milliseconds: 0)
            try socket.setCurveClient(serverKey: Array(server.publicKey.utf8), publicKey: Array(pair.publicKey.utf8), secretKey: Array(pair.secretKey.utf8))
            try socket.connect(endpoint)
            return socket
        }
        let outsider = try client(stranger)
        defer { outsider.close() }
        _ = try outsider.send(Array("from stranger".utf8), dontWait: true)
        let insider = try client(admitted)
        defer { insider.close() }
        _ = try insider.send(Array("from bot".utf8))
        let received = try #require(try router.receiveMultipart(property: "User-Id"))
        #expect(received.frames.last == Array("from bot".utf8), "the stranger's message never arrives")
        #expect(received.property == "bot")
        try router.setReceiveTimeout(milliseconds: 300)
        #expect(try router.receiveMultipart() == nil)
        await authenticator.stop()
    }

    @Test func zapAnswerFollowsRFC27() {
        let request: [[UInt8]] = [Array("1.0".utf8), [9], Array("d".utf8), Array("127.0.0.1".utf8), [], Array("CURVE".utf8), [UInt8](repeating: 1, count: 32)]
        let key = Z85.encode([UInt8](repeating: 1, count: 32))!
        var asked: ZMQAuthenticator.Request?
        let yes = ZMQAuthenticator.answer(request) { request in
            asked = request
            return .admit(userID: "u")
        }
        #expect(asked == .init(domain: "d", address: "127.0.0.1", mechanism: "CURVE", publicKey: key))
        #expect(yes == [Array("1.0".utf8), [9], Array("200".utf8), Array("OK".utf8), Array("u".utf8), []])
        let no = ZMQAuthenticator.answer(request) { _ in .refuse("no") }
        #expect(no[2] == Array("400".utf8) && no[3] == Array("no".utf8))
        #expect(ZMQAuthenticator.answer([Array("2.0".utf8), [9]]) { _ in .admit(userID: "u") }[2] == Array("500".utf8))
        let null: [[UInt8]] = [Array("1.0".utf8), [9], Array("d".utf8), Array("127.0.0.1".utf8), [], Array("NULL".utf8)]
        #expect(ZMQAuthenticator.answer(null) { $0.publicKey == nil ? .admit(userID: "") : .refuse("key") }[2] == Array("200".utf8))
    }
}
