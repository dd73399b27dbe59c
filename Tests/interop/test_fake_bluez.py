"""Proof that the fake BlueZ (fake_bluez.py) behaves like BlueZ 5.66: bleak's scanner finds the
radio, the official `meshtastic` client (BLEInterface over bleak) completes its handshake through
it against the project's simulator, and the pairing, link-loss and GATT-cache behaviour that a
D-Bus BLE client must handle looks as BlueZ shows it. Every test talks to the fake only through
its private dbus-daemon; the simulator listens on loopback; sockets live in temp dirs."""
import asyncio
import threading

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method

from conftest import command, wait_until
from fake_bluez import (FROMNUM, FROMRADIO, LOGRADIO, MESH_SERVICE, TORADIO, Peripheral)

DEVICE = "org.bluez.Device1"
CHAR = "org.bluez.GattCharacteristic1"
PROPS = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
AGENT_MANAGER = "org.bluez.AgentManager1"
EE01, EE02, EE03 = "AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02", "AA:BB:CC:DD:EE:03"
WANT_CONFIG = bytes.fromhex("18d209")  # ToRadio{want_config_id: 1234}


class BusClient:
    """A plain D-Bus client of the fake: calls that return the reply (or error) message, and
    every signal, reply and error it receives, in arrival order."""

    def __init__(self, address):
        self.address = address
        self.events = []
        self.arrived = asyncio.Event()

    async def __aenter__(self):
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.add_message_handler(self._record)
        await self.bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                    interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                    body=["type='signal',sender='org.bluez'"]))
        return self

    async def __aexit__(self, *exc):
        self.bus.disconnect()

    def _record(self, msg):
        if msg.message_type != MessageType.METHOD_CALL:
            self.events.append(msg)
            self.arrived.set()
        return None

    async def call(self, path, interface, member, signature="", body=(), timeout=10):
        msg = Message(destination="org.bluez", path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"waited {timeout} s for the reply to {member} on {path}") from None
        return reply

    async def ok(self, path, interface, member, signature="", body=(), timeout=10):
        reply = await self.call(path, interface, member, signature, body, timeout)
        assert reply.message_type == MessageType.METHOD_RETURN, f"{member} on {path} failed: {reply.error_name} {reply.body}"
        return reply

    async def error(self, path, interface, member, signature="", body=(), timeout=10):
        reply = await self.call(path, interface, member, signature, body, timeout)
        assert reply.message_type == MessageType.ERROR, f"{member} on {path} should have failed, returned {reply.body}"
        return reply.error_name, reply.body[0]

    async def prop(self, path, interface, name):
        return (await self.ok(path, PROPS, "Get", "ss", [interface, name])).body[0].value

    def signals(self, member=None, path=None, interface=None):
        return [m for m in self.events if m.message_type == MessageType.SIGNAL
                and (member is None or m.member == member) and (path is None or m.path == path)
                and (interface is None or m.body[0] == interface)]

    def mark(self):
        """A position in the received messages, for waits that must ignore older ones."""
        return len(self.events)

    async def wait_for(self, predicate, what, timeout=10, since=0):
        """Waits until a message received after position `since` satisfies predicate; returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for msg in self.events[since:]:
                if predicate(msg):
                    return msg
            self.arrived.clear()
            if loop.time() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}")
            try:
                await asyncio.wait_for(self.arrived.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                pass

    async def wait_device(self, path, what, since=0, **expected):
        """Waits for a PropertiesChanged of Device1 carrying all `expected` values."""
        return await self.wait_for(lambda m: _device_change(m, path, expected), what, since=since)

    async def connect(self, path):
        """Connect, then wait for this connection's ServicesResolved=true and, right behind it,
        the battery plugin's Battery1."""
        since = self.mark()
        await self.ok(path, DEVICE, "Connect")
        await self.wait_device(path, f"ServicesResolved=true on {path}", since=since, ServicesResolved=True)
        await self.wait_for(lambda m: m.member == "InterfacesAdded" and m.body[0] == path and "org.bluez.Battery1" in m.body[1],
                            f"Battery1 on {path}", since=since)

    def index(self, msg):
        return next(i for i, m in enumerate(self.events) if m is msg)



def _device_change(msg, path, expected):
    if msg.message_type != MessageType.SIGNAL or msg.member != "PropertiesChanged" or msg.path != path:
        return False
    iface, changed, _ = msg.body
    return iface == DEVICE and all(name in changed and changed[name].value == value for name, value in expected.items())


