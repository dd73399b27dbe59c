import DBus

/// BlueZ's D-Bus names and the Meshtastic GATT profile (meshtastic-protocol.md §5b).
enum BlueZ {
    static let bus = "org.bluez"
    static let adapter = "org.bluez.Adapter1"
    static let device = "org.bluez.Device1"
    static let characteristic = "org.bluez.GattCharacteristic1"
    static let agentManager = "org.bluez.AgentManager1"
    static let agent = "org.bluez.Agent1"
    static let properties = "org.freedesktop.DBus.Properties"
    static let objectManager = "org.freedesktop.DBus.ObjectManager"

    /// Error names BlueZ answers with.
    enum Error {
        static let failed = "org.bluez.Error.Failed"
        static let notPermitted = "org.bluez.Error.NotPermitted"
        static let notAuthorized = "org.bluez.Error.NotAuthorized"
        static let inProgress = "org.bluez.Error.InProgress"
        static let alreadyExists = "org.bluez.Error.AlreadyExists"
        static let authenticationFailed = "org.bluez.Error.AuthenticationFailed"
        static let authenticationRejected = "org.bluez.Error.AuthenticationRejected"
        static let authenticationCanceled = "org.bluez.Error.AuthenticationCanceled"
        static let authenticationTimeout = "org.bluez.Error.AuthenticationTimeout"
    }
}

enum MeshtasticGATT {
    static let service = "6ba1b218-15a8-461f-9fa8-5dcae273eafd"
    static let toRadio = "f75c76d2-129e-4dad-a1dd-7866124401e7"
    static let fromRadio = "2c55e69e-4993-11ed-b878-0242ac120002"
    /// FromRadio on firmware before 2.x.
    static let legacyFromRadio = "8ba2bcc2-ee02-4a55-a531-c525c5e454d5"
    static let fromNum = "ed9da18c-a800-4f66-a670-aa7547e34453"
}

/// What `GetManagedObjects` on `/` returns: object path → interface → properties.
struct ManagedObjects {
    var objects: [String: [String: [String: DBusValue]]] = [:]

    init(_ reply: [DBusValue]) {
        for (path, interfaces) in reply.first?.dictionary ?? [:] {
            objects[path] = Self.interfaces(interfaces)
        }
    }

    /// `a{sa{sv}}`: interface → properties (an `InterfacesAdded` signal's second value too).
    static func interfaces(_ value: DBusValue) -> [String: [String: DBusValue]] {
        var result: [String: [String: DBusValue]] = [:]
        for (interface, properties) in value.dictionary ?? [:] {
            result[interface] = properties.dictionary ?? [:]
        }
        return result
    }

    /// The characteristic with `uuid` below `device`, found by UUID (paths and handles vary).
    func characteristic(_ uuid: String, below device: String) -> String? {
        objects.first { path, interfaces in
            path.hasPrefix(device + "/") && interfaces[BlueZ.characteristic]?["UUID"]?.string?.lowercased() == uuid
        }?.key
    }
}

/// Which device a `ble` slot means: an address (`AA:BB:CC:DD:EE:01`, any case) or the
/// advertised name, matched case-sensitively against `Name`, or `Alias` when no name is
/// advertised (design.md §7).
public struct BLEDeviceSelector: Hashable, Sendable, CustomStringConvertible {
    public let text: String

    public init(_ text: String) {
        self.text = text
    }

    /// Whether the text is a Bluetooth address (six hex pairs separated by colons).
    public var isAddress: Bool { Self.isAddress(text) }

    public static func isAddress(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }
    }

    func matches(_ device: [String: DBusValue]) -> Bool {
        if isAddress { return device["Address"]?.string?.uppercased() == text.uppercased() }
        if let name = device["Name"]?.string { return name == text }
        return device["Alias"]?.string == text
    }

    public var description: String { text }
}
