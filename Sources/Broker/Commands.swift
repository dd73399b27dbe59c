import MeshBusModel
import MeshtasticProtocol

import struct Foundation.Data

/// A command error as clients see it: a stable code and a message naming the field or slot.
public struct CommandError: Error, Equatable, Sendable {
    public let code: String
    public let message: String

    public static func badRequest(_ message: String) -> CommandError { CommandError(code: "bad_request", message: message) }
    public static func unknownCommand(_ name: String) -> CommandError {
        CommandError(code: "unknown_command", message: "unknown command '\(name)'; commands: \(Command.names.joined(separator: ", "))")
    }
    public static func unknownSlot(_ name: String, known: [String]) -> CommandError {
        CommandError(code: "unknown_slot", message: "no slot named '\(name)'; slots: \(known.joined(separator: ", "))")
    }
    public static func notReady(_ slot: String, state: String) -> CommandError {
        CommandError(code: "not_ready", message: "slot '\(slot)' is \(state), not ready")
    }
    public static func textTooLong(bytes: Int) -> CommandError {
        CommandError(
            code: "text_too_long",
            message: "field 'text' is \(bytes) bytes in UTF-8; the limit is \(MeshtasticLimits.maxPayloadLength)"
        )
    }
    public static func gapTooOld(_ slot: String, sinceSeq: UInt64, oldest: UInt64) -> CommandError {
        CommandError(
            code: "gap_too_old",
            message: "slot '\(slot)' holds events from seq \(oldest) on; \(sinceSeq + 1)…\(oldest - 1) are gone (take a snapshot)"
        )
    }
    public static func internalError(_ message: String) -> CommandError { CommandError(code: "internal", message: message) }
    public static let unauthorized = CommandError(
        code: "unauthorized",
        message: "this client's key has the read role: ping, status, nodes, snapshot and replay only, nothing that reaches a radio"
    )
    public static func queueFull(_ slot: String, capacity: Int) -> CommandError {
        CommandError(code: "queue_full", message: "the outbox of slot '\(slot)' is full (\(capacity) packets)")
    }
    public static func journalFailed(_ slot: String, reason: String) -> CommandError {
        CommandError(code: "journal_failed", message: "slot '\(slot)' could not record the send in its journal (\(reason)); it was not accepted")
    }
}

/// What a client asked for, parsed and checked.
public enum Command: Equatable, Sendable {
    case ping
    case status(slot: String?)
    /// The slot's node DB.
    case nodes(slot: String)
    /// Node DB, my node info, channels and config, with the `seq` they are current at.
    case snapshot(slot: String)
    /// The slot's events after `sinceSeq` still held, at most `limit`.
    case replay(slot: String, sinceSeq: UInt64, limit: Int)
    /// `sendText` or `sendData`.
    case send(Send)
    /// Forces a reconnect cycle of the slot (or ends a `disconnectForRestart` hold).
    case reconnect(slot: String)
    /// Closes the slot's radio cleanly and holds it closed until `reconnect`.
    case disconnectForRestart(slot: String, settleSeconds: Double)

    /// Whether the command acts on a radio (needs the `send` role under CURVE).
    public var reachesRadio: Bool {
        switch self {
        case .ping, .status, .nodes, .snapshot, .replay: false
        case .send, .reconnect, .disconnectForRestart: true
        }
    }

    /// Every command this build answers, with the fields each accepts besides `id` and `cmd`.
    /// A field not listed is refused (`bad_request` naming it), so a typo never passes silently.
    public static let fields: KeyValuePairs<String, [String]> = [
        "ping": [],
        "status": ["slot"],
        "nodes": ["slot"],
        "snapshot": ["slot"],
        "replay": ["slot", "sinceSeq", "limit"],
        "sendText": ["slot", "text"] + Command.sendOptions,
        "sendData": ["slot", "portnum", "payload"] + Command.sendOptions,
        "reconnect": ["slot"],
        "disconnectForRestart": ["slot", "settleSeconds"],
    ]

    static let sendOptions = ["to", "channel", "wantAck", "hopLimit", "replyId", "ttlSeconds", "requireReady"]

    /// Every command name.
    public static var names: [String] { fields.map(\.key) }