def char_path(bluez, address, uuid):
    """The object path of a characteristic, found by UUID among the fake's objects."""
    return bluez.characteristic_path(address, uuid)


class PasskeyAgent(ServiceInterface):
    """A minimal org.bluez.Agent1 that types a fixed passkey and records what it was asked."""

    def __init__(self, passkey):
        super().__init__("org.bluez.Agent1")
        self.passkey = passkey
        self.asked = []
        self.cancelled = 0

    @method()
    def RequestPasskey(self, device: "o") -> "u":  # noqa: F821 (D-Bus signature annotations)
        self.asked.append(device)
        return self.passkey

    @method()
    def Release(self):
        pass

    @method()
    def Cancel(self):
        self.cancelled += 1


async def register_agent(client, agent, capability="KeyboardOnly", default=True, path="/test/agent"):
    client.bus.export(path, agent)
    await client.ok("/org/bluez", AGENT_MANAGER, "RegisterAgent", "os", [path, capability])
    if default:
        await client.ok("/org/bluez", AGENT_MANAGER, "RequestDefaultAgent", "o", [path])


def run(coro, timeout=30):
    """Runs a test coroutine with an overall deadline."""
    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the test coroutine did not finish within {timeout} s") from None
    return asyncio.run(bounded())


@pytest.fixture
def bleak_env(monkeypatch):
    """Points this process's bleak (and dbus-fast) at a fake's private bus."""
    def use(bluez):
        for key, value in bluez.env.items():
            monkeypatch.setenv(key, value)
    return use


def close_interface(iface):
    """Closes a BLEInterface without waiting for close() to return. meshtastic 2.7.11's close()
    hangs on Linux (meshtastic/python#909, #921): bleak calls its disconnected callback, which
    re-enters close() on bleak's event-loop thread and blocks that thread on one more ToRadio
    write. The fake reproduces that (it is what BlueZ does); the link is down all the same, so
    tests wait for the fake to see the disconnect instead."""
    threading.Thread(target=iface.close, name="BLEInterface.close", daemon=True).start()


# ---- bleak and the official client --------------------------------------------------------------

def test_bleak_scanner_finds_the_radio_by_service_uuid_address_and_name(start_fake_bluez, bleak_env):
    from bleak import BleakScanner

    bluez = start_fake_bluez(
        Peripheral(address=EE01, name="Meshtastic_ee01"),                    # known (cached)
        Peripheral(address=EE02, name="Meshtastic_ee02", known=False, rssi=-70),  # appears while scanning
        Peripheral(address="AA:BB:CC:00:00:09", name="HeartRate", known=False,
                   advertised_uuids=("0000180d-0000-1000-8000-00805f9b34fb",)),
    )
    bleak_env(bluez)

    async def scan():
        found = await BleakScanner.discover(timeout=1.2, return_adv=True, service_uuids=[MESH_SERVICE])
        by_address = await BleakScanner.find_device_by_address(EE02, timeout=5)
        by_name = await BleakScanner.find_device_by_name("Meshtastic_ee01", timeout=5, service_uuids=[MESH_SERVICE])
        return found, by_address, by_name

    found, by_address, by_name = run(scan())
    assert set(found) == {EE01, EE02}, "only radios advertising the Meshtastic service pass the filter"
    assert found[EE01][0].name == "Meshtastic_ee01" and MESH_SERVICE in found[EE01][1].service_uuids
    assert found[EE02][0].name == "Meshtastic_ee02" and found[EE02][1].rssi in (-70, -72)
    assert by_address is not None and by_address.name == "Meshtastic_ee02"
    assert by_name is not None and by_name.address == EE01
    filters = bluez.discovery_filters()
    assert {"Transport": "le", "DuplicateData": False, "UUIDs": [MESH_SERVICE]} in filters
    assert filters[-1] == {}, "bleak clears its filter after each scan"
    assert not bluez.discovering()


