import Foundation
import MeshBusModel
@testable import MeshtasticProtocol
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
    }

    @Test func invalidUTF8TextKeepsPayloadButNoText() {
        let json = PacketJSON.packet(packet(port: .textMessageApp, payload: Data([0xFF, 0xFE])))
        #expect(json["decoded"]?["text"] == nil)
        #expect(json["decoded"]?["payload"] == .string("//4="))
    }

    @Test func portNamesRoundTrip() {
        #expect(PacketJSON.portName(.textMessageApp) == "TEXT_MESSAGE_APP")
        #expect(PacketJSON.portName(packet(port: .telemetryApp, payload: Data())) == "TELEMETRY_APP")
        #expect(PacketJSON.portName(Meshtastic_PortNum(rawValue: 300)!) == "300")
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

    // MARK: The direct writer against protobuf's own JSON

    /// What the writer must produce, built the slow way: protobuf's canonical JSON of the
    /// packet, parsed, plus the keys the Python library adds.
    static func reference(_ packet: Meshtastic_MeshPacket) -> JSONValue {
        var object = PacketJSON.message(packet).objectValue ?? JSONObject()
        if object["from"] == nil { object["from"] = .int(0) }
        if object["to"] == nil { object["to"] = .int(0) }
        object["fromId"] = .string(NodeNumber.id(packet.from))
        object["toId"] = .string(NodeNumber.id(packet.to))
        if case .decoded(let data)? = packet.payloadVariant, var decoded = object["decoded"]?.objectValue {
            if decoded["portnum"] == nil { decoded["portnum"] = .string("UNKNOWN_APP") }
            if decoded["payload"] == nil { decoded["payload"] = .string("") }
            for (key, value) in PacketJSON.decodedPayload(data) { decoded[key] = value }
            object["decoded"] = .object(decoded)
        }
        return .object(object)
    }

    static func randomPacket(_ random: inout SeededGenerator) -> Meshtastic_MeshPacket {
        func coin() -> Bool { Bool.random(using: &random) }
        var packet = Meshtastic_MeshPacket()
        if coin() { packet.from = UInt32.random(in: 0...UInt32.max, using: &random) }
        if coin() { packet.to = [NodeNumber.broadcast, 0, UInt32.random(in: 1...UInt32.max, using: &random)].randomElement(using: &random)! }
        if coin() { packet.channel = UInt32.random(in: 0...7, using: &random) }
        if coin() { packet.id = UInt32.random(in: 0...UInt32.max, using: &random) }
        if coin() { packet.rxTime = UInt32.random(in: 0...UInt32.max, using: &random) }
        if coin() { packet.rxSnr = [Float(6.25), -12.5, 0.1, 1e-7, 3e20, .nan, .infinity, -.infinity, 7, -0.0].randomElement(using: &random)! }
        if coin() { packet.hopLimit = UInt32.random(in: 0...7, using: &random) }
        if coin() { packet.hopStart = UInt32.random(in: 0...7, using: &random) }
        packet.wantAck = Bool.random(using: &random)
        packet.viaMqtt = Bool.random(using: &random)
        packet.pkiEncrypted = Bool.random(using: &random)
        if coin() { packet.priority = .init(rawValue: [0, 10, 64, 70, 120, 55].randomElement(using: &random)!)! }
        if coin() { packet.delayed = .init(rawValue: [0, 1, 2, 9].randomElement(using: &random)!)! }
        if coin() { packet.transportMechanism = .init(rawValue: [0, 1, 5, 7, 42].randomElement(using: &random)!)! }
        if coin() { packet.rxRssi = Int32.random(in: -140...0, using: &random) }
        if coin() { packet.nextHop = UInt32.random(in: 0...255, using: &random) }
        if coin() { packet.relayNode = UInt32.random(in: 0...255, using: &random) }
        if coin() { packet.txAfter = UInt32.random(in: 0...5000, using: &random) }
        if Bool.random(using: &random) { packet.publicKey = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }) }
        switch Int.random(in: 0..<6, using: &random) {
        case 0:
            break
        case 1:
            packet.encrypted = Data((0..<Int.random(in: 0...40, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        default:
            var data = Meshtastic_Data()
            let ports: [Int] = [0, 1, 3, 4, 5, 6, 8, 67, 70, 71, 73, 300]
            data.portnum = Meshtastic_PortNum(rawValue: ports.randomElement(using: &random)!)!
            data.payload = randomPayload(for: data.portnum, &random)
            data.wantResponse = Bool.random(using: &random)
            if coin() { data.dest = UInt32.random(in: 0...UInt32.max, using: &random) }
            if coin() { data.source = UInt32.random(in: 0...UInt32.max, using: &random) }
            if coin() { data.requestID = UInt32.random(in: 0...UInt32.max, using: &random) }
            if coin() { data.replyID = UInt32.random(in: 0...UInt32.max, using: &random) }
            if coin() { data.emoji = UInt32.random(in: 0...UInt32.max, using: &random) }
            if coin() { data.bitfield = UInt32.random(in: 0...3, using: &random) }
            packet.decoded = data
        }
        return packet
    }

    static func randomPayload(for port: Meshtastic_PortNum, _ random: inout SeededGenerator) -> Data {
        let texts = ["hi ☀", "quote \" and \\ and \n", "", "ctl \u{01}", "emoji 🛰️"]
        switch port {
        case .textMessageApp:
            return Bool.random(using: &random) ? Data(texts.randomElement(using: &random)!.utf8) : Data([0xFF, 0x41])
        case .positionApp:
            let position = Meshtastic_Position.with {
                $0.latitudeI = Int32.random(in: -900_000_000...900_000_000, using: &random)
                $0.longitudeI = Int32.random(in: -1_800_000_000...1_800_000_000, using: &random)
                $0.altitude = Int32.random(in: -10...4000, using: &random)
            }
            return (try? position.serializedData()) ?? Data()
        case .nodeinfoApp:
            let user = Meshtastic_User.with {
                $0.id = NodeNumber.id(UInt32.random(in: 1...UInt32.max, using: &random))
                $0.longName = texts.randomElement(using: &random)!
                $0.hwModel = .heltecV3
            }
            return (try? user.serializedData()) ?? Data()
        case .telemetryApp:
            let telemetry = Meshtastic_Telemetry.with {
                $0.time = UInt32.random(in: 0...UInt32.max, using: &random)
                $0.deviceMetrics.batteryLevel = UInt32.random(in: 0...101, using: &random)
                $0.deviceMetrics.voltage = Float.random(in: 3...4.2, using: &random)
            }
            return (try? telemetry.serializedData()) ?? Data()
        case .routingApp:
            return (try? Meshtastic_Routing.with { $0.errorReason = .maxRetransmit }.serializedData()) ?? Data()
        default:
            return Data((0..<Int.random(in: 0...20, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        }
    }

    @Test func writerMatchesProtobufJSONWithPythonKeysOverRandomPackets() throws {
        var random = SeededGenerator(seed: 10)
        for _ in 0..<3000 {
            let packet = Self.randomPacket(&random)
            var bytes: [UInt8] = []
            let summary = PacketJSON.write(packet, to: &bytes)
            let written = try JSONValue(parsing: bytes)
            #expect(written == Self.reference(packet), "\(packet)")
            #expect(Self.keysAreUnique(bytes), "a key written twice would hide behind the parser keeping the last")
            if case .decoded(let data)? = packet.payloadVariant {
                #expect(summary.payload.map(\.key) == PacketJSON.decodedPayload(data).map(\.key))
            }
        }
    }

    /// Whether every object in the JSON text has distinct keys (the parser keeps the last).
    static func keysAreUnique(_ bytes: [UInt8]) -> Bool {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) else { return false }
        func count(_ value: Any) -> Int {
            if let dictionary = value as? [String: Any] { return dictionary.count + dictionary.values.map(count).reduce(0, +) }
            if let array = value as? [Any] { return array.map(count).reduce(0, +) }
            return 0
        }
        // Keys in the compact text: a string closed right before a `:` outside any string.
        var keys = 0, inString = false, escaped = false, closedAt = -2
        for (index, byte) in bytes.enumerated() {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false; closedAt = index }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: ":"), closedAt == index - 1 {
                keys += 1
            }
        }
        return count(object) == keys
    }

    @Test func writerKeepsTheCallersBytesBeforeTheObject() throws {
        var bytes = Array(#"{"packet":"#.utf8)
        PacketJSON.write(packet(port: .textMessageApp, payload: Data("hi".utf8)), to: &bytes)
        bytes.append(UInt8(ascii: "}"))
        #expect(try JSONValue(parsing: bytes)["packet"]?["decoded"]?["text"] == .string("hi"))
    }

    // MARK: Top-level fields of serialized messages

    @Test func packetBytesAreCutFromTheFromRadioFrameAsTheyArrived() throws {
        var random = SeededGenerator(seed: 11)
        for _ in 0..<200 {
            let message = Meshtastic_FromRadio.with {
                $0.id = UInt32.random(in: 0...1000, using: &random)
                $0.packet = Self.randomPacket(&random)
            }
            let raw: [UInt8] = try message.serializedBytes()
            let cut = try #require(ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: raw))
            #expect(Array(cut) == (try message.packet.serializedBytes() as [UInt8]))
        }
    }

    @Test func packetBytesAreNotCutFromRepeatedOrMalformedFields() throws {
        let one: [UInt8] = try Meshtastic_FromRadio.with { $0.packet.id = 7 }.serializedBytes()
        #expect(ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: one + one) == nil, "two parts are merged by protobuf")
        #expect(ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: Array(one.dropLast())) == nil)
        #expect(ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: [0x12, 0x80]) == nil, "truncated length")
        #expect(ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: [0x0B]) == nil, "group wire type")
        #expect(ProtobufFields.lengthDelimited(ProtobufFields.fromRadioPacket, in: [0x08, 0x05]) == nil, "absent")
    }
}
