import Foundation
import Testing
import ZeroMQ

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
}
