extension MeshBus {
    /// One slot in the `status` result: its link, queue, counters and virtual radio port.
    public struct SlotStatus: Codable, Sendable, Equatable, JSONValueConvertible {
        public var state: LinkState
        public var ready: Bool
        public var strikes: Int
        /// Seconds since the last answered probe, while the link is up.
        public var lastProbeOkAgoSeconds: Double?
        /// The round trip of the last answered probe, in milliseconds.
        public var lastProbeRoundTripMs: Double?
        /// Why the link is not up, in words (`tcp://…: Connection refused`, `link lost: probe_strikes`); nil when ready.
        public var lastError: String?
        public var attempt: Int
        public var retryInSeconds: Double?
        public var reconnects: Int
        /// `tcp`, `serial`, `simulator`, …
        public var transport: String
        public var myNodeNum: UInt32?
        /// Packets in the outbox, not yet written.
        public var queueDepth: Int
        /// Sends not yet at a terminal status.
        public var pendingSends: Int
        /// Terminal statuses so far, by status name.
        public var sends: [String: Int]
        public var lastSeq: UInt64
        public var replayHeld: Int
        public var nodeCount: Int
        public var duplicates: Int
        public var undecodableFrames: Int
        public var virtualClients: Int
        public var virtualRadio: VirtualRadioStatus?
        /// The last link states with when each began, oldest first (nil from a broker before it).
        public var history: [LinkStateSpan]?

        public init(
            state: LinkState, ready: Bool, strikes: Int, lastProbeOkAgoSeconds: Double?, lastProbeRoundTripMs: Double?, lastError: String?, attempt: Int, retryInSeconds: Double?,
            reconnects: Int, transport: String, myNodeNum: UInt32?, queueDepth: Int, pendingSends: Int,
            sends: [String: Int], lastSeq: UInt64, replayHeld: Int, nodeCount: Int, duplicates: Int, undecodableFrames: Int,
            virtualClients: Int, virtualRadio: VirtualRadioStatus?, history: [LinkStateSpan]?
        ) {
            self.state = state
            self.ready = ready
            self.strikes = strikes
            self.lastProbeOkAgoSeconds = lastProbeOkAgoSeconds
            self.lastProbeRoundTripMs = lastProbeRoundTripMs
            self.lastError = lastError
            self.attempt = attempt
            self.retryInSeconds = retryInSeconds
            self.reconnects = reconnects
            self.transport = transport
            self.myNodeNum = myNodeNum
            self.queueDepth = queueDepth
            self.pendingSends = pendingSends
            self.sends = sends
            self.lastSeq = lastSeq
            self.replayHeld = replayHeld
            self.nodeCount = nodeCount
            self.duplicates = duplicates
            self.undecodableFrames = undecodableFrames
            self.virtualClients = virtualClients
            self.virtualRadio = virtualRadio
            self.history = history
        }

        public var jsonValue: JSONValue {
            .object([
                "state": .string(state.rawValue),
                "ready": .bool(ready),
                "strikes": .int(strikes),
                "lastProbeOkAgoSeconds": .optional(lastProbeOkAgoSeconds, JSONValue.double),
                "lastProbeRoundTripMs": .optional(lastProbeRoundTripMs, JSONValue.double),
                "lastError": .optional(lastError, JSONValue.string),
                "attempt": .int(attempt),
                "retryInSeconds": .optional(retryInSeconds, JSONValue.double),
                "reconnects": .int(reconnects),
                "transport": .string(transport),
                "myNodeNum": .optional(myNodeNum, JSONValue.int),
                "queueDepth": .int(queueDepth),
                "pendingSends": .int(pendingSends),
                "sends": .object(JSONObject(uniqueKeysWithValues: sends.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
                "lastSeq": .int(lastSeq),
                "replayHeld": .int(replayHeld),
                "nodeCount": .int(nodeCount),
                "duplicates": .int(duplicates),
                "undecodableFrames": .int(undecodableFrames),
                "virtualClients": .int(virtualClients),
                "virtualRadio": .optional(virtualRadio, \.jsonValue),
                "history": .optional(history) { .array($0.map(\.jsonValue)) },
            ])
        }
    }

    /// A slot's virtual radio port (design: existing Meshtastic clients sharing the radio).
    public struct VirtualRadioStatus: Codable, Sendable, Equatable, JSONValueConvertible {
        /// `host:port` as bound.
        public var address: String
        public var allowAdmin: Bool
        public var clients: Int
        public var connections: Int
        public var turnedAway: Int
        /// Clients turned away because the broker was low on file descriptors; nil from an
        /// older broker.
        public var lowOnDescriptors: Int?
        public var handshakes: Int
        public var packets: Int
        public var outboxFull: Int
        public var adminRefused: Int
        public var framesDropped: Int
        public var undecodable: Int
        public var ignored: Int
        public var failedSends: Int

        public init(
            address: String, allowAdmin: Bool, clients: Int, connections: Int, turnedAway: Int, lowOnDescriptors: Int?, handshakes: Int,
            packets: Int, outboxFull: Int, adminRefused: Int, framesDropped: Int, undecodable: Int, ignored: Int, failedSends: Int
        ) {
            self.address = address
            self.allowAdmin = allowAdmin
            self.clients = clients
            self.connections = connections
            self.turnedAway = turnedAway
            self.lowOnDescriptors = lowOnDescriptors
            self.handshakes = handshakes
            self.packets = packets
            self.outboxFull = outboxFull
            self.adminRefused = adminRefused
            self.framesDropped = framesDropped
            self.undecodable = undecodable
            self.ignored = ignored
            self.failedSends = failedSends
        }

        public var jsonValue: JSONValue {
            .object([
                "address": .string(address), "allowAdmin": .bool(allowAdmin), "clients": .int(clients), "connections": .int(connections),
                "turnedAway": .int(turnedAway), "lowOnDescriptors": lowOnDescriptors.map { .int($0) } ?? .null, "handshakes": .int(handshakes), "packets": .int(packets), "outboxFull": .int(outboxFull),
                "adminRefused": .int(adminRefused), "framesDropped": .int(framesDropped), "undecodable": .int(undecodable),
                "ignored": .int(ignored), "failedSends": .int(failedSends),
            ])
        }
    }

    /// The `ping` result: which broker answered, for how long it has run, and how many event
    /// subscribers its PUB socket has.
    public struct Ping: Codable, Sendable, Equatable, JSONValueConvertible {
        /// Fixed for the life of the broker process; a new value means it restarted.
        public var broker: String
        public var version: String
        public var uptimeSeconds: Double
        /// Subscribers connected to the PUB socket now; nil from a broker that does not say.
        public var subscribers: Int?
        /// ZeroMQ peers refused so far because the broker was low on file descriptors.
        public var peersRefused: Int?

        public init(broker: String, version: String, uptimeSeconds: Double, subscribers: Int? = nil, peersRefused: Int? = nil) {
            self.broker = broker
            self.version = version
            self.uptimeSeconds = uptimeSeconds
            self.subscribers = subscribers
            self.peersRefused = peersRefused
        }

        public var jsonValue: JSONValue {
            var object: JSONObject = ["broker": .string(broker), "version": .string(version), "uptimeSeconds": .double(uptimeSeconds)]
            if let subscribers { object["subscribers"] = .int(subscribers) }
            if let peersRefused { object["peersRefused"] = .int(peersRefused) }
            return .object(object)
        }
    }
}
