import MeshBusModel
import struct Foundation.Data
import SwiftProtobuf

/// Turns radio messages into the JSON that consumers of the Python `meshtastic` library know.
///
/// The base is protobuf's canonical JSON mapping (what the Python library's `MessageToDict`
/// produces: lowerCamelCase keys, defaults omitted, enum names, 64-bit integers as strings,
/// bytes as base64). On top come the keys the Python library adds: `fromId`, `toId`, `from`
/// and `to` even when 0, `decoded.portnum` even when `UNKNOWN_APP`, and per known port the
/// decoded payload (`text`, `position` with `latitude`/`longitude`, `user`, `telemetry`,
/// `routing`, …). The Python-only `raw` objects have no JSON form and are left out.
public enum PacketJSON {
    /// The packet as a JSON object: what ``write(_:to:)`` writes, as a value.
    public static func packet(_ packet: Meshtastic_MeshPacket) -> JSONValue {
        var bytes: [UInt8] = []
        write(packet, to: &bytes)
        return (try? JSONValue(parsing: bytes)) ?? .object(JSONObject())
    }

    /// The name of a packet's port (`TEXT_MESSAGE_APP`), its number for a port this build
    /// does not know, or `ENCRYPTED` for a packet that carries no decoded payload.
    public static func portName(_ packet: Meshtastic_MeshPacket) -> String {
        guard case .decoded(let data)? = packet.payloadVariant else { return "ENCRYPTED" }
        return portName(data.portnum)
    }

    public static func portName(_ port: Meshtastic_PortNum) -> String {
        if let name = EnumNames.ports[port.rawValue] { return name }
        return port.rawValue == 0 ? "UNKNOWN_APP" : String(port.rawValue)
    }

    /// Parses a port given by name (`TEXT_MESSAGE_APP`) or number.
    public static func port(named text: String) -> Meshtastic_PortNum? {
        if let number = Int(text) { return (0...511).contains(number) ? Meshtastic_PortNum(rawValue: number) : nil }
        let json = "{\"portnum\":\"\(text.filter { $0.isLetter || $0.isNumber || $0 == "_" })\"}"
        return (try? Meshtastic_Data(jsonString: json))?.portnum
    }

    /// Any protobuf message in canonical JSON form.
    public static func message(_ message: some SwiftProtobuf.Message) -> JSONValue {
        guard let bytes: [UInt8] = try? message.jsonUTF8Bytes(), let value = try? JSONValue(parsing: bytes) else {
            return .object(JSONObject())
        }
        return value
    }

    /// The keys the Python library adds to `decoded` for the ports it knows.
    static func decodedPayload(_ data: Meshtastic_Data) -> [(key: String, value: JSONValue)] {
        switch data.portnum {
        case .textMessageApp, .rangeTestApp, .detectionSensorApp:
            // Like the Python library: invalid UTF-8 leaves `text` out, the payload stays.
            guard let text = String(validating: data.payload, as: UTF8.self) else { return [] }
            return [("text", .string(text))]
        case .positionApp:
            return decode(Meshtastic_Position.self, data.payload, as: "position") { position, object in
                if position.hasLatitudeI { object["latitude"] = degrees(position.latitudeI) }
                if position.hasLongitudeI { object["longitude"] = degrees(position.longitudeI) }
            }
        case .nodeinfoApp: return decode(Meshtastic_User.self, data.payload, as: "user")
        case .routingApp: return decode(Meshtastic_Routing.self, data.payload, as: "routing")
        case .telemetryApp: return decode(Meshtastic_Telemetry.self, data.payload, as: "telemetry")
        case .adminApp: return decode(Meshtastic_AdminMessage.self, data.payload, as: "admin")
        case .tracerouteApp: return decode(Meshtastic_RouteDiscovery.self, data.payload, as: "traceroute")
        case .neighborinfoApp: return decode(Meshtastic_NeighborInfo.self, data.payload, as: "neighborinfo")
        case .waypointApp: return decode(Meshtastic_Waypoint.self, data.payload, as: "waypoint")
        case .storeForwardApp: return decode(Meshtastic_StoreAndForward.self, data.payload, as: "storeforward")
        case .paxcounterApp: return decode(Meshtastic_Paxcount.self, data.payload, as: "paxcounter")
        case .remoteHardwareApp: return decode(Meshtastic_HardwareMessage.self, data.payload, as: "remotehw")
        case .mapReportApp: return decode(Meshtastic_MapReport.self, data.payload, as: "mapreport")
        default: return []
        }
    }

    private static func decode<M: SwiftProtobuf.Message>(
        _ type: M.Type,
        _ payload: Data,
        as key: String,
        fixup: (M, inout JSONObject) -> Void = { _, _ in }
    ) -> [(key: String, value: JSONValue)] {
        guard let decoded = try? M(serializedBytes: payload), var object = message(decoded).objectValue else {
            return []
        }
        fixup(decoded, &object)
        return [(key, .object(object))]
    }

    /// `latitudeI × 1e-7` computed the way the Python library does: the exact decimal value,
    /// rounded once to the nearest double.
    static func degrees(_ value: Int32) -> JSONValue {
        .double(Double("\(value)e-7") ?? Double(value) * 1e-7)
    }
}
