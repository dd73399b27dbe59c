import MQTTWire

/// Where and how an ``MQTTClient`` connects, and how it behaves while it cannot.
public struct MQTTConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Identifies the client to the broker; a second client with the same id takes over.
    public var clientID: String
    public var username: String?
    public var password: String?
    /// The client pings every half of this; a broker silent for 1.5 times this is dead.
    /// Zero turns keep alive off. Sent in whole seconds (at least 1, at most 65,535).
    public var keepAlive: Duration
    /// Time allowed for TCP connect plus CONNACK.
    public var connectTimeout: Duration
    /// Last will: the broker publishes it when the connection drops without DISCONNECT.
    public var will: MQTTMessage?
    /// Delay after the first failed attempt; doubles per further failure, with ±20% jitter.
    public var initialReconnectDelay: Duration
    /// Upper bound of the reconnect delay (before jitter).
    public var maximumReconnectDelay: Duration
    /// Messages held while not connected (and QoS 1 ones awaiting PUBACK). Past it the oldest
    /// QoS 0 message is dropped, else the oldest message; each drop is counted.
    public var queueLimit: Int
    /// The largest packet accepted from the broker, fixed header included; a larger one
    /// ends the connection.
    public var maximumPacketSize: Int
    /// TLS towards the broker; nil is plain MQTT.
    public var tls: MQTTTLS?

    /// A configuration with the defaults: 30 s keep alive, 10 s connect timeout, reconnects
    /// after 1 s up to 30 s, 10,000 queued messages, 1 MiB packets.
    public init(host: String, port: Int = 1883, clientID: String) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.keepAlive = .seconds(30)
        self.connectTimeout = .seconds(10)
        self.initialReconnectDelay = .seconds(1)
        self.maximumReconnectDelay = .seconds(30)
        self.queueLimit = 10_000
        self.maximumPacketSize = MQTTDecoder.defaultMaximumPacketSize
    }

    /// `keepAlive` as the CONNECT packet carries it.
    var keepAliveSeconds: UInt16 {
        guard keepAlive > .zero else { return 0 }
        let (seconds, attoseconds) = keepAlive.components
        return UInt16(clamping: max(1, seconds + (attoseconds > 0 ? 1 : 0)))
    }
}
