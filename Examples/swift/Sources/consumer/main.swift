// A MeshBus consumer that never misses an event, in Swift.
//
// `MeshBusFeed` does the contract's work: subscribe, snapshot each slot, apply events with a
// greater `seq`, replay a jump, snapshot again after a broker restart. This program keeps each
// slot's node DB and prints what changes, the same lines as the Python and Go examples.
//
//     swift run consumer --events tcp://127.0.0.1:7710 --commands tcp://127.0.0.1:7711
import Foundation
import MeshBusClient
import MeshBusModel
import Synchronization

struct Arguments {
    var events = "tcp://127.0.0.1:7710"
    var commands = "tcp://127.0.0.1:7711"
    /// Stop after this many events (0: run forever).
    var count = 0
    /// Throw away every Nth event as if it had been missed, to show the repair.
    var simulateGap = 0

    init(_ arguments: [String]) {
        var rest = arguments[...]
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { Self.usage("\(flag) needs a value") }
            switch flag {
            case "--events": events = value
            case "--commands": commands = value
            case "--count": count = Self.number(value, for: flag)
            case "--simulate-gap": simulateGap = Self.number(value, for: flag)
            default: Self.usage("unknown option \(flag)")
            }
        }
    }

    static func number(_ value: String, for flag: String) -> Int {
        guard let number = Int(value), number >= 0 else { usage("\(flag) takes a number, got '\(value)'") }
        return number
    }

    static func usage(_ problem: String) -> Never {
        FileHandle.standardError.write(Data("consumer: \(problem)\nusage: consumer [--events E] [--commands C] [--count N] [--simulate-gap N]\n".utf8))
        exit(2)
    }
}

/// Drops every `every`th event before the feed sees it (never, for 0).
final class GapSimulator: Sendable {
    private let seen = Mutex(0)
    private let every: Int

    init(every: Int) { self.every = every }

    func keep(_ event: MeshBusEvent) -> Bool {
        guard every > 0 else { return true }
        return seen.withLock { count in
            count += 1
            return count % every != 0
        }
    }
}

/// One line on stdout, unbuffered, so a reader sees it at once.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

let arguments = Arguments(Array(CommandLine.arguments.dropFirst()))
let client = try MeshBusClient(events: arguments.events, commands: arguments.commands)
let gaps = GapSimulator(every: arguments.simulateGap)
var nodes: [String: [String: MeshBus.Node]] = [:]
var applied = 0
var repairing = false

for await update in MeshBusFeed(client: client, events: client.events.filter { gaps.keep($0) }) {
    switch update {
    case .snapshot(let slot, let snapshot):
        nodes[slot] = snapshot.nodes
        say("snapshot \(slot): \(snapshot.nodes.count) nodes at seq \(snapshot.seq)")
    case .gap(let slot, let seq, let after):
        repairing = true
        say("gap \(slot): seq \(seq) after \(after), replaying \(seq - after - 1)")
    case .repaired(let slot, let seq):
        repairing = false
        say("repaired \(slot): now at seq \(seq)")
    case .resync(let slot, let reason):
        repairing = false
        say("\(reason): snapshot \(slot) again")
    case .event(let event):
        applied += 1
        switch event.kind {
        case .nodeUpdated(let node):
            nodes[event.slot, default: [:]][node.id] = node
            let battery = node.deviceMetrics?.batteryLevel.map { " battery \($0)%" } ?? ""
            say("node \(event.slot) \(node.id): \(node.user?.longName ?? "?")\(battery)")
        case .received(let packet, _) where packet.decoded?.portnum == "TEXT_MESSAGE_APP":
            say("text \(event.slot) \(packet.fromId ?? "?"): \(packet.decoded?.text ?? "")")
        default:
            break
        }
    }
    // Stop after --count events, but not in the middle of a repair.
    if arguments.count > 0, applied >= arguments.count, !repairing { break }
}
await client.close()
