import Foundation
import MeshtasticProtocol
import Testing

@Suite struct PacketJSONTests {
    func packet(port: Meshtastic_PortNum, payload: Data) -> Meshtastic_MeshPacket {
        var packet = Meshtastic_MeshPacket()
        packet.from = 0x1234_5678
        packet.to = NodeNumber.broadcast
        packet.id = 42
        packet.rxTime = 1_700_000_000
        packet.rxSnr = 6.25
        packet.hopLimit = 3
        packet.decoded.portnum = port
        packet.decoded.payload = payload
        return packet
    }

    @Test func textPacketCarriesPythonKeys() throws {
        let json = PacketJSON.packet(packet(port: .textMessageApp, payload: Data("hi ☀".utf8)))
        #expect(json["from"] == .number("305419896"))
        #expect(json["to"] == .number("4294967295"))
        #expect(json["fromId"] == .string("!12345678"))
        #expect(json["toId"] == .string("^all"))
        #expect(json["rxTime"] == .number("1700000000"))
        #expect(json["rxSnr"] == .number("6.25"))
        #expect(json["hopLimit"] == .number("3"))
        #expect(json["decoded"]?["portnum"] == .string("TEXT_MESSAGE_APP"))
        #expect(json["decoded"]?["payload"] == .string(Data("hi ☀".utf8).base64EncodedString()))
        #expect(json["decoded"]?["text"] == .string("hi ☀"))
        #expect(json["wantAck"] == nil, "defaults are omitted, as MessageToDict does")
        #expect(json["channel"] == nil)
    }

    @Test func positionPacketAddsDegrees() throws {
        var position = Meshtastic_Position()
        position.latitudeI = 473_456_789
        position.longitudeI = -84_000_001
        position.altitude = 420
        let json = PacketJSON.packet(packet(port: .positionApp, payload: try position.serializedBytes()))
        let decoded = try #require(json["decoded"]?["position"])
        #expect(decoded["latitudeI"] == .number("473456789"))
        #expect(decoded["latitude"] == .number("47.3456789"))
        #expect(decoded["longitude"] == .number("-8.4000001"))
        #expect(decoded["altitude"] == .number("420"))
    }

    @Test func nodeInfoPacketCarriesUser() throws {
        var user = Meshtastic_User()
        user.id = "!12345678"
        user.longName = "Roof"
        user.shortName = "RF"
        user.hwModel = .heltecV3
        let json = PacketJSON.packet(packet(port: .nodeinfoApp, payload: try user.serializedBytes()))
        #expect(json["decoded"]?["user"]?["longName"] == .string("Roof"))
        #expect(json["decoded"]?["user"]?["hwModel"] == .string("HELTEC_V3"))
    }

    @Test func telemetryPacketCarriesDeviceMetrics() throws {
        var telemetry = Meshtastic_Telemetry()
        telemetry.time = 5
        telemetry.deviceMetrics.batteryLevel = 87
        telemetry.deviceMetrics.voltage = 4.1
        let json = PacketJSON.packet(packet(port: .telemetryApp, payload: try telemetry.serializedBytes()))
        let metrics = try #require(json["decoded"]?["telemetry"]?["deviceMetrics"])
        #expect(metrics["batteryLevel"] == .number("87"))
        #expect(metrics["voltage"] == .number("4.1"))
    }

    @Test func routingAckSaysNoneAndNakNamesTheError() throws {
        var ack = packet(port: .routingApp, payload: try Meshtastic_Routing.with { $0.errorReason = .none }.serializedBytes())
        ack.decoded.requestID = 99
        let ackJSON = PacketJSON.packet(ack)
        #expect(ackJSON["decoded"]?["requestId"] == .number("99"))
        // error_reason is a oneof member, so NONE is present and printed, as MessageToDict does.
        #expect(ackJSON["decoded"]?["routing"]?["errorReason"] == .string("NONE"))
        let nak = PacketJSON.packet(packet(port: .routingApp, payload: try Meshtastic_Routing.with { $0.errorReason = .maxRetransmit }.serializedBytes()))
        #expect(nak["decoded"]?["routing"]?["errorReason"] == .string("MAX_RETRANSMIT"))
    }

    @Test func encryptedPacketKeepsBase64AndHasNoDecoded() {
        var packet = Meshtastic_MeshPacket()
        packet.from = 1
        packet.encrypted = Data([1, 2, 3])
        let json = PacketJSON.packet(packet)
        #expect(json["encrypted"] == .string("AQID"))
        #expect(json["decoded"] == nil)
        #expect(json["to"] == .number("0"))
        #expect(PacketJSON.portName(packet) == "ENCRYPTED")
        #expect(PacketJSON.portName(ofPacketJSON: json) == "ENCRYPTED")
    }

    @Test func invalidUTF8TextKeepsPayloadButNoText() {
        let json = PacketJSON.packet(packet(port: .textMessageApp, payload: Data([0xFF, 0xFE])))
        #expect(json["decoded"]?["text"] == nil)
        #expect(json["decoded"]?["payload"] == .string("//4="))
    }

    @Test func portNamesRoundTrip() {
        #expect(PacketJSON.portName(.textMessageApp) == "TEXT_MESSAGE_APP")
        #expect(PacketJSON.portName(ofPacketJSON: PacketJSON.packet(packet(port: .telemetryApp, payload: Data()))) == "TELEMETRY_APP")
        #expect(PacketJSON.port(named: "TELEMETRY_APP") == .telemetryApp)
        #expect(PacketJSON.port(named: "67") == .telemetryApp)
        #expect(PacketJSON.port(named: "NOPE") == nil)
    }

    @Test func nodeIDsFormatAndParse() {
        #expect(NodeNumber.id(0xAB) == "!000000ab")
        #expect(NodeNumber.id(NodeNumber.broadcast) == "^all")
        #expect(NodeNumber.parse("!abcd1234") == 0xABCD_1234)
        #expect(NodeNumber.parse("^all") == NodeNumber.broadcast)
        #expect(NodeNumber.parse("12") == 12)
        #expect(NodeNumber.parse("!xyz") == nil)
        #expect(NodeNumber.parse("!123456789") == nil)
    }
}
