#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a bus listens: a Unix socket path, from a D-Bus address such as
/// `unix:path=/run/dbus/system_bus_socket` (the first `unix:path=` entry of a `;` list).
public struct DBusAddress: Hashable, Sendable, CustomStringConvertible {
    public let socketPath: String

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// Parses an address list; throws naming what it could not use (only `unix:path=` is spoken,
    /// not abstract sockets or TCP).
    public init(parsing text: String) throws(DBusError) {
        for entry in text.split(separator: ";") {
            guard entry.hasPrefix("unix:") else { continue }
            for pair in entry.dropFirst(5).split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0] == "path", let path = Self.unescape(parts[1]), !path.isEmpty {
                    self.init(socketPath: path)
                    return
                }
            }
        }
        throw DBusError(name: DBusError.badAddress, message: "no unix:path= entry in D-Bus address \"\(text)\"")
    }

    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS` when set, else the standard socket.
    public static func systemBus() throws(DBusError) -> DBusAddress {
        if let text = getenv("DBUS_SYSTEM_BUS_ADDRESS").map({ String(cString: $0) }), !text.isEmpty {
            return try DBusAddress(parsing: text)
        }
        return DBusAddress(socketPath: "/run/dbus/system_bus_socket")
    }

    public var description: String { "unix:path=\(socketPath)" }

    /// Undoes the address format's `%XX` escapes.
    private static func unescape(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
