import ArgumentParser
import Broker
import MeshBusModel
import MeshtasticProtocol
import ZeroMQ

struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print the broker's events, one line each."
    )

    @Argument(help: "Topic prefix to subscribe to, e.g. meshtastic.receive/sim.")
    var prefix = ""

    @Option(help: "The broker's PUB endpoint.")
    var events = BrokerConfiguration.defaultEventEndpoint

    @Flag(help: "Print each envelope as JSON.")
    var json = false

    @Option(help: "Stop after this many events (0: never).")
    var count = 0

    func run() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context: context, type: .sub)
        try socket.setLinger(milliseconds: 0)
        try socket.connect(events)
        try socket.subscribe(prefix)
        var seen = 0
        while count == 0 || seen < count {
            guard let frames = try socket.receiveMultipart(), frames.count >= 2 else { continue }
            seen += 1
            let topic = String(decoding: frames[0], as: UTF8.self)
            if json {
                say(String(decoding: frames[1], as: UTF8.self))
                continue
            }
            let envelope = (try? JSONValue(parsing: frames[1])) ?? .null
            say("\(topic) seq=\(envelope["seq"]?.int64Value ?? 0) \(Self.summary(of: envelope))")
        }
    }

    /// A few words on what an event says.
    static func summary(of envelope: JSONValue) -> String {
        if let packet = envelope["packet"] {
            let from = packet["fromId"]?.stringValue ?? "?"
            let to = packet["toId"]?.stringValue ?? "?"
            let decoded = packet["decoded"]
            let detail: String
            if let text = decoded?["text"]?.stringValue {
                detail = "text \"\(text)\""
            } else if let position = decoded?["position"], let lat = position["latitude"]?.doubleValue, let lon = position["longitude"]?.doubleValue {
                detail = "position \(lat),\(lon)"
            } else if let port = decoded?["portnum"]?.stringValue {
                detail = port
            } else {
                detail = "encrypted"
            }
            return "\(from) -> \(to) \(detail)"
        }
        if let node = envelope["node"] {
            return "node \(node["user"]?["id"]?.stringValue ?? String(node["num"]?.int64Value ?? 0)) \(node["user"]?["longName"]?.stringValue ?? "")"
        }
        for key in ["state", "reason", "line"] {
            if let value = envelope[key]?.stringValue { return "\(key)=\(value)" }
        }
        if let firmware = envelope["firmware"]?.stringValue {
            return "myNodeNum=\(envelope["myNodeNum"]?.int64Value ?? 0) firmware=\(firmware) nodes=\(envelope["nodeCount"]?.int64Value ?? 0)"
        }
        return ""
    }
}

struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a text through the broker and print its reply."
    )

    @Option(help: "Slot to send from.")
    var slot: String

    @Option(help: "The text (at most 233 bytes of UTF-8).")
    var text: String

    @Option(help: "Destination: ^all, !hex node id, or node number.")
    var to = "^all"

    @Option(help: "Channel index 0-7.")
    var channel = 0

    @Flag(help: "Ask for an ACK.")
    var wantAck = false

    @Option(help: "The broker's command endpoint.")
    var commands = BrokerConfiguration.defaultCommandEndpoint

    @Option(help: "Seconds to wait for the reply.")
    var timeout = 5.0

    func run() throws {
        let request: JSONValue = .object([
            "id": .string("cli"),
            "cmd": .string("sendText"),
            "slot": .string(slot),
            "text": .string(text),
            "to": .string(to),
            "channel": .int(channel),
            "wantAck": .bool(wantAck),
        ])
        let context = try ZMQContext()
        let socket = try ZMQSocket(context: context, type: .req)
        try socket.setLinger(milliseconds: 0)
        try socket.setReceiveTimeout(milliseconds: Int32(timeout * 1000))
        try socket.connect(commands)
        try socket.send(request.jsonBytes)
        guard let reply = try socket.receiveMultipart(), let body = reply.last else {
            throw ValidationError("no reply from \(commands) within \(timeout) s")
        }
        say(String(decoding: body, as: UTF8.self))
        if (try? JSONValue(parsing: body))?["ok"] != .bool(true) { throw ExitCode(1) }
    }
}