def test_bleak_retries_a_connect_aborted_by_interference(start_fake_bluez, bleak_env):
    from bleak import BleakClient

    bluez = start_fake_bluez(Peripheral(address=EE01, connect_fail_delay=0.05))
    bleak_env(bluez)
    # le-connection-abort-by-local with Connected flapping true then false: bleak waits for the
    # Connected=false and calls Connect again (its documented BlueZ >= 5.62 workaround).
    bluez.fail_connect(EE01, flap=True)

    async def connect():
        async with BleakClient(EE01, timeout=10) as client:
            return sorted(c.uuid for c in client.services.characteristics.values())

    uuids = run(connect())
    assert {TORADIO, FROMRADIO, FROMNUM, LOGRADIO} <= set(uuids)
    stats = bluez.stats(EE01)
    assert (stats["connect_calls"], stats["connect_failures"], stats["connects"]) == (2, 1, 1)
    # bleak calls Disconnect when leaving the aborted attempt too (to cancel a pending connect)
    assert stats["disconnect_calls"] == 2 and stats["disconnects"] == 1 and not stats["connected"]


def test_official_client_by_name_handshakes_sends_receives_and_disconnects(
        start_fake_bluez, start_controlled_simulator, bleak_env, context):
    from meshtastic.ble_interface import BLEInterface
    from pubsub import pub

    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(address=EE01, name="Meshtastic_ee01"), sim_port=int(sim["port"]))
    bleak_env(bluez)
    texts, logs = [], []

    def on_text(packet, interface):
        texts.append(packet["decoded"]["text"])

    def on_log(line, interface):
        logs.append(line)

    pub.subscribe(on_text, "meshtastic.receive.text")
    pub.subscribe(on_log, "meshtastic.log.line")
    iface = BLEInterface("Meshtastic_ee01")  # scans 10 s, as the official client does
    try:
        assert iface.myInfo is not None and iface.myInfo.my_node_num
        assert len(iface.nodes) == 6, "the simulator's 5 nodes and the local one"
        iface.sendText("hello over ble")
        wait_until(lambda: "hello over ble" in command(context, sim["control"], {"fault": "clear"})["texts"],
                   "the text sent over BLE to reach the simulator")
        command(context, sim["control"], {"emit": "text", "text": "hi from the mesh"})
        wait_until(lambda: "hi from the mesh" in texts, "the mesh's text to reach the client's receive callback")
        bluez.emit_log(EE01, "radio log line")
        wait_until(lambda: any("radio log line" in line for line in logs), "a LogRadio notification as a log line")
    finally:
        close_interface(iface)
        pub.unsubscribe(on_text, "meshtastic.receive.text")
        pub.unsubscribe(on_log, "meshtastic.log.line")
    stats = wait_until(lambda: (s := bluez.stats(EE01)) and not s["connected"] and s, "the fake to be disconnected")
    assert stats["disconnect_calls"] >= 1 and stats["disconnects"] == 1 and stats["sessions"] >= 1
    ops = [op for op in bluez.ops(EE01) if op[0] in ("start_notify", "write", "write_dropped")]
    assert ops[:2] == [("start_notify", "LogRadio"), ("write", "ToRadio", "want_config_id")], ops
    assert ("start_notify", "FromNum") in ops and ops[-1][2] == "disconnect", ops


def test_official_client_by_address_on_a_radio_found_by_scanning_without_gatt_cache(
        start_fake_bluez, start_controlled_simulator, bleak_env, monkeypatch, context):
    import meshtastic.ble_interface as ble

    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(address=EE02, name="Meshtastic_ee02", known=False, gatt_cache=False),
                             sim_port=int(sim["port"]))
    bleak_env(bluez)
    # The 10 s scan is proved by the test above; here it is cut short to keep the file fast.
    original = ble.BLEClient.discover
    monkeypatch.setattr(ble.BLEClient, "discover", lambda self, **kw: original(self, **{**kw, "timeout": 1.5}))
    assert not bluez.stats(EE02)["exported"], "not known before a scan"
    iface = ble.BLEInterface(EE02)
    try:
        assert len(iface.nodes) == 6
        iface.sendText("by address")
        wait_until(lambda: "by address" in command(context, sim["control"], {"fault": "clear"})["texts"],
                   "the text at the simulator")
    finally:
        close_interface(iface)
    stats = wait_until(lambda: (s := bluez.stats(EE02)) and not s["connected"] and s, "the fake to be disconnected")
    assert not stats["gatt_exported"], "without the GATT cache the objects go with the link"
    device = bluez.device_path(EE02)
    assert [p for p in bluez.object_paths() if p.startswith(device + "/")] == []