    /// Most events one `replay` returns; ask again from the last `seq` for more.
    public static let replayLimit = 1000

    /// The arguments of `sendText` and `sendData`, with defaults applied.
    public struct Send: Equatable, Sendable {
        public var slot: String
        public var portnum: Meshtastic_PortNum
        public var payload: [UInt8]
        public var to: UInt32 = NodeNumber.broadcast
        public var channel: UInt32 = 0
        public var wantAck = false
        public var hopLimit: UInt32 = 0
        public var replyID: UInt32 = 0
        public var ttlSeconds: Double = 60
        public var requireReady = false
    }
}

/// A request: the client's own `id` (echoed in the reply) and the command.
public struct CommandEnvelope: Sendable {
    /// The request's `id`, whatever JSON value it was; nil if absent or the body was not an object.
    public var id: JSONValue?
    public var command: Result<Command, CommandError>

    /// The largest request answered; a larger one gets `bad_request`.
    public static let maxRequestBytes = 65_536
    /// The largest message the command socket takes at all (libzmq drops the peer beyond).
    public static let maxSocketMessageBytes: Int64 = 4 << 20

    /// Parses a request given as its body frames (one, in a well-formed request).
    public init(parsing frames: [[UInt8]]) {
        guard frames.count == 1, let body = frames.first else {
            self.init(failure: .badRequest(frames.isEmpty ? "empty request: no body frame" : "a request is one frame; got \(frames.count)"))
            return
        }
        self.init(parsing: body)
    }

    private init(failure: CommandError) {
        self.init(id: nil, command: .failure(failure))
    }

    private init(id: JSONValue?, command: Result<Command, CommandError>) {
        self.id = id
        self.command = command
    }

    /// Parses a request body. Never throws: every problem becomes a ``CommandError``.
    public init(parsing body: [UInt8]) {
        guard !body.isEmpty else {
            self.init(failure: .badRequest("empty request"))
            return
        }
        guard body.count <= Self.maxRequestBytes else {
            self.init(failure: .badRequest("request is \(body.count) bytes; the limit is \(Self.maxRequestBytes)"))
            return
        }
        let value: JSONValue
        do {
            value = try JSONValue(parsing: body)
        } catch {
            self.init(failure: .badRequest("request is not JSON: \(error)"))
            return
        }
        guard case .object(let object) = value else {
            self.init(failure: .badRequest("request must be a JSON object, got \(value.typeName)"))
            return
        }
        self.init(id: object["id"], command: Result { () throws(CommandError) -> Command in try Self.command(from: Fields(object)) })
    }

    static func command(from fields: Fields) throws(CommandError) -> Command {
        let name = try fields.requiredString("cmd")
        guard let accepted = Command.fields.first(where: { $0.key == name })?.value else { throw .unknownCommand(name) }
        for key in fields.object.keys where key != "id" && key != "cmd" && !accepted.contains(key) {
            let known = accepted.isEmpty ? "none" : accepted.joined(separator: ", ")
            throw .badRequest("unknown field '\(key)' for \(name); its fields: \(known)")
        }
        switch name {
        case "ping":
            return .ping
        case "status":
            return .status(slot: try fields.string("slot"))
        case "nodes":
            return .nodes(slot: try fields.requiredString("slot"))
        case "snapshot":
            return .snapshot(slot: try fields.requiredString("slot"))
        case "replay":
            guard let since = try fields.integer("sinceSeq", in: 0...Int64.max) else { throw .badRequest("missing field 'sinceSeq'") }
            let limit = try fields.integer("limit", in: 1...Int64(Command.replayLimit)) ?? Int64(Command.replayLimit)
            return .replay(slot: try fields.requiredString("slot"), sinceSeq: UInt64(since), limit: Int(limit))
        case "sendText":
            let slot = try fields.requiredString("slot")
            let text = try fields.requiredString("text")
            let bytes = Array(text.utf8)
            guard bytes.count <= MeshtasticLimits.maxPayloadLength else { throw .textTooLong(bytes: bytes.count) }
            return .send(try sendOptions(Command.Send(slot: slot, portnum: .textMessageApp, payload: bytes), fields))
        case "sendData":
            let slot = try fields.requiredString("slot")
            let portnum = try Self.portnum(fields)
            let encoded = try fields.requiredString("payload")
            guard let payload = Data(base64Encoded: encoded) else { throw .badRequest("field 'payload' must be base64") }
            guard payload.count <= MeshtasticLimits.maxPayloadLength else {
                throw .badRequest("field 'payload' is \(payload.count) bytes; the limit is \(MeshtasticLimits.maxPayloadLength)")
            }
            return .send(try sendOptions(Command.Send(slot: slot, portnum: portnum, payload: Array(payload)), fields))
        case "reconnect":
            return .reconnect(slot: try fields.requiredString("slot"))
        case "disconnectForRestart":
            return .disconnectForRestart(slot: try fields.requiredString("slot"), settleSeconds: try fields.number("settleSeconds", in: 0...3600) ?? 3)
        default:
            throw .unknownCommand(name)
        }
    }

