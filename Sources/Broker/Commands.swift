import MeshtasticProtocol

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
    public static func queueFull(_ slot: String, capacity: Int) -> CommandError {
        CommandError(code: "queue_full", message: "the outbox of slot '\(slot)' is full (\(capacity) packets)")
    }
}

/// What a client asked for, parsed and checked.
public enum Command: Equatable, Sendable {
    case ping
    case status(slot: String?)
    case sendText(SendText)
    /// Forces a reconnect cycle of the slot (or ends a `disconnectForRestart` hold).
    case reconnect(slot: String)
    /// Closes the slot's radio cleanly and holds it closed until `reconnect`.
    case disconnectForRestart(slot: String, settleSeconds: Double)

    /// Every command this build answers.
    public static let names = ["ping", "status", "sendText", "reconnect", "disconnectForRestart"]

    /// The arguments of `sendText`, with defaults applied.
    public struct SendText: Equatable, Sendable {
        public var slot: String
        public var text: String
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

    /// Parses a request body. Never throws: every problem becomes a ``CommandError``.
    public init(parsing body: [UInt8]) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: body)
        } catch {
            id = nil
            command = .failure(.badRequest("request is not JSON: \(error)"))
            return
        }
        guard case .object(let object) = value else {
            id = nil
            command = .failure(.badRequest("request must be a JSON object, got \(value.typeName)"))
            return
        }
        id = object["id"]
        command = Result { () throws(CommandError) -> Command in try Self.command(from: Fields(object)) }
    }

    static func command(from fields: Fields) throws(CommandError) -> Command {
        let name = try fields.requiredString("cmd")
        switch name {
        case "ping":
            return .ping
        case "status":
            return .status(slot: try fields.string("slot"))
        case "sendText":
            var send = Command.SendText(slot: try fields.requiredString("slot"), text: try fields.requiredString("text"))
            let bytes = send.text.utf8.count
            guard bytes <= MeshtasticLimits.maxPayloadLength else { throw .textTooLong(bytes: bytes) }
            if let to = fields["to"] { send.to = try Self.destination(to) }
            if let channel = try fields.integer("channel", in: Int64(MeshtasticLimits.channelRange.lowerBound)...Int64(MeshtasticLimits.channelRange.upperBound)) {
                send.channel = UInt32(channel)
            }
            send.wantAck = try fields.bool("wantAck") ?? false
            if let hopLimit = try fields.integer("hopLimit", in: 0...7) { send.hopLimit = UInt32(hopLimit) }
            if let replyID = try fields.integer("replyId", in: 0...Int64(UInt32.max)) { send.replyID = UInt32(replyID) }
            if let ttl = try fields.number("ttlSeconds", in: 0...86_400) { send.ttlSeconds = ttl }
            send.requireReady = try fields.bool("requireReady") ?? false
            return .sendText(send)
        case "reconnect":
            return .reconnect(slot: try fields.requiredString("slot"))
        case "disconnectForRestart":
            return .disconnectForRestart(slot: try fields.requiredString("slot"), settleSeconds: try fields.number("settleSeconds", in: 0...3600) ?? 3)
        default:
            throw .unknownCommand(name)
        }
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
