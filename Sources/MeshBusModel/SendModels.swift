extension MeshBus {
    /// Where a send is in its life (design.md §4): `queued`, then exactly one terminal state.
    public enum SendState: OpenStringEnum {
        case queued, sent, acked, nak, expired, failed
        case unknown(String)

        public static let allKnown: [SendState] = [.queued, .sent, .acked, .nak, .expired, .failed]

        public init(rawValue: String) {
            self = Self.allKnown.first { $0.rawValue == rawValue } ?? .unknown(rawValue)
        }

        public var rawValue: String {
            switch self {
            case .queued: "queued"
            case .sent: "sent"
            case .acked: "acked"
            case .nak: "nak"
            case .expired: "expired"
            case .failed: "failed"
            case .unknown(let name): name
            }
        }
    }

    /// One step in the life of a send (`meshtastic.send.status`).
    public struct SendStatus: Codable, Sendable, Equatable, JSONValueConvertible {
        public var packetId: UInt32
        /// The command's id, or `virtualRadio:<address>:<port>` for a virtual-radio client's packet; nil if none.
        public var requestId: String?
        public var status: SendState
        /// For `nak`, the routing error; for `failed`, why.
        public var error: String?

        public init(packetId: UInt32, requestId: String?, status: SendState, error: String? = nil) {
            self.packetId = packetId
            self.requestId = requestId
            self.status = status
            self.error = error
        }

        public var jsonValue: JSONValue {
            var object: JSONObject = [
                "packetId": .int(packetId), "requestId": .optional(requestId, JSONValue.string), "status": .string(status.rawValue),
            ]
            if let error { object["error"] = .string(error) }
            return .object(object)
        }
    }

    /// The answer to `sendText` and `sendData`: the packet id MeshBus gave the send, `queued`.
    public struct SendReceipt: Codable, Sendable, Equatable, JSONValueConvertible {
        public var packetId: UInt32
        public var status: SendState

        public init(packetId: UInt32, status: SendState = .queued) {
            self.packetId = packetId
            self.status = status
        }

        public var jsonValue: JSONValue { .object(["packetId": .int(packetId), "status": .string(status.rawValue)]) }
    }
}
