import DBus
import EventLoopTime
import Logging
import MeshtasticProtocol
import RadioLink

/// A `ble` slot's settings (design.md §7).
public struct BLEConfiguration: Sendable, Equatable {
    public var device: BLEDeviceSelector
    /// The passkey the radio asks for (its fixed PIN, 123456 by default); nil when the device
    /// is paired beforehand or needs no pairing.
    public var pin: UInt32?
    public var adapter: String

    public init(device: String, pin: UInt32? = nil, adapter: String = "hci0") {
        self.device = BLEDeviceSelector(device)
        self.pin = pin
        self.adapter = adapter
    }
}

/// A Meshtastic radio over Bluetooth LE, reached through BlueZ on the system bus.
///
/// Each session: find the device (known to BlueZ, or by a discovery filtered on the
/// Meshtastic service), pair with the configured pin when needed, connect unless BlueZ is
/// connected already, wait for the services, find the characteristics by UUID, then pump:
/// the link's framed channel on one side, bare-protobuf GATT reads and writes on the other.
/// On close the device is disconnected, so BlueZ does not keep the link.
public struct BLERadioTransport: RadioTransport {
    public let configuration: BLEConfiguration
    /// How long a discovery looks for a device BlueZ does not know yet.
    public var discoveryTime: Duration = .seconds(10)
    /// How long `Connect` and then the service resolution may take.
    public var connectTimeout: Duration = .seconds(30)
    /// How long one GATT read or write may take before the pump treats it as unanswered.
    public var accessTimeout: Duration = .seconds(10)
    let logger: Logger

    public init(configuration: BLEConfiguration, logger: Logger = Logger(label: "meshbus.ble")) {
        self.configuration = configuration
        self.logger = logger
    }

    public var kind: String { "ble" }
    public var description: String { "ble://\(configuration.device)" }

    public func withChannel<Result: Sendable>(_ serve: (StreamChannel) async -> Result) async throws -> Result {
        let address = try DBusAddress.systemBus()
        do {
            return try await DBusConnection.withConnection(to: address) { bus in
                let session = BLESession(bus: bus, transport: self)
                return try await session.run(serve)
            }
        } catch let error as DBusError {
            // The bus itself (not BlueZ's answers, which the session words itself).
            throw BLEError.bus(error)
        }
    }
}

/// One BLE session on one bus connection.
struct BLESession: Sendable {
    let bus: DBusConnection
    let transport: BLERadioTransport
    var configuration: BLEConfiguration { transport.configuration }
    var adapterPath: String { "/org/bluez/\(configuration.adapter)" }
    static let agentPath = "/org/meshbus/agent"

    func run<Result: Sendable>(_ serve: (StreamChannel) async -> Result) async throws -> Result {
        // Subscribed before anything is read, so no change between a read and a signal is missed.
        let added = try await bus.signals(DBusMatchRule(sender: BlueZ.bus, interface: BlueZ.objectManager, member: "InterfacesAdded"))
        let device = try await findDevice(added: added)
        let changes = try await bus.signals(DBusMatchRule(sender: BlueZ.bus, interface: BlueZ.properties, member: "PropertiesChanged", pathNamespace: device))
        let removed = try await bus.signals(DBusMatchRule(sender: BlueZ.bus, interface: BlueZ.objectManager, member: "InterfacesRemoved"))
        let agent = try await registerAgentIfPinned()
        do {
            try await pairIfNeeded(device)
            try await connect(device, changes: changes)
            let profile = try await characteristics(below: device)
            try await checkAccess(profile)
            try await call(profile.fromNum, BlueZ.characteristic, "StartNotify")
            let (link, pumped) = try await SocketPairChannels.framed()
            let gatt = GATTPump(bus: bus, profile: profile, device: device, accessTimeout: transport.accessTimeout, logger: transport.logger)
            let result = await withTaskGroup(of: Void.self) { group in
                group.addTask { await gatt.run(pumped, changes: changes, removed: removed) }
                let result = await serve(link)
                group.cancelAll()
                return result
            }
            await disconnect(device)
            await unregister(agent)
            return result
        } catch {
            await disconnect(device)
            await unregister(agent)
            throw error
        }
    }

    // MARK: Finding the device

    private func findDevice(added: AsyncStream<DBusMessage>) async throws -> String {
        let objects = ManagedObjects(try await bus.call(.methodCall(destination: BlueZ.bus, path: "/", interface: BlueZ.objectManager, member: "GetManagedObjects")))
        guard objects.objects[adapterPath]?[BlueZ.adapter] != nil else { throw BLEError.noAdapter(configuration.adapter) }
        if let known = match(in: objects.objects) { return known }
        try await call(adapterPath, BlueZ.adapter, "SetDiscoveryFilter", [.properties(["Transport": .string("le"), "UUIDs": .strings([MeshtasticGATT.service])])])
        do {
            try await call(adapterPath, BlueZ.adapter, "StartDiscovery")
        } catch let error as DBusError where error.name == BlueZ.Error.inProgress {
            // Another client is discovering already; its results reach us too.
        }
        let found: String?
        do {
            found = try await withDeadline(transport.discoveryTime) {
                for await signal in added {
                    guard signal.body.count == 2, let path = signal.body[0].string else { continue }
                    if let hit = match(in: [path: ManagedObjects.interfaces(signal.body[1])]) { return hit }
                }
                throw DBusError(name: DBusError.disconnected, message: "the bus closed during discovery")
            }
        } catch {
            _ = try? await call(adapterPath, BlueZ.adapter, "StopDiscovery")
            throw error
        }
        _ = try? await call(adapterPath, BlueZ.adapter, "StopDiscovery")
        guard let found else { throw RadioTransportError.deviceAbsent }
        return found
    }

