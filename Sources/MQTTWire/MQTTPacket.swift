import NIOCore

/// A topic filter and the highest QoS wanted on it: one entry of a SUBSCRIBE.
package struct MQTTSubscription: Equatable, Sendable {
    package var filter: String
    package var qos: MQTTQoS

    package init(filter: String, qos: MQTTQoS) {
        self.filter = filter
        self.qos = qos
    }
}

/// What a CONNECT carries besides the protocol name and level.
package struct MQTTConnect: Equatable, Sendable {
    package var clientID: String
    package var cleanSession: Bool
    package var keepAliveSeconds: UInt16
    package var username: String?
    /// Binary on the wire; MQTT 3.1.1 allows it only together with a username.
    package var password: [UInt8]?
    package var will: MQTTMessage?

    package init(clientID: String, cleanSession: Bool, keepAliveSeconds: UInt16, username: String? = nil, password: [UInt8]? = nil, will: MQTTMessage? = nil) {
        self.clientID = clientID
        self.cleanSession = cleanSession
        self.keepAliveSeconds = keepAliveSeconds
        self.username = username
        self.password = password
        self.will = will
    }
}

/// An MQTT 3.1.1 control packet: every type but the QoS 2 flow (PUBREC, PUBREL, PUBCOMP).
package enum MQTTPacket: Equatable, Sendable {
    case connect(MQTTConnect)
    /// `returnCode` 0 accepts the connection; 1...5 refuse it (see ``connectReturnCodeDescription(_:)``).
    case connack(sessionPresent: Bool, returnCode: UInt8)
    /// `packetID` is present exactly when the QoS is above 0; `dup` marks a re-delivery.
    case publish(MQTTMessage, packetID: UInt16?, dup: Bool)
    case puback(packetID: UInt16)
    case subscribe(packetID: UInt16, subscriptions: [MQTTSubscription])
    /// One return code per subscription: the granted QoS, or 0x80 for a refusal.
    case suback(packetID: UInt16, returnCodes: [UInt8])
    case unsubscribe(packetID: UInt16, filters: [String])
    case unsuback(packetID: UInt16)
    case pingreq
    case pingresp
    case disconnect

    /// Packet type numbers: the high nibble of the fixed header's first byte.
    package enum Kind: UInt8 {
        case connect = 1, connack, publish, puback, pubrec, pubrel, pubcomp
        case subscribe, suback, unsubscribe, unsuback, pingreq, pingresp, disconnect
    }

    /// The largest remaining length that the 4-byte variable-length encoding can express.
    package static let maximumRemainingLength = 268_435_455

    /// A readable text for a CONNACK return code, as the specification names it.
    package static func connectReturnCodeDescription(_ code: UInt8) -> String {
        switch code {
        case 0: "accepted"
        case 1: "unacceptable protocol version"
        case 2: "identifier rejected"
        case 3: "server unavailable"
        case 4: "bad user name or password"
        case 5: "not authorized"
        default: "unknown return code \(code)"
        }
    }

    package var kind: Kind {
        switch self {
        case .connect: .connect
        case .connack: .connack
        case .publish: .publish
        case .puback: .puback
        case .subscribe: .subscribe
        case .suback: .suback
        case .unsubscribe: .unsubscribe
        case .unsuback: .unsuback
        case .pingreq: .pingreq
        case .pingresp: .pingresp
        case .disconnect: .disconnect
        }
    }

    /// The low nibble of the fixed header: DUP, QoS and RETAIN for PUBLISH, fixed otherwise.
    package var flags: UInt8 {
        switch self {
        case .publish(let message, _, let dup): (dup ? 0b1000 : 0) | message.qos.rawValue << 1 | (message.retain ? 1 : 0)
        case .subscribe, .unsubscribe: 0b0010
        default: 0
        }
    }
}

// MARK: Encoding

extension MQTTPacket {
    /// Writes the whole packet, fixed header included; throws if a field cannot be encoded.
    package func write(to buffer: inout ByteBuffer) throws {
        let length = try remainingLength()
        guard length <= Self.maximumRemainingLength else {
            throw MQTTProtocolError.packetTooLarge(size: 5 + length, maximum: 5 + Self.maximumRemainingLength)
        }
        buffer.writeInteger(kind.rawValue << 4 | flags)
        buffer.writeMQTTRemainingLength(length)
        let start = buffer.writerIndex
        writeBody(to: &buffer)
        assert(buffer.writerIndex - start == length, "remainingLength() disagrees with writeBody(to:) for \(kind)")
    }

