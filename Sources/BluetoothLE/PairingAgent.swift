import DBus

/// The `org.bluez.Agent1` a `ble` slot with a `pin` exports while it pairs: it answers the
/// radio's passkey request with the pin, and declines what it cannot vouch for.
enum PairingAgent {
    static func answer(_ call: DBusMessage, pin: UInt32) -> DBusReply {
        guard call.interface == BlueZ.agent || call.interface == nil else {
            return .error(name: DBusError.unknownMethod, message: "no interface \(call.interface ?? "")")
        }
        switch call.member {
        case "RequestPasskey":
            return .success([.uint32(pin)])
        case "RequestPinCode":
            return .success([.string(pin.sixDigits)])
        case "RequestConfirmation":
            // Numeric comparison: only the pin the user configured is confirmed.
            return call.body.dropFirst().first?.uint32 == pin ? .success([]) : .error(name: "org.bluez.Error.Rejected", message: "passkey does not match the configured pin")
        case "DisplayPasskey", "DisplayPinCode", "RequestAuthorization", "AuthorizeService", "Release", "Cancel":
            return .success([])
        default:
            return .error(name: "org.bluez.Error.Rejected", message: "not supported by MeshBus's agent")
        }
    }
}

extension UInt32 {
    /// A passkey as the six digits a keypad shows (`012345`).
    fileprivate var sixDigits: String {
        let digits = String(self)
        return String(repeating: "0", count: Swift.max(0, 6 - digits.count)) + digits
    }
}