# ---- pairing --------------------------------------------------------------------------------------

def test_a_pin_radio_refuses_access_until_the_default_agent_types_the_right_passkey(start_fake_bluez):
    bluez = start_fake_bluez(Peripheral(address=EE03, name="Meshtastic_ee03", pin=123456))
    device, fromradio = bluez.device_path(EE03), char_path(bluez, EE03, FROMRADIO)

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            assert await client.error(fromradio, CHAR, "ReadValue", "a{sv}", [{}]) == (
                "org.bluez.Error.NotPermitted", "Not paired"), "no agent: BlueZ cannot pair on demand"
            agent = PasskeyAgent(111111)
            await register_agent(client, agent)
            assert await client.error(fromradio, CHAR, "ReadValue", "a{sv}", [{}]) == (
                "org.bluez.Error.NotPermitted", "Not paired"), "a wrong passkey"
            assert agent.asked == [device] and await client.prop(device, DEVICE, "Paired") is False
            agent.passkey = 123456
            reply = await client.ok(fromradio, CHAR, "ReadValue", "a{sv}", [{}])
            assert reply.body[0] == b"", "paired: the read goes through (nothing queued yet)"
            assert agent.asked == [device, device]
            await client.wait_device(device, "Paired=true", Paired=True, Bonded=True)
            assert await client.prop(device, DEVICE, "Paired") is True
            await client.ok(fromradio, CHAR, "ReadValue", "a{sv}", [{}])
            assert len(agent.asked) == 2, "bonded: no more passkeys"

    run(scenario())
    stats = bluez.stats(EE03)
    assert stats["passkeys"] == [111111, 123456] and stats["pair_attempts"] == 3 and stats["paired_now"]
    agents = bluez.agents()
    assert [(a["path"], a["capability"]) for a in agents["registered"]] == [("/test/agent", "KeyboardOnly")]


def test_device_pair_uses_the_callers_agent_and_reports_bluez_errors(start_fake_bluez):
    bluez = start_fake_bluez(Peripheral(address=EE03, name="Meshtastic_ee03", pin=654321))
    device = bluez.device_path(EE03)

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            assert await client.error(device, DEVICE, "CancelPairing") == ("org.bluez.Error.DoesNotExist", "Does Not Exist")
            assert await client.error(device, DEVICE, "Pair") == (
                "org.bluez.Error.AuthenticationFailed", "Authentication Failed"), "no agent: Just Works, refused"
            yes_no = PasskeyAgent(654321)
            await register_agent(client, yes_no, capability="DisplayYesNo", default=False)
            assert await client.error("/org/bluez", AGENT_MANAGER, "RegisterAgent", "os", ["/test/other", "KeyboardOnly"]) == (
                "org.bluez.Error.AlreadyExists", "Already Exists"), "one agent per client"
            assert await client.error(device, DEVICE, "Pair") == (
                "org.bluez.Error.AuthenticationFailed", "Authentication Failed")
            assert yes_no.asked == [], "a DisplayYesNo agent cannot type a passkey"
            await client.ok("/org/bluez", AGENT_MANAGER, "UnregisterAgent", "o", ["/test/agent"])
            client.bus.unexport("/test/agent")
            typing = PasskeyAgent(1)
            await register_agent(client, typing, capability="KeyboardDisplay", default=False)
            assert await client.error(device, DEVICE, "Pair") == (
                "org.bluez.Error.AuthenticationFailed", "Authentication Failed"), "the wrong passkey"
            typing.passkey = 654321
            await client.ok(device, DEVICE, "Pair")
            assert typing.asked == [device, device]
            assert await client.prop(device, DEVICE, "Paired") is True
            assert await client.prop(device, DEVICE, "Connected") is True, "Pair connects"
            assert await client.error(device, DEVICE, "Pair") == ("org.bluez.Error.AlreadyExists", "Already Exists")
            assert await client.error("/org/bluez", AGENT_MANAGER, "RegisterAgent", "os", ["/x", "Telepathy"]) == (
                "org.bluez.Error.AlreadyExists", "Already Exists")

    run(scenario())
    assert bluez.stats(EE03)["passkeys"] == [1, 654321]


# ---- link loss, the GATT cache, removal and connect failures --------------------------------------

