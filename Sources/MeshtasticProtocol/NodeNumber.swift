import MeshBusModel

/// Node numbers and their text forms as the Meshtastic clients write them.
public enum NodeNumber {
    /// The broadcast address, `^all` in text.
    public static let broadcast = NodeID.broadcast
    public static let broadcastID = NodeID.broadcastText

    /// `!` and eight lower-case hex digits, e.g. `!a1b2c3d4`; `^all` for broadcast.
    public static func id(_ number: UInt32) -> String { NodeID.format(number) }

    /// Parses `^all`, `!hex` (1–8 digits) or a decimal number.
    public static func parse(_ text: String) -> UInt32? {
        if text == broadcastID { return broadcast }
        if text.hasPrefix("!") {
            let hex = text.dropFirst()
            guard (1...8).contains(hex.count) else { return nil }
            return UInt32(hex, radix: 16)
        }
        return UInt32(text)
    }
}

/// Limits of the radio's API.
public enum MeshtasticLimits {
    /// The most bytes a `Data.payload` may carry (the firmware's `DATA_PAYLOAD_LEN`).
    public static let maxPayloadLength = Int(Meshtastic_Constants.dataPayloadLen.rawValue)
    /// Channel indexes are 0 through 7.
    public static let channelRange: ClosedRange<UInt32> = 0...7
}
