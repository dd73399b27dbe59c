import Foundation
import MeshBusClient
import MeshBusModel

/// What the bridge knows about one mesh node: the broker's node DB entry plus the signal of
/// the last packet heard from it (the node DB has SNR but no RSSI).
struct NodeView: Equatable {
    var node: MeshBus.Node
    var rssi: Int?
    var packetSnr: Double?

    var id: String { node.id }
    var hex: String { String(node.id.dropFirst()) }
    var snr: Double? { node.snr ?? packetSnr }

    /// The retained state: flat keys that templates and dashboards read directly. Every key is
    /// always there, `null` while its value is unknown (an RSSI is learned only from a packet
    /// heard since the bridge started): a retained sensor config's `value_json.rssi` then
    /// renders `None`, which Home Assistant shows as unknown, instead of failing as undefined
    /// or showing a value from before a restart as fresh.
    var state: [String: Any] {
        var state: [String: Any] = ["id": id, "num": node.num]
        func put(_ key: String, _ value: Any?) { state[key] = value ?? NSNull() }
        put("longName", node.user?.longName)
        put("shortName", node.user?.shortName)
        put("hwModel", node.user?.hwModel)
        // Meshtastic reports 101 for "on external power".
        put("battery", node.deviceMetrics?.batteryLevel.map { min($0, 100) })
        put("powered", node.deviceMetrics?.batteryLevel.map { $0 > 100 })
        put("voltage", node.deviceMetrics?.voltage)
        put("snr", snr)
        put("rssi", rssi)
        put("lastHeard", node.lastHeard.map(Self.timestamp))
        put("hopsAway", node.hopsAway)
        put("latitude", node.position?.latitude)
        put("longitude", node.position?.longitude)
        put("altitude", node.position?.altitude)
        return state
    }

    /// What a Home Assistant device tracker reads from its attributes topic; nil without a fix.
    var position: [String: Any]? {
        guard let latitude = node.position?.latitude, let longitude = node.position?.longitude, latitude != 0 || longitude != 0 else { return nil }
        var position: [String: Any] = ["latitude": latitude, "longitude": longitude, "gps_accuracy": 10]
        position["altitude"] = node.position?.altitude
        return position
    }

    static func timestamp(_ seconds: Int) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
    }
}

/// Home Assistant MQTT discovery: the config messages that make each node a device with
/// sensors and a tracker, and each slot a device with a connectivity sensor and a text box.
struct HomeAssistantDiscovery {
    let topics: BridgeTopics
    let discoveryPrefix: String
    let version: String

    /// One sensor a node gets once it has the value.
    struct Sensor: Sendable {
        var key: String
        var name: String
        var field: String
        var deviceClass: String?
        var unit: String?
        var measurement: Bool
        var has: @Sendable (NodeView) -> Bool
    }

    static let sensors: [Sensor] = [
        Sensor(key: "battery", name: "Battery", field: "battery", deviceClass: "battery", unit: "%", measurement: true) { $0.node.deviceMetrics?.batteryLevel != nil },
        Sensor(key: "voltage", name: "Voltage", field: "voltage", deviceClass: "voltage", unit: "V", measurement: true) { $0.node.deviceMetrics?.voltage != nil },
        Sensor(key: "snr", name: "SNR", field: "snr", deviceClass: nil, unit: "dB", measurement: true) { $0.snr != nil },
        Sensor(key: "rssi", name: "RSSI", field: "rssi", deviceClass: "signal_strength", unit: "dBm", measurement: true) { $0.rssi != nil },
        Sensor(key: "last_heard", name: "Last heard", field: "lastHeard", deviceClass: "timestamp", unit: nil, measurement: false) { $0.node.lastHeard != nil },
    ]

    /// Config topic → payload for every entity the node has data for.
    func configs(slot: String, node: NodeView) -> [(topic: String, payload: [String: Any])] {
        let objectBase = "\(topics.objectID(slot: slot))_\(node.hex)"
        let device: [String: Any] = [
            "identifiers": [objectBase],
            "name": node.node.user?.longName ?? node.id,
            "manufacturer": "Meshtastic",
            "model": node.node.user?.hwModel ?? "Meshtastic node",
            "via_device": topics.objectID(slot: slot),
        ]
        var configs: [(String, [String: Any])] = []
        for sensor in Self.sensors where sensor.has(node) {
            var config = common(name: sensor.name, uniqueID: "\(objectBase)_\(sensor.key)", component: "sensor", device: device)
            config["state_topic"] = topics.node(slot: slot, id: node.id)
            config["value_template"] = "{{ value_json.\(sensor.field) }}"
            config["device_class"] = sensor.deviceClass
            config["unit_of_measurement"] = sensor.unit
            if sensor.measurement { config["state_class"] = "measurement" }
            configs.append(("\(discoveryPrefix)/sensor/\(objectBase)/\(sensor.key)/config", config))
        }
        if node.position != nil {
            var config = common(name: "Position", uniqueID: "\(objectBase)_position", component: "device_tracker", device: device)
            config["json_attributes_topic"] = topics.position(slot: slot, id: node.id)
            config["source_type"] = "gps"
            configs.append(("\(discoveryPrefix)/device_tracker/\(objectBase)/position/config", config))
        }
        return configs
    }

    /// The slot's own device: is its radio link up, and a text box that sends to the mesh.
    func configs(slot: String) -> [(topic: String, payload: [String: Any])] {
        let objectBase = topics.objectID(slot: slot)
        let device: [String: Any] = [
            "identifiers": [objectBase],
            "name": (["MeshBus", topics.site, slot].compactMap { $0 }).joined(separator: " "),
            "manufacturer": "MeshBus",
            "model": "MeshBus slot",
            "sw_version": version,
        ]
        var link = common(name: "Radio link", uniqueID: "\(objectBase)_link", component: "binary_sensor", device: device)
        link["state_topic"] = topics.link(slot: slot)
        link["device_class"] = "connectivity"
        link["value_template"] = "{{ 'ON' if value_json.ready else 'OFF' }}"
        link["payload_on"] = "ON"
        link["payload_off"] = "OFF"
        var send = common(name: "Send text", uniqueID: "\(objectBase)_send", component: "text", device: device)
        send["command_topic"] = topics.send(slot: slot)
        send["max"] = 200
        send["mode"] = "text"
        return [
            ("\(discoveryPrefix)/binary_sensor/\(objectBase)/link/config", link),
            ("\(discoveryPrefix)/text/\(objectBase)/send/config", send),
        ]
    }

    private func common(name: String, uniqueID: String, component: String, device: [String: Any]) -> [String: Any] {
        [
            "name": name,
            "unique_id": uniqueID,
            "default_entity_id": "\(component).\(uniqueID)",
            "availability_topic": topics.status,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            "origin": ["name": "MeshBus", "sw_version": version],
        ]
    }
}
