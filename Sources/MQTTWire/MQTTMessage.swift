/// Delivery guarantee of a message. QoS 2 is not supported: the client neither sends it
/// nor subscribes with it, so a broker never delivers it.
public enum MQTTQoS: UInt8, Sendable {
    case atMostOnce = 0
    case atLeastOnce = 1
}

/// One application message.
public struct MQTTMessage: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: MQTTQoS
    /// The broker keeps the message as the topic's last known value for later subscribers.
    public var retain: Bool

    /// A message for `topic`; QoS 0 and not retained unless asked.
    public init(topic: String, payload: [UInt8], qos: MQTTQoS = .atMostOnce, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}
