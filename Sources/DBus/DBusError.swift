/// A D-Bus error: a peer's error reply (`org.bluez.Error.NotPermitted`, "Not paired"), or one
/// of the bus's standard names for what went wrong on this side (no reply, disconnected).
public struct DBusError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The error name, such as `org.bluez.Error.Failed`.
    public let name: String
    /// The human-readable message (the error reply's first string), possibly empty.
    public let message: String

    public init(name: String, message: String) {
        self.name = name
        self.message = message
    }

    /// The error a reply message carries.
    init(reply: DBusMessage) {
        self.init(name: reply.errorName ?? Self.failed, message: reply.body.first?.string ?? "")
    }

    public var description: String { message.isEmpty ? name : "\(name): \(message)" }

    public static let failed = "org.freedesktop.DBus.Error.Failed"
    /// No reply within the call's timeout.
    public static let noReply = "org.freedesktop.DBus.Error.NoReply"
    /// The connection to the bus is closed (or was never made).
    public static let disconnected = "org.freedesktop.DBus.Error.Disconnected"
    public static let authFailed = "org.freedesktop.DBus.Error.AuthFailed"
    public static let badAddress = "org.freedesktop.DBus.Error.BadAddress"
    public static let unknownObject = "org.freedesktop.DBus.Error.UnknownObject"
    public static let unknownMethod = "org.freedesktop.DBus.Error.UnknownMethod"
    public static let serviceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown"
}