def test_a_lost_link_with_the_gatt_cache_keeps_objects_and_calls_fail_not_connected(fake_bluez):
    bluez = fake_bluez
    device, fromradio, toradio, fromnum = (bluez.device_path(EE01), char_path(bluez, EE01, FROMRADIO),
                                           char_path(bluez, EE01, TORADIO), char_path(bluez, EE01, FROMNUM))

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            await client.ok(fromnum, CHAR, "StartNotify")
            await client.wait_for(lambda m: m.member == "PropertiesChanged" and m.path == fromnum
                                  and m.body[1].get("Notifying", Variant("b", False)).value, "Notifying=true")
            mark = client.mark()
            bluez.drop_link(EE01)
            lost = await client.wait_device(device, "Connected=false", since=mark, Connected=False)
            assert lost.body[1]["ServicesResolved"].value is False, "one signal: ServicesResolved and Connected"
            assert len([m for m in client.events[mark:] if _device_change(m, device, {"Connected": False})]) == 1
            removed = [m.body[0] for m in client.signals("InterfacesRemoved")]
            assert removed == [device] and client.signals("InterfacesRemoved")[0].body[1] == ["org.bluez.Battery1"], (
                "the cache keeps every GATT object; only the battery plugin's interface goes")
            assert await client.error(fromradio, CHAR, "ReadValue", "a{sv}", [{}]) == ("org.bluez.Error.Failed", "Not connected")
            assert await client.error(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG, {}]) == (
                "org.bluez.Error.Failed", "Not connected")
            assert await client.prop(fromnum, CHAR, "Notifying") is True, "BlueZ keeps the notify session"
            added_before = len(client.signals("InterfacesAdded"))
            await client.connect(device)
            assert [m.body[0] for m in client.signals("InterfacesAdded")[added_before:]] == [device], (
                "no InterfacesAdded for GATT objects on reconnect (only Battery1 on the device)")
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG, {"type": Variant("s", "request")}])
            first = (await client.ok(fromradio, CHAR, "ReadValue", "a{sv}", [{}])).body[0]
            assert first, "a new simulator session answers the handshake"
            await client.wait_for(lambda m: m.member == "PropertiesChanged" and m.path == fromnum
                                  and "Value" in m.body[1], "a FromNum notification after reconnecting")

    run(scenario())
    assert bluez.stats(EE01)["sessions"] == 2


def test_a_lost_link_without_the_gatt_cache_removes_objects_and_calls_fail_unknown_object(start_fake_bluez,
                                                                                       start_controlled_simulator):
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(address=EE01, gatt_cache=False), sim_port=int(sim["port"]))
    device = bluez.device_path(EE01)
    fromradio = f"{device}/service000c/char000f"

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            assert await client.error(fromradio, CHAR, "ReadValue", "a{sv}", [{}]) == (
                "org.freedesktop.DBus.Error.UnknownObject",
                'Method "ReadValue" with signature "a{sv}" on interface "org.bluez.GattCharacteristic1" doesn\'t exist\n')
            await client.connect(device)
            resolved = await client.wait_device(device, "ServicesResolved=true", ServicesResolved=True)
            added = [m.body[0] for m in client.signals("InterfacesAdded") if m.body[0] != device]
            assert added[0] == f"{device}/service0001" and fromradio in added, "parents first"
            assert max(client.index(m) for m in client.signals("InterfacesAdded") if m.body[0] != device) < client.index(resolved), (
                "the GATT objects exist before ServicesResolved=true")
            bluez.drop_link(EE01)
            lost = await client.wait_device(device, "Connected=false", Connected=False, ServicesResolved=False)
            removed = [m for m in client.signals("InterfacesRemoved") if m.body[0] != device]
            assert {m.body[0] for m in removed} == set(added)
            assert removed[0].body[0].endswith("desc0004") and removed[-1].body[0].endswith("service000c"), "children first"
            assert all(client.index(m) < client.index(lost) for m in removed)
            assert (await client.error(fromradio, CHAR, "ReadValue", "a{sv}", [{}]))[0] == "org.freedesktop.DBus.Error.UnknownObject"
            await client.connect(device)
            assert [m.body[0] for m in client.signals("InterfacesAdded")].count(fromradio) == 2, "added again"

    run(scenario())


