import MeshBusModel
import MeshtasticProtocol

/// The simulator's control language: one JSON object per request, so that a test in any
/// language (through `meshbus sim --control`) can make the radio misbehave.
///
/// ```json
/// {"fault": "drop"}                      close the client's connection
/// {"fault": "reboot"}                    report rebooted, close, start afresh
/// {"fault": "offline", "seconds": 2}     refuse TCP / remove the serial device node
/// {"fault": "garbage", "bytes": 64}      random bytes on the line
/// {"fault": "stall", "on": true}         stop answering, keep the connection open
/// {"fault": "slow", "ms": 500}           answer every request this late (0 ends it)
/// {"fault": "withholdConfigComplete", "on": true}
/// {"fault": "ignoreHeartbeats", "on": true}
/// {"fault": "clear"}                     end every standing fault
/// {"emit": "text"}                       a virtual node sends now (text, position, telemetry, nodeInfo)
/// {"emit": "text", "text": "ping"}       a virtual node sends this text
/// {"emit": "repeat"}                     the last emitted packet is heard again
/// {"load": 100000, "rate": 10000}        benchmark load: texts `bench <seq> <unix ns>` (rate 0: flat out)
/// {"loadStatus": true}                   only report (every reply carries `load` progress)
/// ```
/// The reply is `{"ok": true, "faults": {...}, "texts": [...], "packetIds": [...]}` with the
/// standing faults, the last texts a client sent to the radio and the ids of the last 64
/// packets (of any port) it sent, or `{"ok": false, "error": "..."}` naming what
/// was wrong.
extension RadioSimulator {
    public func control(_ request: JSONValue) -> JSONValue {
        do {
            try apply(request)
            let faults = self.faults
            let load = loadProgress
            return .object([
                "ok": .bool(true),
                "load": .object([
                    "count": .int(Int64(load.count)), "emitted": .int(Int64(load.emitted)),
                    "seconds": .double(load.seconds), "done": .bool(load.done),
                ]),
                "faults": .object([
                    "stalled": .bool(faults.stalled),
                    "answerDelayMs": .int(faults.answerDelay.components.seconds * 1000 + faults.answerDelay.components.attoseconds / 1_000_000_000_000_000),
                    "withholdConfigComplete": .bool(faults.withholdConfigComplete),
                    "ignoreHeartbeats": .bool(faults.ignoreHeartbeats),
                ]),
                "texts": .array(receivedTexts.map(JSONValue.string)),
                "packetIds": .array(receivedPackets.suffix(64).map { .int(Int64($0.id)) }),
            ])
        } catch {
            return .object(["ok": .bool(false), "error": .string(error.message)])
        }
    }

    /// The payloads of the last texts clients sent, oldest first (at most 16).
    var receivedTexts: [String] {
        receivedPackets.filter { $0.decoded.portnum == .textMessageApp }.suffix(16).map { String(decoding: $0.decoded.payload, as: UTF8.self) }
    }

    struct ControlError: Error {
        let message: String
    }

    private func apply(_ request: JSONValue) throws(ControlError) {
        guard let object = request.objectValue else { throw ControlError(message: "request must be a JSON object") }
        if object["loadStatus"] != nil { return }
        if let count = object["load"] {
            guard let count = count.int64Value, (1...100_000_000).contains(count) else { throw ControlError(message: "'load' must be a count from 1 to 100000000") }
            let rate = object["rate"]?.doubleValue ?? 0
            guard rate >= 0 else { throw ControlError(message: "'rate' must be 0 (flat out) or packets per second") }
            guard startLoad(count: Int(count), rate: rate) else { throw ControlError(message: "no client connected to load") }
            return
        }
        if object["emit"]?.stringValue == "repeat" {
            guard repeatLast() != nil else { throw ControlError(message: "nothing emitted yet to repeat") }
            return
        }
        if let kind = object["emit"] {
            let kinds: [String: VirtualMesh.TrafficKind] = ["text": .text, "position": .position, "telemetry": .telemetry, "nodeInfo": .nodeInfo]
            guard let name = kind.stringValue, let traffic = kinds[name] else {
                throw ControlError(message: "'emit' must be one of \(kinds.keys.sorted().joined(separator: ", ")), repeat")
            }
            if let text = object["text"] {
                guard traffic == .text, let words = text.stringValue else { throw ControlError(message: "'text' must be a string, with 'emit': 'text'") }
                emit(traffic, text: words)
            } else {
                emit(traffic)
            }
            return
        }
        guard let fault = object["fault"]?.stringValue else { throw ControlError(message: "missing 'fault' (or 'emit')") }
        let on = object["on"]?.boolValue ?? true
        switch fault {
        case "drop": dropClient()
        case "reboot": reboot()
        case "offline":
            guard let seconds = object["seconds"]?.doubleValue, seconds >= 0, seconds <= 3600 else {
                throw ControlError(message: "'offline' needs 'seconds' from 0 to 3600")
            }
            goOffline(for: .milliseconds(Int64(seconds * 1000)))
        case "garbage":
            let count = object["bytes"]?.int64Value ?? 64
            guard (1...65536).contains(count) else { throw ControlError(message: "'bytes' must be from 1 to 65536") }
            sendGarbage((0..<count).map { _ in UInt8.random(in: 0...255) })
        case "stall": faults.stalled = on
        case "slow":
            guard let milliseconds = object["ms"]?.int64Value, (0...600_000).contains(milliseconds) else {
                throw ControlError(message: "'slow' needs 'ms' from 0 to 600000")
            }
            faults.answerDelay = .milliseconds(milliseconds)
        case "withholdConfigComplete": faults.withholdConfigComplete = on
        case "ignoreHeartbeats": faults.ignoreHeartbeats = on
        case "clear": faults = SimulatorFaults()
        default:
            throw ControlError(
                message: "unknown fault '\(fault)'; faults: drop, reboot, offline, garbage, stall, slow, withholdConfigComplete, ignoreHeartbeats, clear"
            )
        }
    }
}
