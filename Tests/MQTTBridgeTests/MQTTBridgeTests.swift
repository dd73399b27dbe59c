import Foundation
import MeshBusClient
import MeshBusModel
import Testing

@testable import MQTTBridge

/// An event as the broker would publish it, from the envelope's topic fields.
private func event(_ routingTopic: String, _ fields: String, seq: UInt64 = 5) -> MeshBusEvent {
    let topic = String(routingTopic.split(separator: "/")[0])
    let json = #"{"schema":1,"broker":"b1","slot":"sim","topic":"\#(topic)","seq":\#(seq),"time":"2026-11-23T10:00:00.000Z",\#(fields)}"#
    return MeshBusEvent(routingTopic: routingTopic, json: Data(json.utf8))!
}

private func decode<T: Decodable>(_ type: T.Type, _ json: String) -> T {
    try! JSONDecoder().decode(type, from: Data(json.utf8))
}

private let nodeJSON = #"""
    {"num": 364274076, "user": {"id": "!15b6619c", "longName": "Roof", "shortName": "RF", "hwModel": "RAK4631"},
     "position": {"latitudeI": 474864144, "longitudeI": 84672168, "altitude": 410}, "snr": 6.25,
     "lastHeard": 1795445628, "deviceMetrics": {"batteryLevel": 82, "voltage": 3.7}}
    """#
private let node = decode(MeshBus.Node.self, nodeJSON)

struct BridgeTopicsTests {
    let topics = BridgeTopics()

    @Test func eventTopicPutsTheSlotFirstAndKeepsThePort() {
        #expect(topics.event(routingTopic: "meshtastic.receive/sim/TEXT_MESSAGE_APP") == "meshbus/sim/meshtastic.receive/TEXT_MESSAGE_APP")
        #expect(topics.event(routingTopic: "meshtastic.sent/sim") == "meshbus/sim/meshtastic.sent")
        #expect(topics.event(routingTopic: "meshtastic.connection.lost/roof") == "meshbus/roof/meshtastic.connection.lost")
        #expect(topics.event(routingTopic: "nonsense") == nil)
    }

    @Test func sendTopicNamesItsSlotEvenUnderADeepPrefix() {
        #expect(topics.slot(ofSend: "meshbus/roof/send") == "roof")
        #expect(topics.slot(ofSend: "meshbus/roof/send/reply") == nil)
        #expect(topics.slot(ofSend: "other/roof/send") == nil)
        let deep = BridgeTopics(prefix: "site/a/meshbus")
        #expect(deep.slot(ofSend: "site/a/meshbus/desk/send") == "desk")
        #expect(deep.sendFilter == "site/a/meshbus/+/send")
    }

    @Test func aSitePutsEveryTopicAndIdUnderItsName() {
        let north = BridgeTopics(site: "north")
        #expect(north.status == "meshbus/north/status")
        #expect(north.node(slot: "sim", id: "!15b6619c") == "meshbus/north/sim/node/!15b6619c")
        #expect(north.event(routingTopic: "meshtastic.sent/sim") == "meshbus/north/sim/meshtastic.sent")
        #expect(north.slot(ofSend: "meshbus/north/sim/send") == "sim")
        #expect(north.slot(ofSend: "meshbus/south/sim/send") == nil, "another site's command topic")
        #expect(north.objectID(slot: "sim") == "meshbus_north_sim")
        let discovery = HomeAssistantDiscovery(topics: north, discoveryPrefix: "homeassistant", version: "0.1.0")
        let topics = discovery.configs(slot: "sim", node: NodeView(node: node, rssi: -97)).map(\.topic)
        #expect(topics.contains("homeassistant/sensor/meshbus_north_sim_15b6619c/rssi/config"))
    }
}

struct HomeAssistantDiscoveryTests {
    let discovery = HomeAssistantDiscovery(topics: BridgeTopics(), discoveryPrefix: "homeassistant", version: "0.1.0")

    @Test func aNodeGetsSensorsOnlyForWhatItReports() {
        var bare = node
        bare.deviceMetrics = nil
        bare.position = nil
        bare.snr = nil
        let topics = discovery.configs(slot: "sim", node: NodeView(node: bare)).map(\.topic)
        #expect(topics == ["homeassistant/sensor/meshbus_sim_15b6619c/last_heard/config"])

        let full = discovery.configs(slot: "sim", node: NodeView(node: node, rssi: -97)).map(\.topic)
        #expect(full.count == 6)
        #expect(full.contains("homeassistant/sensor/meshbus_sim_15b6619c/rssi/config"))
        #expect(full.contains("homeassistant/device_tracker/meshbus_sim_15b6619c/position/config"))
    }

    @Test func configsCarryUniqueIDsDeviceAndAvailability() throws {
        let configs = discovery.configs(slot: "sim", node: NodeView(node: node, rssi: -97)) + discovery.configs(slot: "sim")
        let ids = configs.compactMap { $0.payload["unique_id"] as? String }
        #expect(ids.count == configs.count)
        #expect(Set(ids).count == ids.count)
        for (_, payload) in configs {
            #expect(payload["availability_topic"] as? String == "meshbus/status")
            let device = try #require(payload["device"] as? [String: Any])
            #expect((device["identifiers"] as? [String])?.isEmpty == false)
            #expect(JSONSerialization.isValidJSONObject(payload))
        }
        let battery = try #require(configs.first { ($0.payload["unique_id"] as? String) == "meshbus_sim_15b6619c_battery" }?.payload)
        #expect(battery["state_topic"] as? String == "meshbus/sim/node/!15b6619c")
        #expect(battery["value_template"] as? String == "{{ value_json.battery }}")
        #expect((battery["device"] as? [String: Any])?["via_device"] as? String == "meshbus_sim")
        let text = try #require(configs.first { ($0.payload["unique_id"] as? String) == "meshbus_sim_send" }?.payload)
        #expect(text["command_topic"] as? String == "meshbus/sim/send")
    }

    @Test func nodeStateIsFlatWithDegreesAndAnISOTimestamp() {
        let state = NodeView(node: node, rssi: -97).state
        #expect(state["battery"] as? Int == 82)
        #expect(state["rssi"] as? Int == -97)
        #expect(state["lastHeard"] as? String == "2026-11-23T14:53:48Z")
        #expect(abs((state["latitude"] as? Double ?? 0) - 47.4864144) < 1e-9)
        #expect(NodeView(node: node).position?["gps_accuracy"] != nil)
    }
}

struct SlotViewTests {
    func view() -> SlotView {
        SlotView(snapshot: decode(MeshBus.Snapshot.self, #"{"seq": 4, "state": "ready", "myInfo": {"myNodeNum": 1}, "nodes": {"!15b6619c": \#(nodeJSON)}}"#))
    }

    @Test func linkFollowsLossAndReturn() {
        var slot = view()
        #expect(slot.link.ready)
        #expect(slot.apply(event("meshtastic.connection.lost/sim", #""reason":"probe_strikes""#)) != nil)
        #expect(!slot.link.ready)
        #expect(slot.link.reason == "probe_strikes")
        #expect(slot.apply(event("meshtastic.connection.state/sim", #""state":"backoff","previous":"ready""#)) != nil)
        #expect(slot.link.reason == "probe_strikes", "the reason stays while the link is down")
        #expect(slot.apply(event("meshtastic.connection.established/sim", #""myNodeNum":1,"nodeCount":3,"attempt":2"#)) != nil)
        #expect(slot.link.ready)
        #expect(slot.link.reason == nil)
    }

    @Test func aPacketUpdatesItsSendersSignalOnlyWhenItChanges() {
        var slot = view()
        let packet = #""packet":{"from":364274076,"id":9,"rxSnr":-3.5,"rxRssi":-101,"decoded":{"portnum":"TEXT_MESSAGE_APP","text":"hi"}}"#
        #expect(slot.apply(event("meshtastic.receive/sim/TEXT_MESSAGE_APP", packet)) != nil)
        #expect(slot.nodes[0x15b6_619c]?.rssi == -101)
        #expect(slot.apply(event("meshtastic.receive/sim/TEXT_MESSAGE_APP", packet, seq: 6)) == nil)
        let stranger = #""packet":{"from":7,"id":10,"rxRssi":-90,"decoded":{"portnum":"TEXT_MESSAGE_APP"}}"#
        #expect(slot.apply(event("meshtastic.receive/sim/TEXT_MESSAGE_APP", stranger)) == nil)
    }

    @Test func aNewSnapshotKeepsTheSignalOfLastPacketsAndTheReasonOfALoss() {
        var old = view()
        _ = old.apply(event("meshtastic.receive/sim/TEXT_MESSAGE_APP", #""packet":{"from":364274076,"id":9,"rxRssi":-101}"#))
        _ = old.apply(event("meshtastic.connection.lost/sim", #""reason":"probe_strikes""#))
        var fresh = SlotView(snapshot: decode(MeshBus.Snapshot.self, #"{"seq": 9, "state": "backoff", "nodes": {"!15b6619c": \#(nodeJSON)}}"#))
        fresh.keepSignals(of: old)
        #expect(fresh.nodes[0x15b6_619c]?.rssi == -101, "an announced RSSI sensor keeps a value")
        #expect(fresh.link.reason == "probe_strikes")
        #expect(NodeView(node: decode(MeshBus.Node.self, #"{"num": 5, "deviceMetrics": {"batteryLevel": 101}}"#)).state["battery"] as? Int == 100)
    }

    @Test func everyStateKeyIsThereAndNullWhileUnknown() {
        let state = NodeView(node: decode(MeshBus.Node.self, #"{"num": 5}"#)).state
        let keys = ["longName", "shortName", "hwModel", "battery", "powered", "voltage", "snr", "rssi", "lastHeard", "hopsAway", "latitude", "longitude", "altitude"]
        for key in keys { #expect(state[key] is NSNull, "\(key) is null, not missing, so a retained template never meets an undefined key") }
        #expect(Set(HomeAssistantDiscovery.sensors.map(\.field)).isSubset(of: Set(state.keys)), "every sensor's field is a state key")
    }
}