def test_a_removed_device_is_an_unknown_object_until_it_comes_back(fake_bluez):
    bluez = fake_bluez
    device = bluez.device_path(EE01)

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            bluez.remove_device(EE01)
            gone = await client.wait_for(lambda m: m.member == "InterfacesRemoved" and m.body[0] == device
                                         and "org.bluez.Device1" in m.body[1], "the device's InterfacesRemoved")
            assert gone.body[1] == ["org.freedesktop.DBus.Introspectable", "org.bluez.Device1", "org.freedesktop.DBus.Properties"]
            name, _ = await client.error(device, DEVICE, "Connect")
            assert name == "org.freedesktop.DBus.Error.UnknownObject"
            objects = (await client.ok("/", OBJECT_MANAGER, "GetManagedObjects")).body[0]
            assert not any(path.startswith(device) for path in objects)
            mark = client.mark()
            bluez.restore_device(EE01)
            back = await client.wait_for(lambda m: m.member == "InterfacesAdded" and m.body[0] == device,
                                         "the device back", since=mark)
            assert back.body[1]["org.bluez.Device1"]["Paired"].value is False
            await client.connect(device)

    run(scenario())
    assert bluez.stats(EE01)["sessions"] == 2, "a new simulator session after it came back"


def test_connect_to_a_radio_out_of_range_fails_as_bluez_says(fake_bluez, context):
    bluez = fake_bluez
    device = bluez.device_path(EE01)

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            bluez.fail_connect(EE01)
            assert await client.error(device, DEVICE, "Connect") == ("org.bluez.Error.Failed", "le-connection-abort-by-local")
            assert not client.signals("PropertiesChanged", path=device), "Connected never changed"
            await client.connect(device)
            bluez.set_in_range(EE01, False)
            await client.wait_device(device, "the link to drop out of range", Connected=False)
            assert await client.error(device, DEVICE, "Connect") == ("org.bluez.Error.Failed", "le-connection-abort-by-local")
            bluez.set_in_range(EE01, True)
            command(context, bluez.sim["control"], {"fault": "offline", "seconds": 1})
            assert await client.error(device, DEVICE, "Connect") == ("org.bluez.Error.Failed", "le-connection-abort-by-local"), (
                "a simulator that refuses TCP is a radio that is not there")
            since = client.mark()
            for _ in range(50):  # the simulator listens again once its 1 s offline fault ends
                if (await client.call(device, DEVICE, "Connect")).message_type == MessageType.METHOD_RETURN:
                    break
            else:
                raise AssertionError("waited for the simulator to accept connections again")
            await client.wait_device(device, "ServicesResolved=true", since=since, ServicesResolved=True)
            await client.ok(device, DEVICE, "Connect")  # already connected: success, nothing happens

    run(scenario())
    stats = bluez.stats(EE01)
    assert stats["connect_failures"] >= 3 and stats["connects"] == 2


def test_disconnect_replies_before_the_connected_false_signal(fake_bluez):
    bluez = fake_bluez
    device = bluez.device_path(EE01)

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            reply = await client.ok(device, DEVICE, "Disconnect")
            lost = await client.wait_device(device, "Connected=false", Connected=False, ServicesResolved=False)
            assert client.index(reply) < client.index(lost)
            await client.ok(device, DEVICE, "Disconnect")  # not connected: answered at once

    run(scenario())


# ---- what the firmware and BlueZ do to reads and writes -------------------------------------------

