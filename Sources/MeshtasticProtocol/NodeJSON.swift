import MeshBusModel
import SwiftProtobuf

extension PacketJSON {
    /// Writes a node DB entry as the Python library keeps it: protobuf's JSON of the
    /// `NodeInfo`, with `num` always present and `latitude`/`longitude` added to `position`
    /// (the library's `_fixupPosition`). Sub-messages are written by swift-protobuf, straight
    /// to bytes; the node's own fields by hand, in field order.
    public static func writeNode(_ node: Meshtastic_NodeInfo, to out: inout [UInt8]) {
        var object = ObjectWriter(taking: &out)
        object.number("num", node.num)
        if node.hasUser { object.message("user", node.user) }
        if node.hasPosition {
            object.key("position")
            writePosition(node.position, to: &object.out)
        }
        if node.snr.bitPattern != 0 { object.float("snr", node.snr) }
        if node.lastHeard != 0 { object.number("lastHeard", node.lastHeard) }
        if node.hasDeviceMetrics { object.message("deviceMetrics", node.deviceMetrics) }
        if node.channel != 0 { object.number("channel", node.channel) }
        if node.viaMqtt { object.literal("viaMqtt", "true") }
        if node.hasHopsAway { object.number("hopsAway", node.hopsAway) }
        if node.isFavorite { object.literal("isFavorite", "true") }
        if node.isIgnored { object.literal("isIgnored", "true") }
        if node.isKeyManuallyVerified { object.literal("isKeyManuallyVerified", "true") }
        if node.isMuted { object.literal("isMuted", "true") }
        object.close(into: &out)
    }

    /// A node DB entry as a value: what ``writeNode(_:to:)`` writes.
    public static func node(_ node: Meshtastic_NodeInfo) -> JSONValue {
        var bytes: [UInt8] = []
        writeNode(node, to: &bytes)
        return (try? JSONValue(parsing: bytes)) ?? .object(JSONObject())
    }

    /// A position's protobuf JSON with the degrees the Python library adds.
    private static func writePosition(_ position: Meshtastic_Position, to out: inout [UInt8]) {
        guard let json: [UInt8] = try? position.jsonUTF8Bytes(), json.count >= 2 else {
            out.append(contentsOf: "{}".utf8)
            return
        }
        out.append(contentsOf: json.dropLast())
        var empty = json.count == 2
        for (key, value) in [("latitude", position.hasLatitudeI ? position.latitudeI : nil), ("longitude", position.hasLongitudeI ? position.longitudeI : nil)] {
            guard let value else { continue }
            if !empty { out.append(UInt8(ascii: ",")) }
            empty = false
            JSONValue.writeString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            degrees(value).write(to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }
}

extension ObjectWriter {
    /// A sub-message in protobuf's canonical JSON.
    mutating func message(_ key: StaticString, _ message: some SwiftProtobuf.Message) {
        self.key(key)
        if let json: [UInt8] = try? message.jsonUTF8Bytes() { out.append(contentsOf: json) } else { out.append(contentsOf: "{}".utf8) }
    }
}