    /// The size of everything after the fixed header; also checks the rules a sender must keep.
    private func remainingLength() throws -> Int {
        switch self {
        case .connect(let connect):
            if connect.password != nil && connect.username == nil {
                throw MQTTProtocolError.invalidContents("a password requires a user name")
            }
            var length = 10 + (try encodedLength(of: connect.clientID))
            if let will = connect.will {
                length += try encodedLength(of: will.topic) + encodedLength(of: will.payload)
            }
            if let username = connect.username { length += try encodedLength(of: username) }
            if let password = connect.password { length += try encodedLength(of: password) }
            return length
        case .connack, .puback, .unsuback:
            return 2
        case .publish(let message, let packetID, let dup):
            guard (packetID != nil) == (message.qos != .atMostOnce) else {
                throw MQTTProtocolError.invalidContents("a PUBLISH has a packet identifier exactly when its QoS is above 0")
            }
            guard !dup || message.qos != .atMostOnce else { throw MQTTProtocolError.invalidContents("DUP set on a QoS 0 PUBLISH") }
            return try encodedLength(of: message.topic) + (packetID == nil ? 0 : 2) + message.payload.count
        case .subscribe(_, let subscriptions):
            guard !subscriptions.isEmpty else { throw MQTTProtocolError.invalidContents("SUBSCRIBE without topic filters") }
            return try subscriptions.reduce(2) { try $0 + encodedLength(of: $1.filter) + 1 }
        case .suback(_, let returnCodes):
            return 2 + returnCodes.count
        case .unsubscribe(_, let filters):
            guard !filters.isEmpty else { throw MQTTProtocolError.invalidContents("UNSUBSCRIBE without topic filters") }
            return try filters.reduce(2) { try $0 + encodedLength(of: $1) }
        case .pingreq, .pingresp, .disconnect:
            return 0
        }
    }

    private func writeBody(to buffer: inout ByteBuffer) {
        switch self {
        case .connect(let connect):
            buffer.writeMQTTString("MQTT")
            buffer.writeInteger(UInt8(4))
            buffer.writeInteger(connect.flags)
            buffer.writeInteger(connect.keepAliveSeconds)
            buffer.writeMQTTString(connect.clientID)
            if let will = connect.will {
                buffer.writeMQTTString(will.topic)
                buffer.writeMQTTBinary(will.payload)
            }
            if let username = connect.username { buffer.writeMQTTString(username) }
            if let password = connect.password { buffer.writeMQTTBinary(password) }
        case .connack(let sessionPresent, let returnCode):
            buffer.writeInteger(UInt8(sessionPresent ? 1 : 0))
            buffer.writeInteger(returnCode)
        case .publish(let message, let packetID, _):
            buffer.writeMQTTString(message.topic)
            if let packetID { buffer.writeInteger(packetID) }
            buffer.writeBytes(message.payload)
        case .puback(let packetID), .unsuback(let packetID):
            buffer.writeInteger(packetID)
        case .subscribe(let packetID, let subscriptions):
            buffer.writeInteger(packetID)
            for subscription in subscriptions {
                buffer.writeMQTTString(subscription.filter)
                buffer.writeInteger(subscription.qos.rawValue)
            }
        case .suback(let packetID, let returnCodes):
            buffer.writeInteger(packetID)
            buffer.writeBytes(returnCodes)
        case .unsubscribe(let packetID, let filters):
            buffer.writeInteger(packetID)
            for filter in filters { buffer.writeMQTTString(filter) }
        case .pingreq, .pingresp, .disconnect:
            break
        }
    }

    private func encodedLength(of string: String) throws -> Int {
        try encodedLength(ofFieldOf: string.utf8.count)
    }

    private func encodedLength(of bytes: [UInt8]) throws -> Int {
        try encodedLength(ofFieldOf: bytes.count)
    }

    private func encodedLength(ofFieldOf count: Int) throws -> Int {
        guard count <= Int(UInt16.max) else { throw MQTTProtocolError.fieldTooLong(count) }
        return 2 + count
    }
}

extension MQTTConnect {
    /// The connect flags byte: user name, password, will retain, will QoS, will, clean session.
    var flags: UInt8 {
        var flags: UInt8 = cleanSession ? 0b0000_0010 : 0
        if username != nil { flags |= 0b1000_0000 }
        if password != nil { flags |= 0b0100_0000 }
        if let will {
            flags |= 0b0000_0100 | will.qos.rawValue << 3
            if will.retain { flags |= 0b0010_0000 }
        }
        return flags
    }
}