def test_reads_writes_and_the_firmware_rules(start_fake_bluez, start_controlled_simulator):
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(address=EE01, att_latency=0.1), sim_port=int(sim["port"]))
    device, fromradio, toradio = (bluez.device_path(EE01), char_path(bluez, EE01, FROMRADIO),
                                  char_path(bluez, EE01, TORADIO))
    request = {"type": Variant("s", "request")}

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            # two writes at once: the second is refused while the first waits for its ATT response
            first, second = await asyncio.gather(
                client.call(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG, request]),
                client.call(toradio, CHAR, "WriteValue", "aya{sv}", [bytes.fromhex("18d309"), request]))
            assert first.message_type == MessageType.METHOD_RETURN
            assert (second.error_name, second.body[0]) == ("org.bluez.Error.InProgress", "In Progress")
            # two reads at once: one packet, answered to both
            a, b = await asyncio.gather(client.call(fromradio, CHAR, "ReadValue", "a{sv}", [{}]),
                                        client.call(fromradio, CHAR, "ReadValue", "a{sv}", [{}]))
            assert a.body[0] == b.body[0] and a.body[0], "one packet read twice"
            value_signal = next(m for m in client.signals("PropertiesChanged", path=fromradio) if "Value" in m.body[1])
            assert client.index(value_signal) < client.index(a), "a read's Value signal comes before its reply"
            # a repeat of the last write, or a prefix of it, never reaches the radio
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG, request])
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG[:2], request])
            assert await client.error(toradio, CHAR, "WriteValue", "aya{sv}", [bytes(513), request]) == (
                "org.bluez.Error.InvalidArguments", "Invalid Length")
            assert await client.error(fromradio, CHAR, "WriteValue", "aya{sv}", [b"\x01", {}]) == (
                "org.bluez.Error.NotSupported", "Operation is not supported")
            assert await client.error(toradio, CHAR, "AcquireWrite", "a{sv}", [{}]) == (
                "org.bluez.Error.NotSupported", "Operation is not supported")
            reads = bluez.stats(EE01)["reads"]
            assert reads == 1
            bluez.drop_link(EE01)
            await client.wait_device(device, "Connected=false", Connected=False)
            await client.connect(device)
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG, request])  # reset on disconnect

    run(scenario())
    stats = bluez.stats(EE01)
    assert (stats["writes_accepted"], stats["writes_dropped"], stats["writes_rejected"]) == (2, 2, 1)


def test_a_hung_peripheral_leaves_a_read_unanswered_until_it_recovers_or_bluez_gives_up(start_fake_bluez,
                                                                                      start_controlled_simulator):
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(address=EE01, att_timeout=2.0), sim_port=int(sim["port"]))
    device, fromradio = bluez.device_path(EE01), char_path(bluez, EE01, FROMRADIO)

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            bluez.stall(EE01, kind="link")
            hung = asyncio.ensure_future(client.call(fromradio, CHAR, "ReadValue", "a{sv}", [{}]))
            # other calls are answered meanwhile; the read is not
            assert await client.prop(device, DEVICE, "Connected") is True
            assert not hung.done()
            failed = await hung
            assert (failed.error_name, failed.body[0]) == ("org.bluez.Error.Failed", "Operation failed with ATT error: 0x0e")
            await client.wait_device(device, "the link dropped after the ATT timeout", Connected=False)
            bluez.stall(EE01, on=False)
            await client.connect(device)
            bluez.stall(EE01, kind="link")
            hung = asyncio.ensure_future(client.call(fromradio, CHAR, "ReadValue", "a{sv}", [{}]))
            assert await client.prop(device, DEVICE, "Connected") is True and not hung.done()
            bluez.stall(EE01, on=False)
            assert (await hung).message_type == MessageType.METHOD_RETURN, "answered once the radio recovered"

    run(scenario())


def test_a_hung_firmware_answers_reads_empty_and_a_closed_api_session_keeps_the_link(start_fake_bluez,
                                                                                   start_controlled_simulator):
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(address=EE01, firmware_read_wait=0.3), sim_port=int(sim["port"]))
    device, fromradio, toradio = (bluez.device_path(EE01), char_path(bluez, EE01, FROMRADIO),
                                  char_path(bluez, EE01, TORADIO))

    async def scenario():
        async with BusClient(bluez.bus_address) as client:
            await client.connect(device)
            bluez.stall(EE01, kind="firmware")
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [WANT_CONFIG, {}])  # acknowledged, held
            assert (await client.ok(fromradio, CHAR, "ReadValue", "a{sv}", [{}])).body[0] == b"", (
                "the BLE stack answers empty once the firmware's read wait is over")
            bluez.stall(EE01, on=False)  # the held write reaches the radio now
            first = (await client.ok(fromradio, CHAR, "ReadValue", "a{sv}", [{}])).body[0]
            assert first, "the handshake answer after the firmware recovered"
            # ToRadio{disconnect}: the radio closes its API session, the BLE link stays up
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [bytes.fromhex("2001"), {}])
            wait_until(lambda: ("api_closed",) in bluez.ops(EE01), "the simulator to close the API session")
            assert await client.prop(device, DEVICE, "Connected") is True
            await client.ok(toradio, CHAR, "WriteValue", "aya{sv}", [bytes.fromhex("18d309"), {}])
            assert (await client.ok(fromradio, CHAR, "ReadValue", "a{sv}", [{}])).body[0], "a new session answers"
            assert not [m for m in client.events if _device_change(m, device, {"Connected": False})]

    run(scenario())
    stats = bluez.stats(EE01)
    assert stats["sessions"] == 2 and stats["disconnects"] == 0 and stats["reads_empty"] == 1


