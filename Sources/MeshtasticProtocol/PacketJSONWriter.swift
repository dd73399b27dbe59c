import MeshBusModel
import struct Foundation.Data
import SwiftProtobuf

/// What ``PacketJSON/write(_:to:)`` decoded from a packet's payload while writing it, so
/// callers (node DB, send ledger) need not decode it again or read the JSON back.
public struct PacketJSONSummary: Sendable {
    /// The keys added to `decoded` for a known port (`text`, `position`, `user`, …).
    public var payload: [(key: String, value: JSONValue)]

    /// One of the ``payload`` values by key.
    public subscript(payload key: String) -> JSONValue? {
        payload.first { $0.key == key }?.value
    }
}

extension PacketJSON {
    /// Writes the packet's JSON object (the same document as ``packet(_:)``) straight to
    /// bytes. Every received packet goes through here, so the envelope is written in one
    /// pass instead of building protobuf's JSON, parsing it and writing it again.
    @discardableResult
    public static func write(_ packet: Meshtastic_MeshPacket, to out: inout [UInt8]) -> PacketJSONSummary {
        var object = ObjectWriter(taking: &out)
        object.number("from", packet.from)
        object.number("to", packet.to)
        if packet.channel != 0 { object.number("channel", packet.channel) }
        var summary = PacketJSONSummary(payload: [])
        switch packet.payloadVariant {
        case .decoded(let data)?:
            object.key("decoded")
            summary = write(data, to: &object.out)
        case .encrypted(let bytes)?:
            object.bytes("encrypted", bytes)
        case nil:
            break
        }
        if packet.id != 0 { object.number("id", packet.id) }
        if packet.rxTime != 0 { object.number("rxTime", packet.rxTime) }
        if packet.rxSnr.bitPattern != 0 { object.float("rxSnr", packet.rxSnr) }  // -0.0 is written, as protobuf does
        if packet.hopLimit != 0 { object.number("hopLimit", packet.hopLimit) }
        if packet.wantAck { object.literal("wantAck", "true") }
        if packet.priority.rawValue != 0 { object.enumValue("priority", packet.priority.rawValue, names: EnumNames.priority) }
        if packet.rxRssi != 0 { object.number("rxRssi", packet.rxRssi) }
        if packet.delayed.rawValue != 0 { object.enumValue("delayed", packet.delayed.rawValue, names: EnumNames.delayed) }
        if packet.viaMqtt { object.literal("viaMqtt", "true") }
        if packet.hopStart != 0 { object.number("hopStart", packet.hopStart) }
        if !packet.publicKey.isEmpty { object.bytes("publicKey", packet.publicKey) }
        if packet.pkiEncrypted { object.literal("pkiEncrypted", "true") }
        if packet.nextHop != 0 { object.number("nextHop", packet.nextHop) }
        if packet.relayNode != 0 { object.number("relayNode", packet.relayNode) }
        if packet.txAfter != 0 { object.number("txAfter", packet.txAfter) }
        if packet.transportMechanism.rawValue != 0 {
            object.enumValue("transportMechanism", packet.transportMechanism.rawValue, names: EnumNames.transport)
        }
        object.nodeID("fromId", packet.from)
        object.nodeID("toId", packet.to)
        object.close(into: &out)
        return summary
    }

    private static func write(_ data: Meshtastic_Data, to out: inout [UInt8]) -> PacketJSONSummary {
        var object = ObjectWriter(taking: &out)
        let portName = portName(data.portnum)
        object.key("portnum")
        if data.portnum.rawValue == 0 || EnumNames.ports[data.portnum.rawValue] != nil {
            JSONValue.writeString(portName, to: &object.out)
        } else {
            object.out.append(contentsOf: portName.utf8)
        }
        object.bytes("payload", data.payload)
        if data.wantResponse { object.literal("wantResponse", "true") }
        if data.dest != 0 { object.number("dest", data.dest) }
        if data.source != 0 { object.number("source", data.source) }
        if data.requestID != 0 { object.number("requestId", data.requestID) }
        if data.replyID != 0 { object.number("replyId", data.replyID) }
        if data.emoji != 0 { object.number("emoji", data.emoji) }
        if data.hasBitfield { object.number("bitfield", data.bitfield) }
        let payload = decodedPayload(data)
        for (key, value) in payload {
            object.key(key)
            value.write(to: &object.out)
        }
        object.close(into: &out)
        return PacketJSONSummary(payload: payload)
    }