// MARK: Decoding

extension MQTTPacket {
    /// The packet type of a fixed header's first byte, once its flags are checked; lets the
    /// decoder reject a bad packet before waiting for its body.
    package static func kind(ofFixedHeader byte: UInt8) throws -> Kind {
        let type = byte >> 4
        let flags = byte & 0x0F
        guard let kind = Kind(rawValue: type) else { throw MQTTProtocolError.unknownPacketType(type) }
        switch kind {
        case .pubrec, .pubrel, .pubcomp:
            throw MQTTProtocolError.unsupportedPacketType(type)
        case .publish:
            let qos = flags >> 1 & 0b11
            guard qos < 2 else { throw MQTTProtocolError.unsupportedQoS(qos) }
            guard qos > 0 || flags & 0b1000 == 0 else { throw MQTTProtocolError.invalidFlags(packetType: type, flags: flags) }
        case .subscribe, .unsubscribe:
            guard flags == 0b0010 else { throw MQTTProtocolError.invalidFlags(packetType: type, flags: flags) }
        default:
            guard flags == 0 else { throw MQTTProtocolError.invalidFlags(packetType: type, flags: flags) }
        }
        return kind
    }

    /// Decodes a packet from its fixed header's first byte and exactly its remaining bytes.
    package static func read(fixedHeader byte: UInt8, body: inout ByteBuffer) throws -> MQTTPacket {
        let packet: MQTTPacket
        switch try kind(ofFixedHeader: byte) {
        case .connect:
            packet = .connect(try MQTTConnect(from: &body))
        case .connack:
            let acknowledgeFlags = try body.readMQTTByte()
            guard acknowledgeFlags & 0b1111_1110 == 0 else { throw MQTTProtocolError.invalidContents("reserved CONNACK flags set") }
            packet = .connack(sessionPresent: acknowledgeFlags == 1, returnCode: try body.readMQTTByte())
        case .publish:
            let flags = byte & 0x0F
            let qos = try MQTTQoS(wireValue: flags >> 1 & 0b11)
            let topic = try body.readMQTTString()
            let packetID = qos == .atMostOnce ? nil : try body.readMQTTPacketID()
            let payload = body.readBytes(length: body.readableBytes) ?? []
            let message = MQTTMessage(topic: topic, payload: payload, qos: qos, retain: flags & 1 == 1)
            packet = .publish(message, packetID: packetID, dup: flags & 0b1000 != 0)
        case .puback:
            packet = .puback(packetID: try body.readMQTTPacketID())
        case .subscribe:
            let packetID = try body.readMQTTPacketID()
            var subscriptions: [MQTTSubscription] = []
            while body.readableBytes > 0 {
                let filter = try body.readMQTTString()
                let options = try body.readMQTTByte()
                guard options & 0b1111_1100 == 0 else { throw MQTTProtocolError.invalidContents("reserved subscription option bits set") }
                subscriptions.append(MQTTSubscription(filter: filter, qos: try MQTTQoS(wireValue: options)))
            }
            guard !subscriptions.isEmpty else { throw MQTTProtocolError.invalidContents("SUBSCRIBE without topic filters") }
            packet = .subscribe(packetID: packetID, subscriptions: subscriptions)
        case .suback:
            let packetID = try body.readMQTTPacketID()
            let returnCodes = body.readBytes(length: body.readableBytes) ?? []
            guard !returnCodes.isEmpty else { throw MQTTProtocolError.invalidContents("SUBACK without return codes") }
            guard returnCodes.allSatisfy({ $0 <= 2 || $0 == 0x80 }) else { throw MQTTProtocolError.invalidContents("invalid SUBACK return code") }
            packet = .suback(packetID: packetID, returnCodes: returnCodes)
        case .unsubscribe:
            let packetID = try body.readMQTTPacketID()
            var filters: [String] = []
            while body.readableBytes > 0 { filters.append(try body.readMQTTString()) }
            guard !filters.isEmpty else { throw MQTTProtocolError.invalidContents("UNSUBSCRIBE without topic filters") }
            packet = .unsubscribe(packetID: packetID, filters: filters)
        case .unsuback:
            packet = .unsuback(packetID: try body.readMQTTPacketID())
        case .pingreq:
            packet = .pingreq
        case .pingresp:
            packet = .pingresp
        case .disconnect:
            packet = .disconnect
        case .pubrec, .pubrel, .pubcomp:
            throw MQTTProtocolError.unsupportedPacketType(byte >> 4)
        }
        guard body.readableBytes == 0 else { throw MQTTProtocolError.trailingBytes(body.readableBytes) }
        return packet
    }
}

