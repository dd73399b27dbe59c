import DBus

/// Why a BLE radio could not be opened, in words a user can act on (they become the slot's
/// `lastError`).
public struct BLEError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case pairingRequired
        case pairingFailed
        case noAdapter(String)
        case notMeshtastic
        case connectFailed(String)
        case servicesUnresolved
        case bus(DBusError)
    }
    private let code: Code

    /// BlueZ refused access for lack of pairing and no pin is configured.
    public static let pairingRequired = BLEError(code: .pairingRequired)
    /// The radio rejected the configured pin.
    public static let pairingFailed = BLEError(code: .pairingFailed)
    /// The device has no Meshtastic service (or not all of its characteristics).
    public static let notMeshtastic = BLEError(code: .notMeshtastic)
    /// Connected, but BlueZ did not resolve the device's services in time.
    public static let servicesUnresolved = BLEError(code: .servicesUnresolved)
    public static func noAdapter(_ adapter: String) -> BLEError { BLEError(code: .noAdapter(adapter)) }
    public static func connectFailed(_ why: String) -> BLEError { BLEError(code: .connectFailed(why)) }
    /// Any other error BlueZ or the bus answered with.
    public static func bus(_ error: DBusError) -> BLEError { BLEError(code: .bus(error)) }

    public var description: String {
        switch code {
        case .pairingRequired: "pairing required: set pin"
        case .pairingFailed: "pairing failed: wrong pin?"
        case .noAdapter(let adapter): "no Bluetooth adapter \(adapter)"
        case .notMeshtastic: "no Meshtastic service on the device"
        case .connectFailed(let why): "connect failed: \(why)"
        case .servicesUnresolved: "services not resolved after connecting"
        case .bus(let error): "\(error)"
        }
    }

    /// The user-facing error for a BlueZ error reply to a GATT access or pairing.
    static func from(_ error: DBusError) -> BLEError {
        switch error.name {
        case BlueZ.Error.notPermitted where error.message.localizedCaseInsensitiveContainsPaired,
            BlueZ.Error.notAuthorized:
            .pairingRequired
        case BlueZ.Error.authenticationFailed, BlueZ.Error.authenticationRejected, BlueZ.Error.authenticationCanceled:
            .pairingFailed
        default:
            .bus(error)
        }
    }
}

extension String {
    /// "Not paired", "Not Paired", …: BlueZ's message for access that needs a bond.
    fileprivate var localizedCaseInsensitiveContainsPaired: Bool { lowercased().contains("paired") }
}