    /// A float as swift-protobuf writes it (shortest text that reads back to the same float;
    /// NaN and infinities as strings), for the packet and the node DB alike.
    public static func float(_ value: Float) -> JSONValue {
        if value.isNaN { return .string("NaN") }
        if value.isInfinite { return .string(value < 0 ? "-Infinity" : "Infinity") }
        return .number(value.debugDescription)
    }

    /// Proto names of the enums a packet carries, read once from swift-protobuf's own JSON
    /// (so they match ``message(_:)`` exactly) instead of per packet.
    enum EnumNames {
        static let ports: [Int: String] = names(Meshtastic_PortNum.allCases) { port in
            Meshtastic_Data.with { $0.portnum = port }
        }
        static let priority: [Int: String] = names(Meshtastic_MeshPacket.Priority.allCases) { value in
            Meshtastic_MeshPacket.with { $0.priority = value }
        }
        static let delayed: [Int: String] = names(Meshtastic_MeshPacket.Delayed.allCases) { value in
            Meshtastic_MeshPacket.with { $0.delayed = value }
        }
        static let transport: [Int: String] = names(Meshtastic_MeshPacket.TransportMechanism.allCases) { value in
            Meshtastic_MeshPacket.with { $0.transportMechanism = value }
        }

        private static func names<E: SwiftProtobuf.Enum, M: SwiftProtobuf.Message>(_ cases: [E], _ holder: (E) -> M) -> [Int: String] {
            var names: [Int: String] = [:]
            for value in cases where value.rawValue != 0 {
                if let object = message(holder(value)).objectValue, let name = object.entries.first?.value.stringValue {
                    names[value.rawValue] = name
                }
            }
            return names
        }
    }
}

/// Writes one JSON object's members in order: `{`, then `"key":value` pairs, then `}`.
/// It takes the caller's buffer over (a swap, no copy) and hands it back on ``close(into:)``.
struct ObjectWriter {
    var out: [UInt8] = []
    private var empty = true

    init(taking buffer: inout [UInt8]) {
        swap(&out, &buffer)
        out.append(UInt8(ascii: "{"))
    }

    /// `,"key":` (no comma first), made on the stack and appended at once: every packet
    /// writes a dozen keys.
    mutating func key(_ key: StaticString) {
        let count = key.utf8CodeUnitCount
        let comma = empty ? 0 : 1
        empty = false
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count + 4) { text in
            text[0] = UInt8(ascii: ",")
            text[comma] = UInt8(ascii: "\"")
            UnsafeMutableBufferPointer(rebasing: text[(comma + 1)...]).baseAddress!.update(from: key.utf8Start, count: count)
            text[comma + 1 + count] = UInt8(ascii: "\"")
            text[comma + 2 + count] = UInt8(ascii: ":")
            out.append(contentsOf: UnsafeBufferPointer(rebasing: text[..<(comma + 3 + count)]))
        }
    }

    mutating func key(_ key: String) {
        if !empty { out.append(UInt8(ascii: ",")) }
        empty = false
        JSONValue.writeString(key, to: &out)
        out.append(UInt8(ascii: ":"))
    }

    mutating func number(_ key: StaticString, _ value: some BinaryInteger) {
        self.key(key)
        JSONValue.writeInteger(value, to: &out)
    }

    mutating func float(_ key: StaticString, _ value: Float) {
        self.key(key)
        PacketJSON.float(value).write(to: &out)
    }

    mutating func literal(_ key: StaticString, _ text: StaticString) {
        self.key(key)
        out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func string(_ key: StaticString, _ value: String) {
        self.key(key)
        JSONValue.writeString(value, to: &out)
    }

    mutating func bytes(_ key: StaticString, _ value: Data) {
        self.key(key)
        out.append(UInt8(ascii: "\""))
        value.withUnsafeBytes { JSONValue.writeBase64($0, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    /// A node number as its id text (`!a1b2c3d4`, `^all`).
    mutating func nodeID(_ key: StaticString, _ value: UInt32) {
        self.key(key)
        NodeID.writeJSON(value, to: &out)
    }

    /// An enum by its proto name, or by number for a value this build does not know.
    mutating func enumValue(_ key: StaticString, _ rawValue: Int, names: [Int: String]) {
        self.key(key)
        if let name = names[rawValue] { JSONValue.writeString(name, to: &out) } else { JSONValue.writeInteger(rawValue, to: &out) }
    }

    mutating func close(into buffer: inout [UInt8]) {
        out.append(UInt8(ascii: "}"))
        swap(&out, &buffer)
    }
}
