import DBus
import Testing

@testable import BluetoothLE

/// The BLE slot's own decisions, apart from BlueZ (which the interop tests' fake plays).
@Suite struct BluetoothLETests {
    static let device = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01"

    func agentCall(_ member: String, _ body: [DBusValue] = [.objectPath(device)]) -> DBusMessage {
        var call = DBusMessage.methodCall(destination: ":1.9", path: "/org/meshbus/agent", interface: "org.bluez.Agent1", member: member, body: body)
        call.sender = ":1.1"
        call.serial = 4
        return call
    }

    @Test func theAgentAnswersThePasskeyWithThePin() {
        guard case .success(let body) = PairingAgent.answer(agentCall("RequestPasskey"), pin: 123_456) else { Issue.record("refused"); return }
        #expect(body == [.uint32(123_456)])
        guard case .success(let code) = PairingAgent.answer(agentCall("RequestPinCode"), pin: 12_345) else { Issue.record("refused"); return }
        #expect(code == [.string("012345")], "six digits, as a keypad shows them")
    }

    @Test func theAgentConfirmsOnlyThePinItWasGiven() {
        let same = PairingAgent.answer(agentCall("RequestConfirmation", [.objectPath(Self.device), .uint32(123_456)]), pin: 123_456)
        let other = PairingAgent.answer(agentCall("RequestConfirmation", [.objectPath(Self.device), .uint32(654_321)]), pin: 123_456)
        guard case .success = same, case .error(let name, _) = other else { Issue.record("\(same) \(other)"); return }
        #expect(name == "org.bluez.Error.Rejected")
        guard case .error(let unknown, _) = PairingAgent.answer(agentCall("RequestSomethingNew"), pin: 1) else { Issue.record("accepted"); return }
        #expect(unknown == "org.bluez.Error.Rejected")
    }

    @Test func aDeviceIsMatchedByAddressInAnyCaseOrByItsAdvertisedName() {
        let properties: [String: DBusValue] = ["Address": .string("AA:BB:CC:DD:EE:01"), "Name": .string("Meshtastic_ee01"), "Alias": .string("roof")]
        #expect(BLEDeviceSelector("aa:bb:cc:dd:ee:01").matches(properties))
        #expect(BLEDeviceSelector("Meshtastic_ee01").matches(properties))
        #expect(!BLEDeviceSelector("meshtastic_ee01").matches(properties), "names match case-sensitively")
        #expect(!BLEDeviceSelector("roof").matches(properties), "the alias counts only when no name is advertised")
        #expect(BLEDeviceSelector("roof").matches(["Address": .string("AA:BB:CC:DD:EE:01"), "Alias": .string("roof")]))
        #expect(!BLEDeviceSelector("AA:BB:CC:DD:EE").isAddress)
    }

    @Test func blueZErrorsBecomeWordsAUserCanActOn() {
        #expect(BLEError.from(DBusError(name: "org.bluez.Error.NotPermitted", message: "Not paired")).description == "pairing required: set pin")
        #expect(BLEError.from(DBusError(name: "org.bluez.Error.AuthenticationFailed", message: "Authentication Failed")).description == "pairing failed: wrong pin?")
        #expect(BLEError.from(DBusError(name: "org.bluez.Error.Failed", message: "Not connected")).description == "org.bluez.Error.Failed: Not connected")
    }

    @Test func characteristicsAreFoundByUUIDBelowTheDevice() {
        let uuid: (String) -> [String: [String: DBusValue]] = { ["org.bluez.GattCharacteristic1": ["UUID": .string($0)]] }
        var objects = ManagedObjects([])
        objects.objects = [
            Self.device + "/service0025/char002b": uuid(MeshtasticGATT.toRadio.uppercased()),
            "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_02/service000c/char000d": uuid(MeshtasticGATT.fromRadio),
        ]
        #expect(objects.characteristic(MeshtasticGATT.toRadio, below: Self.device) == Self.device + "/service0025/char002b")
        #expect(objects.characteristic(MeshtasticGATT.fromRadio, below: Self.device) == nil, "another device's characteristic")
    }
}