    private func match(in objects: [String: [String: [String: DBusValue]]]) -> String? {
        objects.first { path, interfaces in
            path.hasPrefix(adapterPath + "/") && interfaces[BlueZ.device].map(configuration.device.matches) == true
        }?.key
    }

    // MARK: Pairing

    /// With a pin: the agent that answers the radio's passkey request (nil without a pin).
    private func registerAgentIfPinned() async throws -> String? {
        guard let pin = configuration.pin else { return nil }
        bus.export(Self.agentPath) { call in PairingAgent.answer(call, pin: pin) }
        do {
            try await call("/org/bluez", BlueZ.agentManager, "RegisterAgent", [.objectPath(Self.agentPath), .string("KeyboardOnly")])
        } catch let error as DBusError where error.name == BlueZ.Error.alreadyExists {
        }
        return Self.agentPath
    }

    private func unregister(_ agent: String?) async {
        guard let agent else { return }
        _ = try? await call("/org/bluez", BlueZ.agentManager, "UnregisterAgent", [.objectPath(agent)])
        bus.unexport(agent)
    }

    /// With a pin and an unpaired device: `Pair`, which asks this connection's agent first.
    private func pairIfNeeded(_ device: String) async throws {
        guard configuration.pin != nil, try await property(device, BlueZ.device, "Paired")?.bool != true else { return }
        do {
            try await call(device, BlueZ.device, "Pair", timeout: transport.connectTimeout)
        } catch let error as DBusError where error.name == BlueZ.Error.alreadyExists {
        } catch let error as DBusError {
            throw BLEError.from(error) == .pairingFailed ? BLEError.pairingFailed : BLEError.connectFailed("pairing: \(error)")
        }
    }

    // MARK: Connecting

    private func connect(_ device: String, changes: AsyncStream<DBusMessage>) async throws {
        // Read now, never from a cache: a `Disconnect` returns before the link is down.
        if try await property(device, BlueZ.device, "Connected")?.bool != true {
            do {
                try await call(device, BlueZ.device, "Connect", timeout: transport.connectTimeout)
            } catch let error as DBusError where error.name == DBusError.unknownObject {
                throw RadioTransportError.deviceAbsent
            } catch let error as DBusError {
                throw BLEError.connectFailed(error.message.isEmpty ? error.name : error.message)
            }
        }
        if try await property(device, BlueZ.device, "ServicesResolved")?.bool == true { return }
        let resolved = try await withDeadline(transport.connectTimeout) {
            for await change in changes where change.path == device {
                guard change.body.count >= 2, change.body[0].string == BlueZ.device else { continue }
                let properties = change.body[1].dictionary ?? [:]
                if properties["ServicesResolved"]?.bool == true { return true }
                if properties["Connected"]?.bool == false { return false }
            }
            return false
        }
        guard resolved == true else { throw BLEError.servicesUnresolved }
    }

    /// The Meshtastic characteristics' object paths.
    struct Profile: Sendable {
        var toRadio: String
        var fromRadio: String
        var fromNum: String
    }

    private func characteristics(below device: String) async throws -> Profile {
        let objects = ManagedObjects(try await bus.call(.methodCall(destination: BlueZ.bus, path: "/", interface: BlueZ.objectManager, member: "GetManagedObjects")))
        guard let toRadio = objects.characteristic(MeshtasticGATT.toRadio, below: device),
            let fromRadio = objects.characteristic(MeshtasticGATT.fromRadio, below: device)
                ?? objects.characteristic(MeshtasticGATT.legacyFromRadio, below: device),
            let fromNum = objects.characteristic(MeshtasticGATT.fromNum, below: device)
        else { throw BLEError.notMeshtastic }
        return Profile(toRadio: toRadio, fromRadio: fromRadio, fromNum: fromNum)
    }

    /// Reads FromNum (harmless: a counter) to learn before the session whether BlueZ lets us
    /// in, so that a missing pairing is the open's error in words, not a handshake timeout.
    private func checkAccess(_ profile: Profile) async throws {
        do {
            try await call(profile.fromNum, BlueZ.characteristic, "ReadValue", [.properties([:])], timeout: transport.accessTimeout)
        } catch let error as DBusError {
            throw BLEError.from(error)
        }
    }

    private func disconnect(_ device: String) async {
        _ = try? await call(device, BlueZ.device, "Disconnect", timeout: .seconds(5))
    }

    // MARK: Calls

    @discardableResult
    private func call(_ path: String, _ interface: String, _ member: String, _ body: [DBusValue] = [], timeout: Duration = .seconds(25)) async throws -> [DBusValue] {
        try await bus.call(.methodCall(destination: BlueZ.bus, path: path, interface: interface, member: member, body: body), timeout: timeout)
    }

    private func property(_ path: String, _ interface: String, _ name: String) async throws -> DBusValue? {
        let reply = try await call(path, BlueZ.properties, "Get", [.string(interface), .string(name)])
        if case .variant(let value)? = reply.first { return value }
        return reply.first
    }
}

/// Runs `body` for at most `limit`; nil when the time ran out first.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await EventLoopClock().sleep(for: limit)
            return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