def test_the_object_tree_properties_and_discovery_errors_look_like_bluez(start_fake_bluez):
    bluez = start_fake_bluez(Peripheral(address=EE01))
    device, adapter = bluez.device_path(EE01), "/org/bluez/hci0"

    async def scenario():
        async with BusClient(bluez.bus_address) as client, BusClient(bluez.bus_address) as other:
            objects = (await client.ok("/", OBJECT_MANAGER, "GetManagedObjects")).body[0]
            assert list(objects["/org/bluez"]) == ["org.freedesktop.DBus.Introspectable", "org.bluez.AgentManager1",
                                                   "org.bluez.ProfileManager1"]
            assert list(objects[adapter]) == ["org.freedesktop.DBus.Introspectable", "org.bluez.Adapter1",
                                              "org.freedesktop.DBus.Properties"]
            assert "central" in objects[adapter]["org.bluez.Adapter1"]["Roles"].value
            assert objects[device][DEVICE]["Adapter"].value == adapter and "RSSI" not in objects[device][DEVICE]
            mtu_less = objects[f"{device}/service000c/char0011"][CHAR]
            assert mtu_less["Flags"].value == ["read", "notify"] and "MTU" not in mtu_less, "MTU only while connected"
            assert await client.error(device, PROPS, "Get", "ss", [DEVICE, "RSSI"]) == (
                "org.freedesktop.DBus.Error.InvalidArgs", "No such property 'RSSI'")
            assert await client.error(device, PROPS, "GetAll", "s", ["org.bluez.Nope"]) == (
                "org.freedesktop.DBus.Error.InvalidArgs", "No such interface 'org.bluez.Nope'")
            assert await client.error(device, PROPS, "Set", "ssv", [DEVICE, "Connected", Variant("b", True)]) == (
                "org.freedesktop.DBus.Error.PropertyReadOnly", "Property 'Connected' is not writable")
            assert await client.error(device, PROPS, "Set", "ssv", [DEVICE, "Trusted", Variant("s", "yes")]) == (
                "org.freedesktop.DBus.Error.InvalidSignature", "Invalid signature for 'Trusted'")
            await client.ok(device, PROPS, "Set", "ssv", [DEVICE, "Trusted", Variant("b", True)])
            await client.wait_device(device, "Trusted=true", Trusted=True)
            assert (await client.error(device, DEVICE, "Connect", "s", ["x"]))[0] == "org.freedesktop.DBus.Error.UnknownMethod"
            assert await client.error(adapter, "org.bluez.Adapter1", "StopDiscovery") == (
                "org.bluez.Error.Failed", "No discovery started")
            assert await client.error(adapter, "org.bluez.Adapter1", "SetDiscoveryFilter", "a{sv}",
                                      [{"Colour": Variant("s", "blue")}]) == (
                "org.bluez.Error.InvalidArguments", "Invalid arguments in method call")
            await client.ok(adapter, "org.bluez.Adapter1", "StartDiscovery")
            assert await client.error(adapter, "org.bluez.Adapter1", "StartDiscovery") == (
                "org.bluez.Error.InProgress", "Operation already in progress")
            await other.ok(adapter, "org.bluez.Adapter1", "StartDiscovery")
            rssi = await client.wait_device(device, "an advertisement (RSSI) while discovering", RSSI=-60)
            await client.ok(adapter, "org.bluez.Adapter1", "StopDiscovery")
            assert await client.prop(adapter, "org.bluez.Adapter1", "Discovering") is True, "the other client still scans"
            other.bus.disconnect()  # a client that leaves the bus ends its discovery session
            stopped = await client.wait_for(lambda m: m.member == "PropertiesChanged" and m.path == adapter
                                            and m.body[1].get("Discovering", Variant("b", True)).value is False,
                                            "Discovering=false once the last discovering client left")
            invalidated = await client.wait_for(lambda m: m.member == "PropertiesChanged" and m.path == device
                                                and "RSSI" in m.body[2], "RSSI invalidated after the discovery")
            assert client.index(rssi) < client.index(stopped) <= client.index(invalidated)

    run(scenario())