    static func sendOptions(_ send: Command.Send, _ fields: Fields) throws(CommandError) -> Command.Send {
        var send = send
        if let to = fields["to"] { send.to = try Self.destination(to) }
        if let channel = try fields.integer("channel", in: Int64(MeshtasticLimits.channelRange.lowerBound)...Int64(MeshtasticLimits.channelRange.upperBound)) {
            send.channel = UInt32(channel)
        }
        send.wantAck = try fields.bool("wantAck") ?? false
        if let hopLimit = try fields.integer("hopLimit", in: 0...7) { send.hopLimit = UInt32(hopLimit) }
        if let replyID = try fields.integer("replyId", in: 0...Int64(UInt32.max)) { send.replyID = UInt32(replyID) }
        if let ttl = try fields.number("ttlSeconds", in: 0...86_400) { send.ttlSeconds = ttl }
        send.requireReady = try fields.bool("requireReady") ?? false
        return send
    }

    /// `portnum` as a name (`TEXT_MESSAGE_APP`) or a number (1–511).
    static func portnum(_ fields: Fields) throws(CommandError) -> Meshtastic_PortNum {
        guard let value = fields["portnum"] else { throw .badRequest("missing field 'portnum'") }
        if let name = value.stringValue {
            guard let port = PacketJSON.port(named: name) else { throw .badRequest("field 'portnum' names no known port: '\(name)'") }
            return port
        }
        guard let number = value.int64Value, (1...511).contains(number) else {
            throw .badRequest("field 'portnum' must be a port name or a number from 1 to 511")
        }
        return Meshtastic_PortNum(rawValue: Int(number)) ?? .UNRECOGNIZED(Int(number))
    }

    static func destination(_ value: JSONValue) throws(CommandError) -> UInt32 {
        switch value {
        case .string(let text):
            guard let number = NodeNumber.parse(text) else {
                throw .badRequest("field 'to' must be '^all', '!' and 8 hex digits, or a node number; got '\(text)'")
            }
            return number
        case .number:
            guard let number = value.int64Value, let node = UInt32(exactly: number) else {
                throw .badRequest("field 'to' must be a node number from 0 to 4294967295")
            }
            return node
        default:
            throw .badRequest("field 'to' must be a string or a number, got \(value.typeName)")
        }
    }
}

/// Typed access to a request's fields, with errors that name the field.
struct Fields {
    let object: JSONObject

    init(_ object: JSONObject) { self.object = object }

    subscript(key: String) -> JSONValue? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    func string(_ key: String) throws(CommandError) -> String? {
        guard let value = self[key] else { return nil }
        guard case .string(let text) = value else { throw .badRequest("field '\(key)' must be a string, got \(value.typeName)") }
        return text
    }

    func requiredString(_ key: String) throws(CommandError) -> String {
        guard let text = try string(key) else { throw .badRequest("missing field '\(key)'") }
        return text
    }

    func bool(_ key: String) throws(CommandError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .bool(let flag) = value else { throw .badRequest("field '\(key)' must be true or false, got \(value.typeName)") }
        return flag
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(CommandError) -> Int64? {
        guard let value = self[key] else { return nil }
        guard let number = value.int64Value, range.contains(number) else {
            throw .badRequest("field '\(key)' must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(CommandError) -> Double? {
        guard let value = self[key] else { return nil }
        guard let number = value.doubleValue, range.contains(number) else {
            throw .badRequest("field '\(key)' must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}
