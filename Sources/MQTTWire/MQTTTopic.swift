/// The rules for topic names and filters that the broker would otherwise enforce by closing
/// the connection: checked up front so one bad topic cannot make every reconnect fail.
package enum MQTTTopic {
    /// A topic a message may be published to: 1...65,535 bytes of UTF-8, no wildcard, no U+0000.
    package static func isValidName(_ name: String) -> Bool {
        let length = name.utf8.count
        return length > 0 && length <= Int(UInt16.max)
            && !name.utf8.contains { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") || $0 == 0 }
    }

    /// A filter that may be subscribed to: `+` only as a whole level, `#` only as the whole last level.
    package static func isValidFilter(_ filter: String) -> Bool {
        let length = filter.utf8.count
        guard length > 0, length <= Int(UInt16.max), !filter.utf8.contains(0) else { return false }
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        for (index, level) in levels.enumerated() {
            if level.contains("#") && (level != "#" || index != levels.count - 1) { return false }
            if level.contains("+") && level != "+" { return false }
        }
        return true
    }

    /// A message that can be encoded: a valid topic and a packet within MQTT's size limit.
    package static func isValid(_ message: MQTTMessage) -> Bool {
        isValidName(message.topic) && 2 + message.topic.utf8.count + 2 + message.payload.count <= MQTTPacket.maximumRemainingLength
    }
}
