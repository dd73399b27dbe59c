import Foundation
import MeshtasticProtocol
@testable import SlotCore
import Testing

/// The node DB keeps the nodes changed last decoded and the rest encoded: a node must read
/// back the same, and report changes the same, whichever form it is in.
@Suite struct NodeStoreTests {
    static func info(_ num: UInt32, name: String, latitude: Int32) -> Meshtastic_NodeInfo {
        .with {
            $0.num = num
            $0.user = .with { user in
                user.id = NodeNumber.id(num)
                user.longName = name
                user.shortName = String(name.prefix(4))
                user.publicKey = Data(repeating: UInt8(truncatingIfNeeded: num), count: 32)
            }
            $0.position = .with { $0.latitudeI = latitude }
            $0.lastHeard = 1_800_000_000 + num
            $0.hopsAway = 2
        }
    }

    static func textPacket(from: UInt32, rxTime: UInt32) -> Meshtastic_MeshPacket {
        .with {
            $0.from = from
            $0.to = NodeNumber.broadcast
            $0.id = rxTime
            $0.rxTime = rxTime
            $0.rxSnr = 5.5
            $0.decoded = .with { $0.portnum = .textMessageApp; $0.payload = Data("hi".utf8) }
        }
    }

    @Test func everyNodeReadsBackAsMergedAndFoldedWhetherKeptDecodedOrNot() {
        var store = NodeStore()
        let count = UInt32(NodeStore.hotCapacity * 10)
        for num in 1...count {
            let created = store.merge(Self.info(num, name: "Node number \(num)", latitude: Int32(num) * 1000))
            #expect(created)
        }
        for num in stride(from: 1, through: count, by: 3) {
            let changed = store.fold(Self.textPacket(from: num, rxTime: 1_900_000_000 + num))
            #expect(changed)
        }
        #expect(store.count == Int(count))
        for num in 1...count {
            var expected = Self.info(num, name: "Node number \(num)", latitude: Int32(num) * 1000)
            if num % 3 == 1 {
                expected.lastHeard = 1_900_000_000 + num
                expected.snr = 5.5
            }
            #expect(store[num] == expected, "node \(num)")
        }
        #expect(store.all.map(\.num) == Array(1...count), "in the order first heard of")
    }

    @Test func nothingNewIsNoChangeForAQuietNodeToo() {
        var store = NodeStore()
        for num in UInt32(1)...200 { store.merge(Self.info(num, name: "n\(num)", latitude: 1)) }
        // Node 1 was cooled long ago; telling it the same again changes nothing.
        let same = store.merge(Self.info(1, name: "n1", latitude: 1))
        let moved = store.merge(Self.info(1, name: "n1", latitude: 2))
        #expect(!same)
        #expect(moved)
        #expect(store[1]?.position.latitudeI == 2)
        let heard = store.fold(Self.textPacket(from: 150, rxTime: 1_900_000_000))
        let heardAgain = store.fold(Self.textPacket(from: 150, rxTime: 1_900_000_000))
        #expect(heard)
        #expect(!heardAgain)
    }

    @Test func theTableRendersEveryNodeByID() {
        var store = NodeStore()
        for num in UInt32(1)...100 { store.merge(Self.info(num, name: "n\(num)", latitude: 1)) }
        let table = store.table.objectValue
        #expect(table?.entries.count == 100)
        #expect(table?[NodeNumber.id(7)]?["user"]?["longName"]?.stringValue == "n7")
    }
}