extension MQTTConnect {
    /// Reads the variable header and payload of a CONNECT.
    init(from body: inout ByteBuffer) throws {
        let name = try body.readMQTTString()
        let level = try body.readMQTTByte()
        guard name == "MQTT", level == 4 else { throw MQTTProtocolError.unsupportedProtocol(name: name, level: level) }
        let flags = try body.readMQTTByte()
        guard flags & 0b1 == 0 else { throw MQTTProtocolError.invalidContents("reserved CONNECT flag set") }
        let hasWill = flags & 0b0000_0100 != 0
        guard hasWill || flags & 0b0011_1000 == 0 else { throw MQTTProtocolError.invalidContents("will QoS or retain without a will") }
        let hasUsername = flags & 0b1000_0000 != 0
        let hasPassword = flags & 0b0100_0000 != 0
        guard hasUsername || !hasPassword else { throw MQTTProtocolError.invalidContents("a password requires a user name") }
        cleanSession = flags & 0b0000_0010 != 0
        keepAliveSeconds = try body.readMQTTUInt16()
        clientID = try body.readMQTTString()
        if hasWill {
            let qos = try MQTTQoS(wireValue: flags >> 3 & 0b11)
            let topic = try body.readMQTTString()
            will = MQTTMessage(topic: topic, payload: try body.readMQTTBinary(), qos: qos, retain: flags & 0b0010_0000 != 0)
        } else {
            will = nil
        }
        username = hasUsername ? try body.readMQTTString() : nil
        password = hasPassword ? try body.readMQTTBinary() : nil
    }
}

extension MQTTQoS {
    /// The QoS of a 2-bit field, or the error for 2 (unsupported) and 3 (invalid).
    init(wireValue: UInt8) throws {
        guard let qos = MQTTQoS(rawValue: wireValue) else { throw MQTTProtocolError.unsupportedQoS(wireValue) }
        self = qos
    }
}

// MARK: Fields

extension ByteBuffer {
    mutating func readMQTTByte() throws -> UInt8 {
        guard let byte = readInteger(as: UInt8.self) else { throw MQTTProtocolError.truncated }
        return byte
    }

    mutating func readMQTTUInt16() throws -> UInt16 {
        guard let value = readInteger(as: UInt16.self) else { throw MQTTProtocolError.truncated }
        return value
    }

    /// A packet identifier, which must not be 0.
    mutating func readMQTTPacketID() throws -> UInt16 {
        let packetID = try readMQTTUInt16()
        guard packetID != 0 else { throw MQTTProtocolError.invalidContents("packet identifier 0") }
        return packetID
    }

    /// Binary data with a 2-byte length prefix.
    mutating func readMQTTBinary() throws -> [UInt8] {
        let length = try readMQTTUInt16()
        guard let bytes = readBytes(length: Int(length)) else { throw MQTTProtocolError.truncated }
        return bytes
    }

    /// A UTF-8 string with a 2-byte length prefix; U+0000 is not allowed.
    mutating func readMQTTString() throws -> String {
        let length = try readMQTTUInt16()
        guard let slice = readSlice(length: Int(length)) else { throw MQTTProtocolError.truncated }
        guard let string = String(validating: slice.readableBytesView, as: UTF8.self), !string.utf8.contains(0) else {
            throw MQTTProtocolError.invalidUTF8
        }
        return string
    }

    /// Writes a string with its 2-byte length; the caller has checked that it fits.
    mutating func writeMQTTString(_ string: String) {
        writeInteger(UInt16(string.utf8.count))
        writeString(string)
    }

    /// Writes binary data with its 2-byte length; the caller has checked that it fits.
    mutating func writeMQTTBinary(_ bytes: [UInt8]) {
        writeInteger(UInt16(bytes.count))
        writeBytes(bytes)
    }

    /// Writes the fixed header's remaining length: 7 bits a byte, least significant first.
    mutating func writeMQTTRemainingLength(_ length: Int) {
        var rest = length
        repeat {
            let byte = UInt8(rest & 0x7F)
            rest >>= 7
            writeInteger(rest > 0 ? byte | 0x80 : byte)
        } while rest > 0
    }
}
