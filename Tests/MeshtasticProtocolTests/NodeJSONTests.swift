import Foundation
import MeshBusModel
@testable import MeshtasticProtocol
import Testing

/// The node DB entry's JSON, written by hand around swift-protobuf's sub-messages, checked
/// against protobuf's canonical JSON of the whole `NodeInfo` plus what the Python library adds.
@Suite struct NodeJSONTests {
    /// What the node must read as: protobuf's JSON, `num` always there, and `latitude` and
    /// `longitude` beside the position's integers (the library's `_fixupPosition`).
    static func reference(_ node: Meshtastic_NodeInfo) -> JSONValue {
        var object = PacketJSON.message(node).objectValue ?? JSONObject()
        if object["num"] == nil { object["num"] = .int(node.num) }
        if node.hasPosition, var position = object["position"]?.objectValue {
            if node.position.hasLatitudeI { position["latitude"] = PacketJSON.degrees(node.position.latitudeI) }
            if node.position.hasLongitudeI { position["longitude"] = PacketJSON.degrees(node.position.longitudeI) }
            object["position"] = .object(position)
        }
        return .object(object)
    }

    static func randomNode(_ random: inout SeededGenerator) -> Meshtastic_NodeInfo {
        func coin() -> Bool { Bool.random(using: &random) }
        var node = Meshtastic_NodeInfo()
        if coin() { node.num = UInt32.random(in: 0...UInt32.max, using: &random) }
        if coin() {
            node.user = .with {
                $0.id = NodeNumber.id(UInt32.random(in: 1...UInt32.max, using: &random))
                $0.longName = ["Roof", "quote \" and \\", "", "☀ sun"].randomElement(using: &random)!
                if Bool.random(using: &random) { $0.hwModel = .heltecV3 }
            }
        }
        if coin() {
            node.position = .with {
                if Bool.random(using: &random) { $0.latitudeI = Int32.random(in: -900_000_000...900_000_000, using: &random) }
                if Bool.random(using: &random) { $0.longitudeI = [0, Int32.random(in: -1_800_000_000...1_800_000_000, using: &random)].randomElement(using: &random)! }
                if Bool.random(using: &random) { $0.altitude = Int32.random(in: -10...4000, using: &random) }
            }
        }
        if coin() { node.snr = [Float(6.25), -12.5, 0.1, 7, -0.0, .nan, .infinity].randomElement(using: &random)! }
        if coin() { node.lastHeard = UInt32.random(in: 0...UInt32.max, using: &random) }
        if coin() {
            node.deviceMetrics = .with {
                $0.batteryLevel = UInt32.random(in: 0...101, using: &random)
                if Bool.random(using: &random) { $0.voltage = Float.random(in: 3...4.2, using: &random) }
            }
        }
        if coin() { node.channel = UInt32.random(in: 0...7, using: &random) }
        node.viaMqtt = coin()
        if coin() { node.hopsAway = UInt32.random(in: 0...7, using: &random) }
        node.isFavorite = coin()
        node.isIgnored = coin()
        node.isKeyManuallyVerified = coin()
        node.isMuted = coin()
        return node
    }

    /// Should write exactly protobuf's JSON with the library's additions, for any node.
    @Test func nodeJSONMatchesProtobufJSONOverRandomNodes() throws {
        var random = SeededGenerator(seed: 12)
        for _ in 0..<2000 {
            let node = Self.randomNode(&random)
            var bytes: [UInt8] = []
            PacketJSON.writeNode(node, to: &bytes)
            #expect(try JSONValue(parsing: bytes) == Self.reference(node), "\(node)")
            #expect(PacketJSONTests.keysAreUnique(bytes))
        }
    }

    /// Should add the degrees the Python library computes from the 1e-7 integers.
    @Test func positionCarriesDegrees() {
        let node = PacketJSON.node(.with {
            $0.num = 1
            $0.position = .with { $0.latitudeI = 515_000_000; $0.longitudeI = -1_000_000 }
        })
        #expect(node["position"]?["latitude"] == .number("51.5"))
        #expect(node["position"]?["longitude"] == .number("-0.1"))
        #expect(node["position"]?["latitudeI"] == .int(515_000_000))
    }

    /// Should write a node number of 0 (protobuf leaves it out) and an empty user as `{}`.
    @Test func numIsAlwaysWrittenAndEmptySubMessagesStay() {
        let node = PacketJSON.node(.with { $0.user = Meshtastic_User() })
        #expect(node["num"] == .int(0))
        #expect(node["user"] == .object(JSONObject()))
    }
}
