@testable import MQTT
@testable import MQTTWire
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

/// The codec against bytes computed by hand from the MQTT 3.1.1 specification.
@Suite struct MQTTCodecTests {
    func encode(_ packet: MQTTPacket) throws -> [UInt8] {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(MQTTEncoder()))
        defer { _ = try? channel.finish() }
        try channel.writeOutbound(packet)
        var bytes: [UInt8] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readBytes(length: buffer.readableBytes)! }
        return bytes
    }

    /// Feeds `chunks` as separate reads and returns every packet decoded.
    func decode(_ chunks: [[UInt8]], maximumPacketSize: Int = MQTTDecoder.defaultMaximumPacketSize) throws -> [MQTTPacket] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MQTTDecoder(maximumPacketSize: maximumPacketSize)))
        defer { _ = try? channel.finish() }
        var packets: [MQTTPacket] = []
        for chunk in chunks {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            while let packet = try channel.readInbound(as: MQTTPacket.self) { packets.append(packet) }
        }
        return packets
    }

    static let connectWithEverything = MQTTPacket.connect(
        MQTTConnect(
            clientID: "c1", cleanSession: true, keepAliveSeconds: 30, username: "u", password: Array("p".utf8),
            will: MQTTMessage(topic: "w", payload: Array("bye".utf8), qos: .atLeastOnce, retain: true)
        )
    )

    static let everyKind: [MQTTPacket] = [
        connectWithEverything,
        .connect(MQTTConnect(clientID: "", cleanSession: false, keepAliveSeconds: 0, username: nil, password: nil, will: nil)),
        .connack(sessionPresent: true, returnCode: 0),
        .connack(sessionPresent: false, returnCode: 5),
        .publish(MQTTMessage(topic: "a/b", payload: [1, 2, 3]), packetID: nil, dup: false),
        .publish(MQTTMessage(topic: "a/b", payload: [], qos: .atLeastOnce, retain: true), packetID: 65535, dup: true),
        .puback(packetID: 7),
        .subscribe(packetID: 1, subscriptions: [MQTTSubscription(filter: "a/#", qos: .atLeastOnce), MQTTSubscription(filter: "+/b", qos: .atMostOnce)]),
        .suback(packetID: 1, returnCodes: [1, 0x80]),
        .unsubscribe(packetID: 2, filters: ["a/#", "x"]),
        .unsuback(packetID: 2),
        .pingreq,
        .pingresp,
        .disconnect,
    ]

    // MARK: Byte-exact encodings

    @Test func pingreqIsC000() throws {
        #expect(try encode(.pingreq) == [0xC0, 0x00])
        #expect(try encode(.pingresp) == [0xD0, 0x00])
        #expect(try encode(.disconnect) == [0xE0, 0x00])
    }

    @Test func connectWithWillUsernameAndPasswordMatchesTheSpecLayout() throws {
        let expected: [UInt8] = [
            0x10, 28,  // CONNECT, remaining length 10 + 18
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // "MQTT"
            0x04,  // level 4
            0xEE,  // user name, password, will retain, will QoS 1, will, clean session
            0x00, 0x1E,  // keep alive 30 s
            0x00, 0x02, 0x63, 0x31,  // client id "c1"
            0x00, 0x01, 0x77,  // will topic "w"
            0x00, 0x03, 0x62, 0x79, 0x65,  // will message "bye"
            0x00, 0x01, 0x75,  // user name "u"
            0x00, 0x01, 0x70,  // password "p"
        ]
        #expect(try encode(Self.connectWithEverything) == expected)
    }

    @Test func qos1PublishCarriesItsPacketIDAfterTheTopic() throws {
        let message = MQTTMessage(topic: "a/b", payload: [0x01, 0x02], qos: .atLeastOnce)
        #expect(try encode(.publish(message, packetID: 10, dup: false)) == [0x32, 0x09, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x0A, 0x01, 0x02])
        var retained = message
        retained.retain = true
        #expect(try encode(.publish(retained, packetID: 10, dup: true)).first == 0x3B, "DUP, QoS 1, RETAIN")
    }

    @Test func subscribeHasFixedHeaderFlags0010() throws {
        let packet = MQTTPacket.subscribe(
            packetID: 1, subscriptions: [MQTTSubscription(filter: "a/#", qos: .atLeastOnce), MQTTSubscription(filter: "b", qos: .atMostOnce)]
        )
        #expect(try encode(packet) == [0x82, 0x0C, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2F, 0x23, 0x01, 0x00, 0x01, 0x62, 0x00])
    }

    @Test(arguments: zip(
        [127, 128, 16_383, 16_384, 2_097_151, 2_097_152],
        [[0x7F], [0x80, 0x01], [0xFF, 0x7F], [0x80, 0x80, 0x01], [0xFF, 0xFF, 0x7F], [0x80, 0x80, 0x80, 0x01]] as [[UInt8]]
    ))
    func remainingLengthUsesTheFewestBytesAtEachBoundary(length: Int, expected: [UInt8]) throws {
        // A QoS 0 PUBLISH to "t": 3 bytes of topic, the rest payload.
        let packet = MQTTPacket.publish(MQTTMessage(topic: "t", payload: [UInt8](repeating: 0xA5, count: length - 3)), packetID: nil, dup: false)
        let bytes = try encode(packet)
        #expect(Array(bytes[1...expected.count]) == expected)
        #expect(bytes.count == 1 + expected.count + length)
        #expect(try decode([bytes], maximumPacketSize: bytes.count) == [packet])
    }

    @Test func encodingRefusesAPasswordWithoutAUserNameAndOverlongStrings() {
        let passwordOnly = MQTTPacket.connect(MQTTConnect(clientID: "c", cleanSession: true, keepAliveSeconds: 0, username: nil, password: [1], will: nil))
        #expect(throws: MQTTProtocolError.invalidContents("a password requires a user name")) { try encode(passwordOnly) }
        let longTopic = String(repeating: "x", count: 65_536)
        #expect(throws: MQTTProtocolError.fieldTooLong(65_536)) {
            try encode(.publish(MQTTMessage(topic: longTopic, payload: []), packetID: nil, dup: false))
        }
    }

    // MARK: Decoding

    @Test func everyPacketKindSurvivesAnEncodeDecodeRoundTrip() throws {
        for packet in Self.everyKind {
            #expect(try decode([encode(packet)]) == [packet])
        }
    }

    @Test func packetsSplitAcrossReadsAreReassembled() throws {
        let bytes = try Self.everyKind.flatMap { try encode($0) }
        for chunkSize in [1, 2, 3, 7, 64] {
            let chunks = stride(from: 0, to: bytes.count, by: chunkSize).map { Array(bytes[$0..<min($0 + chunkSize, bytes.count)]) }
            #expect(try decode(chunks) == Self.everyKind, "chunks of \(chunkSize)")
        }
    }

    @Test func decoderPassesNIOsVerifierWithByteByByteAndCoalescedInput() throws {
        let input = ByteBuffer(bytes: try Self.everyKind.flatMap { try encode($0) })
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: [(input, Self.everyKind)], decoderFactory: { MQTTDecoder() })
    }

    @Test func fifthRemainingLengthByteIsRejected() throws {
        #expect(throws: MQTTProtocolError.malformedRemainingLength) { try decode([[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]]) }
    }

    @Test func packetOverTheMaximumIsRejectedBeforeItsBodyArrives() throws {
        // Remaining length 1 MiB - 3 plus 4 header bytes: one byte over 1 MiB.
        var header = ByteBuffer(bytes: [0x30])
        header.writeMQTTRemainingLength((1 << 20) - 3)
        let maximum = MQTTDecoder.defaultMaximumPacketSize
        #expect(throws: MQTTProtocolError.packetTooLarge(size: maximum + 1, maximum: maximum)) { try decode([Array(header.readableBytesView)]) }
    }

    @Test func packetOfExactlyTheMaximumIsAccepted() throws {
        let packet = MQTTPacket.publish(MQTTMessage(topic: "t", payload: [UInt8](repeating: 1, count: 100)), packetID: nil, dup: false)
        let bytes = try encode(packet)
        #expect(try decode([bytes], maximumPacketSize: bytes.count) == [packet])
        #expect(throws: MQTTProtocolError.packetTooLarge(size: bytes.count, maximum: bytes.count - 1)) {
            try decode([bytes], maximumPacketSize: bytes.count - 1)
        }
    }

    @Test func reservedPacketTypesAreRejectedAsUnknown() throws {
        #expect(throws: MQTTProtocolError.unknownPacketType(0)) { try decode([[0x00, 0x00]]) }
        #expect(throws: MQTTProtocolError.unknownPacketType(15)) { try decode([[0xF0, 0x00]]) }
    }

    @Test func qos2FlowIsRejectedAsUnsupported() throws {
        #expect(throws: MQTTProtocolError.unsupportedPacketType(5)) { try decode([[0x50, 0x02, 0x00, 0x01]]) }
        #expect(throws: MQTTProtocolError.unsupportedQoS(2)) { try decode([[0x34, 0x05, 0x00, 0x01, 0x74, 0x00, 0x01]]) }
        #expect(throws: MQTTProtocolError.unsupportedQoS(3)) { try decode([[0x36, 0x03, 0x00, 0x01, 0x74]]) }
    }

    @Test func wrongFixedHeaderFlagsAreRejected() throws {
        #expect(throws: MQTTProtocolError.invalidFlags(packetType: 8, flags: 0)) { try decode([[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]]) }
        #expect(throws: MQTTProtocolError.invalidFlags(packetType: 12, flags: 1)) { try decode([[0xC1, 0x00]]) }
        #expect(throws: MQTTProtocolError.invalidFlags(packetType: 3, flags: 8)) { try decode([[0x38, 0x03, 0x00, 0x01, 0x74]]) }
    }

    @Test func malformedContentsAreRejectedWithSpecificErrors() throws {
        #expect(throws: MQTTProtocolError.truncated) { try decode([[0x20, 0x01, 0x00]]) }
        #expect(throws: MQTTProtocolError.trailingBytes(1)) { try decode([[0x40, 0x03, 0x00, 0x01, 0x00]]) }
        #expect(throws: MQTTProtocolError.invalidUTF8) { try decode([[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]]) }
        #expect(throws: MQTTProtocolError.invalidUTF8) { try decode([[0x30, 0x03, 0x00, 0x01, 0x00]]) }
        #expect(throws: MQTTProtocolError.invalidContents("packet identifier 0")) { try decode([[0x40, 0x02, 0x00, 0x00]]) }
        #expect(throws: MQTTProtocolError.invalidContents("invalid SUBACK return code")) { try decode([[0x90, 0x03, 0x00, 0x01, 0x03]]) }
        #expect(throws: MQTTProtocolError.unsupportedProtocol(name: "MQIsdp", level: 3)) {
            try decode([[0x10, 0x0E, 0x00, 0x06] + Array("MQIsdp".utf8) + [0x03, 0x02, 0x00, 0x00, 0x00, 0x00]])
        }
    }
}
