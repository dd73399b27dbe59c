import Foundation
import Testing

@testable import DBus

/// A private `dbus-daemon` (Debian's, with its session configuration) on a socket in a temp
/// directory, stopped when the test ends.
final class PrivateBus {
    let address: DBusAddress
    private let process = Process()
    private let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshbus-dbus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let socket = directory.appendingPathComponent("bus").path
        address = DBusAddress(socketPath: socket)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/dbus-daemon")
        process.arguments = ["--session", "--nofork", "--nopidfile", "--address=unix:path=\(socket)"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // The daemon listens before it is ready to answer; wait (at most 10 s) for the socket.
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: socket) { usleep(50_000) }
        guard FileManager.default.fileExists(atPath: socket) else { throw DBusError(name: DBusError.failed, message: "dbus-daemon made no socket within 10 s") }
    }

    deinit {
        // SIGKILL: the test process blocks SIGTERM (service-lifecycle tests), and children inherit the mask.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// The connection against a real message bus: calls, error replies, signals and exported
/// objects between two clients.
@Suite(.timeLimit(.minutes(1))) struct DBusConnectionTests {
    @Test func theBusNamesTheConnectionAndAnswersCalls() async throws {
        let bus = try PrivateBus()
        try await DBusConnection.withConnection(to: bus.address) { connection in
            #expect(connection.uniqueName.hasPrefix(":"))
            let names = try await connection.call(.methodCall(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "ListNames"))
            #expect(names.first?.elements?.contains(.string(connection.uniqueName)) == true)
        }
    }

    @Test func anErrorReplyIsATypedErrorWithNameAndMessage() async throws {
        let bus = try PrivateBus()
        try await DBusConnection.withConnection(to: bus.address) { connection in
            let error = await #expect(throws: DBusError.self) {
                try await connection.call(.methodCall(
                    destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "GetNameOwner",
                    body: [.string("org.bluez")]))
            }
            #expect(error?.name == "org.freedesktop.DBus.Error.NameHasNoOwner")
            #expect(error?.message.contains("org.bluez") == true)
        }
    }

    @Test func anExportedObjectAnswersAnotherClientsCalls() async throws {
        let bus = try PrivateBus()
        try await DBusConnection.withConnection(to: bus.address) { agent in
            agent.export("/org/meshbus/agent") { call in
                call.member == "RequestPasskey" ? .success([.uint32(123_456)]) : .error(name: "org.bluez.Error.Rejected", message: "no")
            }
            try await DBusConnection.withConnection(to: bus.address) { caller in
                let passkey = try await caller.call(.methodCall(
                    destination: agent.uniqueName, path: "/org/meshbus/agent", interface: "org.bluez.Agent1", member: "RequestPasskey",
                    body: [.objectPath("/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01")]))
                #expect(passkey == [.uint32(123_456)])
                let rejected = await #expect(throws: DBusError.self) {
                    try await caller.call(.methodCall(destination: agent.uniqueName, path: "/org/meshbus/agent", interface: "org.bluez.Agent1", member: "RequestPinCode"))
                }
                #expect(rejected == DBusError(name: "org.bluez.Error.Rejected", message: "no"))
                let unknown = await #expect(throws: DBusError.self) {
                    try await caller.call(.methodCall(destination: agent.uniqueName, path: "/elsewhere", interface: "x.y", member: "M"))
                }
                #expect(unknown?.name == DBusError.unknownObject)
            }
        }
    }

    @Test func signalsReachOnlyTheSubscriptionsTheyMatch() async throws {
        let bus = try PrivateBus()
        try await DBusConnection.withConnection(to: bus.address) { listener in
            let changes = try await listener.signals(DBusMatchRule(interface: "org.freedesktop.DBus.Properties", member: "PropertiesChanged", pathNamespace: "/org/bluez/hci0"))
            try await DBusConnection.withConnection(to: bus.address) { emitter in
                for path in ["/org/bluez/hci1/dev_X", "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01"] {
                    emitter.send(DBusMessage(
                        kind: .signal, path: path, interface: "org.freedesktop.DBus.Properties", member: "PropertiesChanged",
                        body: [.string("org.bluez.Device1"), .properties(["Connected": .boolean(false)]), .strings([])]))
                }
                var iterator = changes.makeAsyncIterator()
                let first = await iterator.next()
                #expect(first?.path == "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01", "the signal outside the namespace was not delivered")
                #expect(first?.body[1].dictionary?["Connected"] == .boolean(false))
                #expect(first?.sender == emitter.uniqueName)
            }
        }
    }

    @Test func closingEndsSignalStreamsAndFailsLaterCalls() async throws {
        let bus = try PrivateBus()
        var kept: DBusConnection?
        let changes = try await DBusConnection.withConnection(to: bus.address) { connection in
            kept = connection
            return try await connection.signals(DBusMatchRule(interface: "x.y"))
        }
        for await _ in changes { Issue.record("no signal was sent") }
        let error = await #expect(throws: DBusError.self) {
            try await kept?.call(.methodCall(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "ListNames"))
        }
        #expect(error?.name == DBusError.disconnected)
    }

    @Test func anAddressWithoutAUnixPathIsRefused() throws {
        #expect(throws: DBusError.self) { try DBusAddress(parsing: "tcp:host=127.0.0.1,port=1") }
        #expect(try DBusAddress(parsing: "unix:abstract=x;unix:path=/tmp/a%20b,guid=1").socketPath == "/tmp/a b")
    }
}
