"""A fake BlueZ for the tests: `org.bluez` on a private dbus-daemon, shaped like BlueZ 5.66 on
Debian 12, whose Meshtastic peripherals are backed by the project's radio simulator over TCP.

It speaks raw D-Bus through dbus-fast's low-level message handler rather than dbus-fast's
`ServiceInterface`, because BlueZ's behaviour depends on things a `ServiceInterface` method
cannot see or control: the caller's bus name (agents, discovery sessions and notify sessions
belong to the caller; `Device1.Pair` asks the caller's own agent first), replies sent long after
the call (Connect, Disconnect, a read waiting for the agent), and the order of replies and
signals (BlueZ sends a reply before the signals of the same main-loop turn, but a read's `Value`
signal before its reply).

The comments below say which source each behaviour comes from (BlueZ 5.66: src/device.c,
src/gatt-client.c, src/adapter.c, src/agent.c, src/shared/att.c, gdbus/object.c; libdbus:
dbus-connection.c; Meshtastic firmware: src/nimble/NimbleBluetooth.cpp). Every object carries
`org.freedesktop.DBus.Introspectable` and (if it has properties) `org.freedesktop.DBus.Properties`
besides its own interfaces, as gdbus registers them, and `GetManagedObjects`, `InterfacesAdded`
and `InterfacesRemoved` list them too.

Use: `FakeBlueZ(bus_address, [Peripheral(...)], sim_port=...)`, `.start()`, the control methods
(thread-safe, synchronous), `.stop()`. The asyncio loop runs in a background thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
import threading
import time
from typing import Any, Callable, Optional

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from meshtastic.protobuf import mesh_pb2

# --- UUIDs -----------------------------------------------------------------------------------
MESH_SERVICE = "6ba1b218-15a8-461f-9fa8-5dcae273eafd"
TORADIO = "f75c76d2-129e-4dad-a1dd-7866124401e7"
FROMRADIO = "2c55e69e-4993-11ed-b878-0242ac120002"
FROMNUM = "ed9da18c-a800-4f66-a670-aa7547e34453"
LOGRADIO = "5a3d6e49-06e6-4423-9944-e9de8cdf9547"
GAP_SERVICE = "00001800-0000-1000-8000-00805f9b34fb"
GATT_SERVICE = "00001801-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
SERVICE_CHANGED = "00002a05-0000-1000-8000-00805f9b34fb"
CCCD = "00002902-0000-1000-8000-00805f9b34fb"
CHAR_NAMES = {TORADIO: "ToRadio", FROMRADIO: "FromRadio", FROMNUM: "FromNum", LOGRADIO: "LogRadio",
              SERVICE_CHANGED: "ServiceChanged"}

# --- D-Bus names -----------------------------------------------------------------------------
BLUEZ = "org.bluez"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
AGENT_MANAGER = "org.bluez.AgentManager1"
AGENT = "org.bluez.Agent1"
GATT_SERVICE_IFACE = "org.bluez.GattService1"
GATT_CHAR_IFACE = "org.bluez.GattCharacteristic1"
GATT_DESC_IFACE = "org.bluez.GattDescriptor1"
BATTERY = "org.bluez.Battery1"

# Error names and the texts BlueZ (src/error.c, src/gatt-client.c, src/device.c) puts in them.
FAILED = "org.bluez.Error.Failed"
IN_PROGRESS = "org.bluez.Error.InProgress"
NOT_PERMITTED = "org.bluez.Error.NotPermitted"
NOT_SUPPORTED = "org.bluez.Error.NotSupported"
NOT_CONNECTED = "org.bluez.Error.NotConnected"
INVALID_ARGS = "org.bluez.Error.InvalidArguments"
ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
AUTH_FAILED = "org.bluez.Error.AuthenticationFailed"
AUTH_CANCELED = "org.bluez.Error.AuthenticationCanceled"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
DBUS_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"
INVALID_SIGNATURE = "org.freedesktop.DBus.Error.InvalidSignature"

NOT_CONNECTED_TEXT = "Not connected"            # btd_error_failed(msg, "Not connected")
NOT_PAIRED_TEXT = "Not paired"                  # create_gatt_dbus_error(): insufficient auth/encryption
ATT_UNLIKELY_TEXT = "Operation failed with ATT error: 0x0e"  # a request cut off by a link loss or ATT timeout
OUT_OF_RANGE_TEXT = "le-connection-abort-by-local"           # btd_error_le_conn_from_errno(-ECONNABORTED)

# Capabilities that can type a passkey (src/agent.c parse_io_capability: "" is KeyboardDisplay).
PASSKEY_CAPABLE = {"KeyboardOnly", "KeyboardDisplay", ""}
CAPABILITIES = {"", "DisplayOnly", "DisplayYesNo", "KeyboardOnly", "NoInputNoOutput", "KeyboardDisplay"}
DISCOVERY_FILTER_KEYS = {"UUIDs": "as", "RSSI": "n", "Pathloss": "q", "Transport": "s",
                         "DuplicateData": "b", "Discoverable": "b", "Pattern": "s"}
MAX_VALUE = 512  # ATT's longest attribute value; the firmware's MAX_TO_FROM_RADIO_SIZE


class BlueZError(Exception):
    """An error reply: D-Bus error name and text."""

    def __init__(self, name: str, text: str):
        super().__init__(f"{name}: {text}")
        self.name, self.text = name, text


def _no_such_method(msg: Message, found_object: bool) -> BlueZError:
    # libdbus (dbus-connection.c) answers a call nobody handled; UnknownObject when no object
    # is registered at the path. The text keeps libdbus's trailing newline.
    text = f'Method "{msg.member}" with signature "{msg.signature}" on interface "{msg.interface}" doesn\'t exist\n'
    return BlueZError(UNKNOWN_METHOD if found_object else UNKNOWN_OBJECT, text)


@dataclasses.dataclass
class Peripheral:
    """One Meshtastic radio as the fake shows it.

    known: the object exists from the start (a paired or cached device); otherwise it appears
      (InterfacesAdded) only while a discovery whose filter matches it runs.
    pin: the passkey when the radio requires pairing (bluetooth.mode FIXED_PIN / RANDOM_PIN);
      None for NO_PIN. paired: already bonded (with known=True, like after `bluetoothctl pair`).
    gatt_cache: BlueZ's main.conf `Cache = always` (Debian 12's default): GATT objects stay
      after a disconnect. False: they are removed with the link.
    sim_port: the simulator TCP port behind this radio (defaults to the FakeBlueZ's sim_port;
      with none at all the radio connects but nothing answers: writes vanish, reads are empty).
    handle_base: the Meshtastic service's first handle: paths are service%04x/char%04x/desc%04x.
    """

    address: str = "AA:BB:CC:DD:EE:01"
    name: Optional[str] = "Meshtastic_ee01"
    known: bool = True
    pin: Optional[int] = None
    paired: bool = False
    gatt_cache: bool = True
    address_type: str = "public"
    rssi: int = -60
    manufacturer_data: Optional[dict[int, bytes]] = None
    advertised_uuids: tuple[str, ...] = (MESH_SERVICE,)
    sim_port: Optional[int] = None
    handle_base: int = 0x000C
    battery_level: Optional[int] = 100
    fromradio_uuid: str = FROMRADIO
    # Timing: how long BlueZ takes to drop a link on Disconnect (BlueZ waits 2 s), how long a
    # Connect to an out-of-range radio takes to fail, the ATT round trip of every request, how
    # long a FromRadio read in the config phase waits for the simulator, the ATT transaction
    # timeout after which BlueZ gives a hung request up and drops the link.
    disconnect_delay: float = 0.2
    connect_fail_delay: float = 0.3
    att_latency: float = 0.0
    config_read_wait: float = 2.0
    att_timeout: Optional[float] = 30.0
    firmware_read_wait: float = 20.0


class _Char:
    def __init__(self, path, uuid, flags, service_path, handle):
        self.path, self.uuid, self.flags, self.service_path, self.handle = path, uuid, flags, service_path, handle
        self.read_op: Optional[tuple[int, asyncio.Future]] = None  # a pending read others join
        self.write_busy = False
        self.notify_owners: list[str] = []  # bus names with a notify session (StartNotify)
        self.cccd = False                    # notifications enabled on the peripheral, this link
        self.cccd_path: Optional[str] = None


class _Device:
    """The state of one peripheral: BlueZ's view and the firmware's."""

    def __init__(self, cfg: Peripheral, adapter_path: str):
        self.cfg = cfg
        self.path = f"{adapter_path}/dev_{cfg.address.replace(':', '_')}"
        self.exported = False          # the Device1 object is on the bus
        self.gatt_exported = False     # its GATT objects are on the bus
        self.connected = False
        self.connecting = False
        self.resolved = False
        self.disconnecting: list[Message] = []  # Disconnect calls answered when the link is down
        self.disconnect_task: Optional[asyncio.Task] = None
        self.paired = cfg.paired and cfg.known
        self.trusted = self.paired
        self.blocked = False
        self.alias: Optional[str] = None
        self.in_range = True
        self.temporary = not cfg.known
        self.temporary_timer: Optional[asyncio.TimerHandle] = None
        self.pairing: Optional[asyncio.Task] = None  # a Pair call being served
        self.pair_agent: Optional[str] = None        # the agent asked in the current pairing
        self.fail_connect: Optional[dict] = None
        self.stall_kind: Optional[str] = None
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.link_lost = asyncio.Event()
        self.att_lock = asyncio.Lock()
        self.chars: dict[str, _Char] = {}      # by path
        self.gatt_paths: list[str] = []        # every GATT object, parents first
        self.gatt_tree: list[tuple[str, list[tuple[str, list[str]]]]] = []  # service -> chars -> descs
        # The firmware side (NimbleBluetooth.cpp / PhoneAPI): the TCP session to the simulator
        # stands for the radio's PhoneAPI.
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.reader_task: Optional[asyncio.Task] = None
        self.api_closed_by_client = False
        self.from_radio: list[bytes] = []
        self.frame_arrived = asyncio.Event()
        self.last_to_radio = bytearray(MAX_VALUE)  # memcmp'd against each write, zeroed on disconnect
        self.config_nonce: Optional[int] = None     # a want_config_id is being answered
        self.held_writes: list[bytes] = []          # a hung firmware's fromPhoneQueue (3 deep)
        self.from_num = 0
        self.stats = dict(connect_calls=0, connects=0, connect_failures=0, disconnect_calls=0, disconnects=0,
                          sessions=0, writes_accepted=0, writes_dropped=0, writes_rejected=0, reads=0,
                          reads_empty=0, pair_attempts=0, paired=0, passkeys=[], notifications=0)
        self.ops: list[tuple] = []  # (operation, characteristic or detail, more) in order

    def char_by_uuid(self, uuid: str) -> _Char:
        return next(c for c in self.chars.values() if c.uuid == uuid)


class FakeBlueZ:
    """`org.bluez` on the bus at `bus_address`, with adapter hci0 and the given peripherals."""

    def __init__(self, bus_address: str, peripherals: list[Peripheral], sim_port: Optional[int] = None,
                 adapter_address: str = "00:1A:7D:DA:71:13", adapter_name: str = "meshbus-test",
                 advertise_interval: float = 0.5, temporary_timeout: float = 180.0,
                 agent_timeout: float = 60.0):
        self.bus_address = bus_address
        self.sim_port = sim_port
        self.adapter_path = "/org/bluez/hci0"
        self.adapter_address = adapter_address
        self.adapter_name = adapter_name
        self.advertise_interval = advertise_interval
        self.temporary_timeout = temporary_timeout
        self.agent_timeout = agent_timeout
        self._configs = list(peripherals)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._bus: Optional[MessageBus] = None
        self._objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self._writable: dict[tuple[str, str], Callable[[str, Any], None]] = {}
        self._pending: dict[str, dict[str, tuple[set, set]]] = {}  # path -> iface -> (changed, invalidated)
        self._flush_scheduled: set[str] = set()
        self._devices: dict[str, _Device] = {}
        self._tasks: set[asyncio.Task] = set()
        self._agents: dict[str, tuple[str, str]] = {}  # owner -> (path, capability)
        self._default_agents: list[str] = []           # owners, the head is the default
        self._agents_ever: list[dict] = []
        self._sessions: dict[str, Optional[dict]] = {}  # discovering owners -> filter
        self._preset_filters: dict[str, dict] = {}
        self._discovery_filters_seen: list[dict] = []
        self._found: set[str] = set()                   # device paths seen by this discovery
        self._advertiser: Optional[asyncio.Task] = None
        self._calls: list[tuple[str, str, str, str]] = []  # (sender, path, interface, member)

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "FakeBlueZ":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._setup())
            except BaseException as error:  # reported to start()
                failure.append(error)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._teardown())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-bluez", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"fake BlueZ did not own {BLUEZ} on {self.bus_address} within {timeout} s")
        if failure:
            raise RuntimeError(f"fake BlueZ could not start on {self.bus_address}: {failure[0]!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    async def _setup(self):
        self._bus = await MessageBus(bus_address=self.bus_address).connect()
        self._bus.add_message_handler(self._on_message)
        await self._bus_call("AddMatch", "s", ["type='signal',sender='org.freedesktop.DBus',"
                                                 "interface='org.freedesktop.DBus',member='NameOwnerChanged'"])
        self._export_static()
        for cfg in self._configs:
            if cfg.sim_port is None:  # a copy: the caller's Peripheral stays as given
                cfg = dataclasses.replace(cfg, sim_port=self.sim_port)
            dev = _Device(cfg, self.adapter_path)
            self._devices[cfg.address.upper()] = dev
            if cfg.known:
                self._export_device(dev, signal=False)
                if cfg.gatt_cache:  # a device met before: its GATT database is in the cache
                    self._export_gatt(dev, signal=False)
                    self._objects[dev.path][DEVICE]["UUIDs"] = Variant("as", self._device_uuids(dev))
        reply = await self._bus_call("RequestName", "su", [BLUEZ, 4])  # DO_NOT_QUEUE
        if reply.body[0] != 1:
            raise RuntimeError(f"could not own {BLUEZ}: RequestName answered {reply.body[0]}")

    async def _teardown(self):
        for dev in self._devices.values():
            self._close_session(dev)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._bus:
            self._bus.disconnect()

    async def _bus_call(self, member, signature, body):
        return await self._bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                            interface="org.freedesktop.DBus", member=member,
                                            signature=signature, body=body))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _in_loop(self, fn: Callable, *args, timeout: float = 10.0):
        """Runs fn(*args) (a function or coroutine function) on the fake's loop; returns its result."""
        async def call():
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    # ---- test controls (thread-safe) ----------------------------------------------------------

    def device_path(self, address: str) -> str:
        return self._dev(address).path

    def characteristic_path(self, address: str, uuid: str) -> str:
        """The object path of this radio's characteristic with that UUID (as clients find it)."""
        def find():
            prefix = self._dev(address).path + "/"
            return next(path for path, obj in self._objects.items() if path.startswith(prefix)
                        and obj.get(GATT_CHAR_IFACE, {}).get("UUID", Variant("s", "")).value == uuid)
        return self._in_loop(find)

    def object_paths(self) -> list[str]:
        return self._in_loop(lambda: list(self._objects))

    def stats(self, address: str) -> dict:
        """Counters: connect_calls, connects, connect_failures, disconnect_calls, disconnects
        (links that went down), sessions (TCP sessions to the simulator), writes_accepted,
        writes_dropped (repeats the firmware ignored), writes_rejected, reads (FromRadio reads
        answered), reads_empty, pair_attempts, paired, passkeys (what agents answered),
        notifications (FromNum notifications sent); and connected, paired_now, exported."""
        def snapshot():
            dev = self._dev(address)
            out = {k: (list(v) if isinstance(v, list) else v) for k, v in dev.stats.items()}
            out.update(connected=dev.connected, paired_now=dev.paired, exported=dev.exported,
                       resolved=dev.resolved, gatt_exported=dev.gatt_exported)
            return out
        return self._in_loop(snapshot)

    def ops(self, address: str) -> list[tuple]:
        """Every GATT operation and link event on this radio, in order, e.g. ("write", "ToRadio",
        "want_config_id"), ("read", "FromRadio", "config_complete_id"), ("start_notify", "FromNum")."""
        return self._in_loop(lambda: list(self._dev(address).ops))

    def agents(self) -> dict:
        """{"registered": [{owner, path, capability}] (ever), "current": {owner: (path, cap)},
        "default": owner or None}."""
        return self._in_loop(lambda: {"registered": list(self._agents_ever), "current": dict(self._agents),
                                      "default": self._default_agents[0] if self._default_agents else None})

    def discovery_filters(self) -> list[dict]:
        """Every SetDiscoveryFilter argument received, unpacked."""
        return self._in_loop(lambda: list(self._discovery_filters_seen))

    def calls(self) -> list[tuple[str, str, str, str]]:
        """Every method call received, in order: (sender, path, interface, member)."""
        return self._in_loop(lambda: list(self._calls))

    def discovering(self) -> bool:
        return self._in_loop(lambda: bool(self._sessions))

    def drop_link(self, address: str) -> None:
        """The radio's link is lost (out of range, reset): one PropertiesChanged with
        ServicesResolved=false and Connected=false, the simulator session closed, pending GATT
        calls fail with Failed "Operation failed with ATT error: 0x0e", GATT objects kept or
        removed as the cache says."""
        self._in_loop(lambda: self._link_down(self._dev(address), "dropped"))

    def set_in_range(self, address: str, in_range: bool) -> None:
        """Out of range: a connected link drops, Connect fails after connect_fail_delay with
        Failed "le-connection-abort-by-local", discovery no longer reports it."""
        def apply():
            dev = self._dev(address)
            dev.in_range = in_range
            if not in_range and dev.connected:
                self._link_down(dev, "out of range")
        self._in_loop(apply)

    def fail_connect(self, address: str, message: str = OUT_OF_RANGE_TEXT, count: Optional[int] = 1,
                     flap: bool = False) -> None:
        """The next `count` Connect calls (None: all, until cleared with count=0) fail with
        org.bluez.Error.Failed `message`. flap=True: the link comes up (Connected=true) and drops
        (Connected=false) around the error, as BlueZ shows le-connection-abort-by-local caused by
        interference; otherwise Connected never changes, as for a radio out of range."""
        def apply():
            self._dev(address).fail_connect = None if count == 0 else {"message": message, "count": count, "flap": flap}
        self._in_loop(apply)

    def stall(self, address: str, on: bool = True, kind: str = "link") -> None:
        """kind "link": the peripheral stops answering ATT requests (its BLE stack hung or the
        radio is beyond reach but the supervision timeout has not expired): reads, writes and
        StartNotify get no reply until unstalled, or until att_timeout, when BlueZ fails the
        request with "Operation failed with ATT error: 0x0e" and drops the link.
        kind "firmware": the BLE stack answers but the firmware's main task is hung: a FromRadio
        read answers empty after firmware_read_wait, writes are acknowledged but held (3 deep,
        more are dropped), nothing arrives from the radio. Unstalling releases what was held."""
        def apply():
            dev = self._dev(address)
            if on:
                dev.stall_kind = kind
                dev.unstalled.clear()
            else:
                dev.stall_kind = None
                dev.unstalled.set()
                held, dev.held_writes = dev.held_writes, []
                for value in held:
                    self._spawn(self._forward(dev, value))
        self._in_loop(apply)

    def remove_device(self, address: str) -> None:
        """As Adapter1.RemoveDevice or a forgotten device: the link (if any) goes down, then
        InterfacesRemoved for its GATT objects and the device; the bond is forgotten. Calls on
        its paths then fail with org.freedesktop.DBus.Error.UnknownObject."""
        self._in_loop(lambda: self._remove_device(self._dev(address)))

    def restore_device(self, address: str) -> None:
        """Brings a removed device back: InterfacesAdded for it (as a fresh discovery); the next
        Connect opens a new simulator session and resolves its services again."""
        def apply():
            dev = self._dev(address)
            if not dev.exported:
                self._export_device(dev, signal=True)
        self._in_loop(apply)

    def emit_log(self, address: str, message: str, source: str = "fake") -> None:
        """The radio sends a LogRecord on LogRadio (a notification, when notifying)."""
        record = mesh_pb2.LogRecord(message=message, source=source, level=mesh_pb2.LogRecord.Level.INFO)
        self._in_loop(lambda: self._notify(self._dev(address), LOGRADIO, record.SerializeToString()))

    def _dev(self, address: str) -> _Device:
        try:
            return self._devices[address.upper()]
        except KeyError:
            raise KeyError(f"no peripheral {address} in this fake BlueZ") from None

    # ---- objects and signals ------------------------------------------------------------------

    def _add_object(self, path: str, interfaces: dict[str, dict[str, Variant]], signal: bool):
        # gdbus lists Introspectable first and adds Properties right after the first interface
        # that has properties (AgentManager1 and ProfileManager1 have none, so /org/bluez has no
        # Properties interface); an interface added later (Battery1) comes after it.
        obj = {INTROSPECTABLE: {}}
        for name, props in interfaces.items():
            obj[name] = props
            if name not in _NO_PROPERTIES and PROPERTIES not in obj:
                obj[PROPERTIES] = {}
        self._objects[path] = obj
        if signal:
            self._signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, obj])

    def _add_interface(self, path: str, name: str, props: dict[str, Variant]):
        self._objects[path][name] = props
        self._signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, {name: props}])

    def _remove_interface(self, path: str, name: str):
        if self._objects.get(path, {}).pop(name, None) is not None:
            self._pending.get(path, {}).pop(name, None)
            self._signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [path, [name]])

    def _remove_object(self, path: str):
        obj = self._objects.pop(path, None)
        self._pending.pop(path, None)
        if obj is not None:
            self._signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [path, list(obj)])

    def _signal(self, path, interface, member, signature, body):
        self._bus.send(Message.new_signal(path, interface, member, signature, body))

    def _get(self, path, iface, name, default=None):
        var = self._objects.get(path, {}).get(iface, {}).get(name)
        return default if var is None else var.value

    def _set(self, path: str, iface: str, flush: bool = False, **values):
        """Sets properties (None removes one) and queues their PropertiesChanged. gdbus sends the
        changes of one main-loop turn as one signal per interface, after that turn's replies;
        flush=True sends it now (BlueZ's G_DBUS_PROPERTY_CHANGED_FLAG_FLUSH, used for Value)."""
        props = self._objects.get(path, {}).get(iface)
        if props is None:
            return
        changed, invalidated = self._pending.setdefault(path, {}).setdefault(iface, (set(), set()))
        for name, value in values.items():
            if value is None:
                if props.pop(name, None) is not None:
                    invalidated.add(name)
                    changed.discard(name)
            else:
                props[name] = value if isinstance(value, Variant) else Variant(_SIGNATURES[name], value)
                changed.add(name)
                invalidated.discard(name)
        if flush:
            self._flush(path)
        elif path not in self._flush_scheduled:
            self._flush_scheduled.add(path)
            self._loop.call_soon(self._flush, path)

    def _flush(self, path: str):
        self._flush_scheduled.discard(path)
        for iface, (changed, invalidated) in self._pending.pop(path, {}).items():
            props = self._objects.get(path, {}).get(iface)
            if props is None or not (changed or invalidated):
                continue
            body = {name: props[name] for name in sorted(changed, key=lambda n: _PROPERTY_ORDER.get(n, 99)) if name in props}
            self._signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [iface, body, sorted(invalidated)])

    def _export_static(self):
        self._add_object("/org/bluez", {AGENT_MANAGER: {}, "org.bluez.ProfileManager1": {}}, signal=False)
        self._add_object(self.adapter_path, {ADAPTER: {
            "Address": Variant("s", self.adapter_address),
            "AddressType": Variant("s", "public"),
            "Name": Variant("s", self.adapter_name),
            "Alias": Variant("s", self.adapter_name),
            "Class": Variant("u", 0x7C0104),
            "Powered": Variant("b", True),
            "Discoverable": Variant("b", False),
            "DiscoverableTimeout": Variant("u", 180),
            "Pairable": Variant("b", True),
            "PairableTimeout": Variant("u", 0),
            "Discovering": Variant("b", False),
            "UUIDs": Variant("as", [GAP_SERVICE, GATT_SERVICE, "0000110e-0000-1000-8000-00805f9b34fb",
                                    "0000110c-0000-1000-8000-00805f9b34fb", "00001200-0000-1000-8000-00805f9b34fb",
                                    "0000180a-0000-1000-8000-00805f9b34fb"]),
            "Modalias": Variant("s", "usb:v1D6Bp0246d0542"),
            "Roles": Variant("as", ["central", "peripheral"]),
        }}, signal=False)
        for name in ("Alias", "Powered", "Discoverable", "DiscoverableTimeout", "Pairable", "PairableTimeout"):
            self._writable[(ADAPTER, name)] = self._set_adapter_property

    def _device_props(self, dev: _Device) -> dict[str, Variant]:
        cfg = dev.cfg
        props = {"Address": Variant("s", cfg.address.upper()), "AddressType": Variant("s", cfg.address_type)}
        if cfg.name:
            props["Name"] = Variant("s", cfg.name)
        props["Alias"] = Variant("s", dev.alias or cfg.name or cfg.address.upper().replace(":", "-"))
        props.update({
            "Paired": Variant("b", dev.paired), "Bonded": Variant("b", dev.paired),
            "Trusted": Variant("b", dev.trusted), "Blocked": Variant("b", dev.blocked),
            "LegacyPairing": Variant("b", False),
        })
        if self._sessions and dev.in_range:
            props["RSSI"] = Variant("n", cfg.rssi)
        props.update({
            "Connected": Variant("b", dev.connected),
            "UUIDs": Variant("as", self._device_uuids(dev)),
            "Adapter": Variant("o", self.adapter_path),
        })
        if cfg.manufacturer_data:
            props["ManufacturerData"] = Variant("a{qv}", {k: Variant("ay", bytes(v)) for k, v in cfg.manufacturer_data.items()})
        props["ServicesResolved"] = Variant("b", dev.resolved)
        return props

    def _device_uuids(self, dev: _Device) -> list[str]:
        if dev.gatt_exported or dev.resolved:  # after a service discovery: every primary service
            services = [GAP_SERVICE, GATT_SERVICE, MESH_SERVICE] + ([BATTERY_SERVICE] if dev.cfg.battery_level is not None else [])
            return sorted(services)
        return sorted(dev.cfg.advertised_uuids)

    def _export_device(self, dev: _Device, signal: bool):
        self._add_object(dev.path, {DEVICE: self._device_props(dev)}, signal=signal)
        dev.exported = True
        for name in ("Alias", "Trusted", "Blocked"):
            self._writable[(DEVICE, name)] = self._set_device_property

    def _export_gatt(self, dev: _Device, signal: bool):
        """The GATT objects of a Meshtastic radio. Paths use the handles (service: its first
        handle; characteristic: its declaration handle; descriptor: its own handle), as
        src/gatt-client.c names them. The Generic Attribute service is exported; Generic Access
        (claimed by BlueZ's gap plugin) and Battery (the battery plugin: Battery1 on the device)
        are not."""
        dev.chars.clear()
        dev.gatt_paths = []
        dev.gatt_tree = []
        base = dev.cfg.handle_base
        layout = [
            (0x0001, GATT_SERVICE, [(0x0002, SERVICE_CHANGED, ["indicate"], 0x0004)]),
            (base, MESH_SERVICE, [
                (base + 1, TORADIO, ["write"], None),
                (base + 3, dev.cfg.fromradio_uuid, ["read"], None),
                (base + 5, FROMNUM, ["read", "notify"], base + 7),
                (base + 8, LOGRADIO, ["read", "notify"], base + 10),
            ]),
        ]
        for start, uuid, chars in layout:
            spath = f"{dev.path}/service{start:04x}"
            self._add_object(spath, {GATT_SERVICE_IFACE: {
                "UUID": Variant("s", uuid), "Device": Variant("o", dev.path),
                "Primary": Variant("b", True), "Includes": Variant("ao", []),
            }}, signal=signal)
            dev.gatt_paths.append(spath)
            service_chars = []
            dev.gatt_tree.append((spath, service_chars))
            for handle, cuuid, flags, cccd in chars:
                cpath = f"{spath}/char{handle:04x}"
                char = _Char(cpath, cuuid, flags, spath, handle)
                props = {"UUID": Variant("s", cuuid), "Service": Variant("o", spath), "Value": Variant("ay", b"")}
                if "notify" in flags or "indicate" in flags:
                    props["Notifying"] = Variant("b", False)
                props["Flags"] = Variant("as", flags)
                if "notify" in flags:
                    props["NotifyAcquired"] = Variant("b", False)
                if dev.connected:
                    props["MTU"] = Variant("q", 517)
                self._add_object(cpath, {GATT_CHAR_IFACE: props}, signal=signal)
                dev.chars[cpath] = char
                dev.gatt_paths.append(cpath)
                service_chars.append((cpath, []))
                if cccd is not None:
                    dpath = f"{cpath}/desc{cccd:04x}"
                    self._add_object(dpath, {GATT_DESC_IFACE: {
                        "UUID": Variant("s", CCCD), "Characteristic": Variant("o", cpath), "Value": Variant("ay", b""),
                    }}, signal=signal)
                    char.cccd_path = dpath
                    dev.gatt_paths.append(dpath)
                    service_chars[-1][1].append(dpath)
        dev.gatt_exported = True

    def _unexport_gatt(self, dev: _Device):
        # BlueZ (gatt-client.c unregister_service) goes service by service: each characteristic's
        # descriptors, then the characteristic, then, after all of them, the service.
        for spath, chars in dev.gatt_tree:
            for cpath, descs in chars:
                for dpath in descs:
                    self._remove_object(dpath)
                self._remove_object(cpath)
            self._remove_object(spath)
        dev.gatt_paths = []
        dev.gatt_tree = []
        dev.chars.clear()
        dev.gatt_exported = False

    # ---- message dispatch ---------------------------------------------------------------------

    def _on_message(self, msg: Message):
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus":
                name, _old, new = msg.body
                if not new and name.startswith(":"):
                    self._owner_gone(name)
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None  # replies to our own calls (agents) go to dbus-fast
        if msg.interface == PEER:
            return None  # Ping/GetMachineId: libdbus answers those on every path, so does dbus-fast
        self._calls.append((msg.sender, msg.path, msg.interface, msg.member))
        self._spawn(self._dispatch(msg))
        return True

    async def _dispatch(self, msg: Message):
        try:
            result = await self._call(msg)
        except BlueZError as error:
            self._reply_error(msg, error)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug in the fake: answer rather than hang the caller
            self._reply_error(msg, BlueZError("org.bluez.Error.Failed", f"fake BlueZ internal error: {error!r}"))
            raise
        if result is not _DEFERRED:
            signature, body = result if result is not None else ("", [])
            self._reply(msg, signature, body)

    def _reply(self, msg: Message, signature: str = "", body: Optional[list] = None):
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            self._bus.send(Message.new_method_return(msg, signature, body or []))

    def _reply_error(self, msg: Message, error: BlueZError):
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            self._bus.send(Message.new_error(msg, error.name, error.text))

    async def _call(self, msg: Message):
        path, iface, member, sig = msg.path, msg.interface, msg.member, msg.signature
        obj = self._objects.get(path)
        if obj is None:
            if path == "/" or any(p.startswith(path.rstrip("/") + "/") for p in self._objects):
                if iface == INTROSPECTABLE and member == "Introspect" and sig == "":
                    return "s", [self._introspect(path)]
                if path == "/" and iface == OBJECT_MANAGER and member == "GetManagedObjects" and sig == "":
                    return "a{oa{sa{sv}}}", [{p: o for p, o in self._objects.items()}]
                raise _no_such_method(msg, found_object=True)
            raise _no_such_method(msg, found_object=False)
        if iface not in obj:
            raise _no_such_method(msg, found_object=True)
        if iface == INTROSPECTABLE and member == "Introspect" and sig == "":
            return "s", [self._introspect(path)]
        if iface == PROPERTIES:
            return self._properties_call(msg, obj)
        handler = _METHODS.get((iface, member))
        if handler is None or handler[0] != sig:
            raise _no_such_method(msg, found_object=True)
        return await handler[1](self, msg)

    def _properties_call(self, msg: Message, obj: dict):
        member, sig = msg.member, msg.signature
        if member == "Get" and sig == "ss":
            iface, name = msg.body
            if iface not in obj:
                raise BlueZError(DBUS_INVALID_ARGS, f"No such interface '{iface}'")
            if name not in obj[iface]:
                raise BlueZError(DBUS_INVALID_ARGS, f"No such property '{name}'")
            return "v", [obj[iface][name]]
        if member == "GetAll" and sig == "s":
            iface = msg.body[0]
            if iface not in obj:
                raise BlueZError(DBUS_INVALID_ARGS, f"No such interface '{iface}'")
            return "a{sv}", [obj[iface]]
        if member == "Set" and sig == "ssv":
            iface, name, value = msg.body
            if iface not in obj:
                raise BlueZError(DBUS_INVALID_ARGS, f"No such interface '{iface}'")
            if name not in _SIGNATURES or (name not in obj[iface] and (iface, name) not in self._writable):
                raise BlueZError(UNKNOWN_PROPERTY, f"No such property '{name}'")
            setter = self._writable.get((iface, name))
            if setter is None:
                raise BlueZError(PROPERTY_READ_ONLY, f"Property '{name}' is not writable")
            if value.signature != _SIGNATURES[name]:
                raise BlueZError(INVALID_SIGNATURE, f"Invalid signature for '{name}'")
            setter(msg.path, name, value.value)
            return None
        raise _no_such_method(msg, found_object=True)

    def _set_adapter_property(self, path, name, value):
        self._set(path, ADAPTER, **{name: value})

    def _set_device_property(self, path, name, value):
        dev = self._device_at(path)
        if name == "Alias":
            dev.alias = value or None
            value = dev.alias or dev.cfg.name or dev.cfg.address.upper().replace(":", "-")
        elif name == "Trusted":
            dev.trusted = value
        elif name == "Blocked":
            dev.blocked = value
            if value and dev.connected:
                self._link_down(dev, "blocked")
        self._set(path, DEVICE, **{name: value})

    def _introspect(self, path: str) -> str:
        prefix = path.rstrip("/") + "/"
        children = sorted({p[len(prefix):].split("/")[0] for p in self._objects if p.startswith(prefix)})
        lines = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
                 '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', "<node>"]
        interfaces = self._objects.get(path) or ({OBJECT_MANAGER: {}} if path == "/" else {})
        for iface in interfaces:
            lines.append(f'<interface name="{iface}">')
            for (i, member), (sig, _fn) in _METHODS.items():
                if i == iface:
                    lines.append(f'<method name="{member}">' + "".join(
                        f'<arg type="{t}" direction="in"/>' for t in _split_signature(sig)) + "</method>")
            for name, var in self._objects.get(path, {}).get(iface, {}).items():
                access = "readwrite" if (iface, name) in self._writable else "read"
                lines.append(f'<property name="{name}" type="{var.signature}" access="{access}"/>')
            lines.append("</interface>")
        lines += [f'<node name="{child}"/>' for child in children] + ["</node>"]
        return "\n".join(lines)

    def _device_at(self, path: str) -> _Device:
        for dev in self._devices.values():
            if path == dev.path or path.startswith(dev.path + "/"):
                return dev
        raise BlueZError(UNKNOWN_OBJECT, f"no object at {path}")

    def _owner_gone(self, owner: str):
        """A client left the bus: its agent, discovery session and notify sessions end with it."""
        if owner in self._agents:
            self._agents.pop(owner)
            if owner in self._default_agents:
                self._default_agents.remove(owner)
        self._preset_filters.pop(owner, None)
        if owner in self._sessions:
            self._sessions.pop(owner)
            if not self._sessions:
                self._discovery_stopped()
        for dev in self._devices.values():
            for char in dev.chars.values():
                if owner in char.notify_owners:
                    char.notify_owners.remove(owner)
                    self._update_notifying(dev, char)

    # ---- AgentManager1 ------------------------------------------------------------------------

    async def _register_agent(self, msg):
        path, capability = msg.body
        if msg.sender in self._agents:
            raise BlueZError(ALREADY_EXISTS, "Already Exists")
        if capability not in CAPABILITIES:
            raise BlueZError(INVALID_ARGS, "Invalid arguments in method call")
        self._agents[msg.sender] = (path, capability)
        self._agents_ever.append({"owner": msg.sender, "path": path, "capability": capability})
        return None

    async def _unregister_agent(self, msg):
        agent = self._agents.get(msg.sender)
        if agent is None or agent[0] != msg.body[0]:
            raise BlueZError(DOES_NOT_EXIST, "Does Not Exist")
        self._agents.pop(msg.sender)
        if msg.sender in self._default_agents:
            self._default_agents.remove(msg.sender)
        return None

    async def _request_default_agent(self, msg):
        agent = self._agents.get(msg.sender)
        if agent is None or agent[0] != msg.body[0]:
            raise BlueZError(DOES_NOT_EXIST, "Does Not Exist")
        if msg.sender in self._default_agents:
            self._default_agents.remove(msg.sender)
        self._default_agents.insert(0, msg.sender)
        return None

    # ---- Adapter1: discovery ------------------------------------------------------------------

    async def _set_discovery_filter(self, msg):
        raw = msg.body[0]
        parsed = {}
        for key, var in raw.items():
            if DISCOVERY_FILTER_KEYS.get(key) != var.signature:
                raise BlueZError(INVALID_ARGS, "Invalid arguments in method call")
            parsed[key] = var.value
        if "RSSI" in parsed and "Pathloss" in parsed:
            raise BlueZError(INVALID_ARGS, "Invalid arguments in method call")
        if parsed.get("Transport", "auto") not in ("auto", "le", "bredr"):
            raise BlueZError(INVALID_ARGS, "Invalid arguments in method call")
        self._discovery_filters_seen.append(parsed)
        owner = msg.sender
        if owner in self._sessions:
            self._sessions[owner] = parsed or None
        elif parsed:
            self._preset_filters[owner] = parsed
        else:
            self._preset_filters.pop(owner, None)
        return None

    async def _start_discovery(self, msg):
        owner = msg.sender
        if owner in self._sessions:
            raise BlueZError(IN_PROGRESS, "Operation already in progress")
        first = not self._sessions
        self._sessions[owner] = self._preset_filters.pop(owner, None)
        self._reply(msg)  # BlueZ answers once the controller scans, then signals Discovering
        if first:
            self._found.clear()
            self._set(self.adapter_path, ADAPTER, Discovering=True)
            self._advertiser = self._spawn(self._advertise())
        else:
            self._advertise_once()
        return _DEFERRED

    async def _stop_discovery(self, msg):
        if msg.sender not in self._sessions:
            raise BlueZError(FAILED, "No discovery started")
        filt = self._sessions.pop(msg.sender)
        if filt:
            self._preset_filters[msg.sender] = filt  # a filter outlives its session
        self._reply(msg)
        if not self._sessions:
            self._discovery_stopped()
        return _DEFERRED

    def _discovery_stopped(self):
        if self._advertiser:
            self._advertiser.cancel()
            self._advertiser = None
        self._set(self.adapter_path, ADAPTER, Discovering=False)
        # RSSI belongs to the discovery: BlueZ drops it (an invalidated property) when it ends,
        # and forgets devices it only met there after TEMP_DEV_TIMEOUT unless they connected.
        for dev in self._devices.values():
            if dev.path in self._found and dev.exported:
                self._set(dev.path, DEVICE, RSSI=None)
                if dev.temporary and not dev.connected:
                    self._arm_temporary_timer(dev)
        self._found.clear()

    def _arm_temporary_timer(self, dev: _Device):
        if dev.temporary_timer:
            dev.temporary_timer.cancel()
        dev.temporary_timer = self._loop.call_later(self.temporary_timeout, self._expire_temporary, dev)

    def _expire_temporary(self, dev: _Device):
        dev.temporary_timer = None
        if dev.temporary and not dev.connected and dev.exported:
            self._remove_device(dev)

    def _matches(self, dev: _Device) -> bool:
        """Whether any running discovery reports this radio (src/adapter.c is_filter_match)."""
        for filt in self._sessions.values():
            if not filt:
                return True
            if filt.get("Transport") == "bredr":
                continue
            uuids = {u.lower() for u in filt.get("UUIDs", [])}
            if uuids and not uuids & {u.lower() for u in dev.cfg.advertised_uuids}:
                continue
            if "RSSI" in filt and dev.cfg.rssi < filt["RSSI"]:
                continue
            pattern = filt.get("Pattern", "")
            if pattern and not (dev.cfg.address.upper().startswith(pattern.upper())
                                or (dev.cfg.name or "").startswith(pattern)):
                continue
            return True
        return False

    async def _advertise(self):
        tick = 0
        while self._sessions:
            self._advertise_once(tick)
            tick += 1
            await asyncio.sleep(self.advertise_interval)

    def _advertise_once(self, tick: int = 0):
        """One round of advertisements: a device found for the first time appears with
        InterfacesAdded (RSSI included), a known one gets a PropertiesChanged of RSSI."""
        for dev in self._devices.values():
            if not dev.in_range or not self._matches(dev):
                continue
            rssi = dev.cfg.rssi - (tick % 2) * 2  # a moving value, so BlueZ reports it
            if not dev.exported:
                dev.temporary = True
                self._found.add(dev.path)
                self._export_device(dev, signal=True)
            else:
                self._found.add(dev.path)
                if dev.temporary_timer:
                    dev.temporary_timer.cancel()
                    dev.temporary_timer = None
                self._set(dev.path, DEVICE, RSSI=rssi)

    async def _remove_device_call(self, msg):
        dev = next((d for d in self._devices.values() if d.path == msg.body[0] and d.exported), None)
        if dev is None:
            raise BlueZError(DOES_NOT_EXIST, "Does Not Exist")
        if dev.connected:  # answered once the link is down
            dev.disconnecting.append(msg)
            self._begin_disconnect(dev, then_remove=True)
            return _DEFERRED
        self._remove_device(dev)
        return None

    async def _get_discovery_filters(self, msg):
        return "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]]

    def _remove_device(self, dev: _Device):
        if dev.connected:
            self._link_down(dev, "removed")
        if dev.temporary_timer:
            dev.temporary_timer.cancel()
            dev.temporary_timer = None
        if dev.gatt_exported:
            self._unexport_gatt(dev)
        self._remove_object(dev.path)
        dev.exported = False
        dev.resolved = False
        dev.paired = dev.trusted = False  # RemoveDevice forgets the bond
        dev.ops.append(("removed",))

    # ---- Device1 ------------------------------------------------------------------------------

    async def _connect(self, msg):
        dev = self._device_at(msg.path)
        dev.stats["connect_calls"] += 1
        if dev.connected:
            return None  # already connected: success, nothing happens
        if dev.connecting:
            raise BlueZError(FAILED, "Operation already in progress")  # strerror(EALREADY)
        dev.connecting = True
        try:
            await self._bring_up(dev, msg)
        finally:
            dev.connecting = False
        return None

    async def _bring_up(self, dev: _Device, msg: Optional[Message]):
        """Connects: the link (Connected=true), the reply, then service resolution."""
        dev.temporary = False
        if dev.temporary_timer:
            dev.temporary_timer.cancel()
            dev.temporary_timer = None
        fault = dev.fail_connect
        if fault is not None:
            if fault["count"] is not None:
                fault["count"] -= 1
                if fault["count"] <= 0:
                    dev.fail_connect = None
            await self._connect_fails(dev, fault["message"], fault["flap"])
        if not dev.in_range:
            await self._connect_fails(dev, OUT_OF_RANGE_TEXT, False)
        try:
            await self._open_session(dev)
        except OSError:  # the simulator refuses: the radio is not there
            await self._connect_fails(dev, OUT_OF_RANGE_TEXT, False)
        dev.connected = True
        dev.link_lost = asyncio.Event()
        dev.stats["connects"] += 1
        dev.ops.append(("connected",))
        self._set(dev.path, DEVICE, Connected=True, flush=True)
        if dev.gatt_exported:
            for char in dev.chars.values():
                self._set(char.path, GATT_CHAR_IFACE, MTU=517)
        if msg is not None:
            self._reply(msg)
        self._spawn(self._resolve_services(dev))

    async def _connect_fails(self, dev: _Device, message: str, flap: bool):
        dev.stats["connect_failures"] += 1
        dev.ops.append(("connect_failed", message))
        await asyncio.sleep(dev.cfg.connect_fail_delay)
        if flap:
            self._set(dev.path, DEVICE, Connected=True, flush=True)
            self._loop.call_later(0.05, lambda: self._set(dev.path, DEVICE, Connected=False))
        raise BlueZError(FAILED, message)

    async def _resolve_services(self, dev: _Device):
        """After the reply: GATT objects appear (unless cached), then UUIDs and
        ServicesResolved=true, then the battery plugin's Battery1; notify sessions that survived
        in the cache are re-armed on the peripheral."""
        await asyncio.sleep(0.02)
        if not dev.connected:
            return
        if not dev.gatt_exported:
            self._export_gatt(dev, signal=True)
        dev.resolved = True
        self._set(dev.path, DEVICE, UUIDs=self._device_uuids(dev), ServicesResolved=True, flush=True)
        for char in dev.chars.values():
            if char.notify_owners and not char.cccd:
                char.cccd = True
                self._update_notifying(dev, char)
        if dev.cfg.battery_level is not None and BATTERY not in self._objects.get(dev.path, {}):
            self._add_interface(dev.path, BATTERY, {"Percentage": Variant("y", dev.cfg.battery_level),
                                                    "Source": Variant("s", "GATT Battery Service")})

    async def _disconnect(self, msg):
        dev = self._device_at(msg.path)
        dev.stats["disconnect_calls"] += 1
        if not dev.connected:
            return None
        dev.disconnecting.append(msg)  # BlueZ answers when the link is down
        self._begin_disconnect(dev)
        return _DEFERRED

    def _begin_disconnect(self, dev: _Device, then_remove: bool = False):
        if dev.disconnect_task is None:
            async def later():
                await asyncio.sleep(dev.cfg.disconnect_delay)
                dev.disconnect_task = None
                if dev.connected:
                    self._link_down(dev, "disconnected")
                if then_remove and dev.exported:
                    self._remove_device(dev)
            dev.disconnect_task = self._spawn(later())

    def _link_down(self, dev: _Device, reason: str):
        """The link is gone: pending Disconnect calls are answered, requests in flight fail,
        the simulator session closes, GATT objects go (cache off), then one PropertiesChanged
        with ServicesResolved=false and Connected=false."""
        if not dev.connected:
            return
        dev.connected = False
        dev.resolved = False
        dev.link_lost.set()
        dev.stats["disconnects"] += 1
        dev.ops.append(("disconnected", reason))
        if dev.disconnect_task and reason != "disconnected":
            dev.disconnect_task.cancel()
            dev.disconnect_task = None
        waiting, dev.disconnecting = dev.disconnecting, []
        for call in waiting:
            self._reply(call)
        self._close_session(dev)
        # the firmware's BLE session ends (NimbleBluetooth onDisconnect)
        dev.last_to_radio = bytearray(MAX_VALUE)
        dev.from_radio.clear()
        dev.held_writes.clear()
        dev.config_nonce = None
        self._remove_interface(dev.path, BATTERY)
        for char in dev.chars.values():
            char.cccd = False  # per connection; BlueZ keeps the sessions (and Notifying) in its cache
        if dev.gatt_exported:
            if dev.cfg.gatt_cache:
                for char in dev.chars.values():
                    self._objects[char.path][GATT_CHAR_IFACE].pop("MTU", None)
            else:
                self._unexport_gatt(dev)
        self._set(dev.path, DEVICE, ServicesResolved=False, Connected=False)
        if dev.temporary and not self._sessions:
            self._arm_temporary_timer(dev)

    async def _pair(self, msg):
        dev = self._device_at(msg.path)
        if dev.pairing is not None:
            raise BlueZError(IN_PROGRESS, "In Progress")
        if dev.paired:
            raise BlueZError(ALREADY_EXISTS, "Already Exists")
        dev.temporary = False
        owner = msg.sender if msg.sender in self._agents else (self._default_agents[0] if self._default_agents else None)
        dev.pairing = asyncio.current_task()
        try:
            if not dev.connected:
                await self._bring_up(dev, None)
            ok = await self._run_pairing(dev, owner)
            if not ok:
                raise BlueZError(AUTH_FAILED, "Authentication Failed")
            while dev.connected and not dev.resolved:  # Pair answers after the services resolved
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise BlueZError(AUTH_CANCELED, "Authentication Canceled") from None
        finally:
            dev.pairing = None
        return None

    async def _cancel_pairing(self, msg):
        dev = self._device_at(msg.path)
        if dev.pairing is None:
            raise BlueZError(DOES_NOT_EXIST, "Does Not Exist")
        owner = dev.pair_agent
        if owner in self._agents:  # BlueZ tells the agent its request is void
            self._bus.send(Message(destination=owner, path=self._agents[owner][0], interface=AGENT,
                                   member="Cancel", flags=MessageFlag.NO_REPLY_EXPECTED))
        dev.pairing.cancel()
        return None

    async def _run_pairing(self, dev: _Device, owner: Optional[str]) -> bool:
        """SMP with the radio: True when bonded. A radio without a pin pairs "just works"; one
        with a pin needs MITM, so the agent must type the passkey (KeyboardOnly/KeyboardDisplay);
        DisplayYesNo or NoInputNoOutput (or no agent) end in Just Works, which the radio refuses."""
        dev.stats["pair_attempts"] += 1
        dev.pair_agent = owner
        dev.ops.append(("pairing", owner))
        if dev.cfg.pin is None:
            ok = True
        elif owner is None or self._agents[owner][1] not in PASSKEY_CAPABLE:
            ok = False
        else:
            path = self._agents[owner][0]
            call = Message(destination=owner, path=path, interface=AGENT, member="RequestPasskey",
                           signature="o", body=[dev.path])
            try:
                reply = await asyncio.wait_for(self._bus.call(call), self.agent_timeout)
            except asyncio.TimeoutError:
                self._bus.send(Message(destination=owner, path=path, interface=AGENT, member="Cancel",
                                       flags=MessageFlag.NO_REPLY_EXPECTED))
                reply = None
            if reply is not None and reply.message_type == MessageType.METHOD_RETURN and reply.signature == "u":
                dev.stats["passkeys"].append(reply.body[0])
                ok = reply.body[0] == dev.cfg.pin
            else:
                dev.ops.append(("agent_error", reply.error_name if reply is not None else "timeout"))
                ok = False
        if ok:
            dev.paired = True
            dev.stats["paired"] += 1
            self._set(dev.path, DEVICE, Paired=True, Bonded=True)
        dev.ops.append(("paired" if ok else "pairing_failed",))
        return ok

    # ---- GATT ---------------------------------------------------------------------------------

    def _char_at(self, path: str) -> tuple[_Device, _Char]:
        dev = self._device_at(path)
        return dev, dev.chars[path]

    async def _att(self, dev: _Device, char: Optional[_Char], operation):
        """One ATT request on the link: requests queue behind each other (one outstanding per
        bearer); a hung peripheral leaves it unanswered until the ATT timeout; insufficient
        authentication makes BlueZ pair on demand with the default agent and retry."""
        async with dev.att_lock:
            if not dev.connected:
                raise BlueZError(FAILED, ATT_UNLIKELY_TEXT)
            if dev.stall_kind == "link":
                await self._wait_unstalled(dev)
            if dev.cfg.att_latency:
                await self._until_link_lost(dev, asyncio.sleep(dev.cfg.att_latency))
            if dev.cfg.pin is not None and not dev.paired and char is not None and char.uuid != SERVICE_CHANGED:
                owner = self._default_agents[0] if self._default_agents else None
                ok = await self._until_link_lost(dev, self._run_pairing(dev, owner))
                if not ok:
                    raise BlueZError(NOT_PERMITTED, NOT_PAIRED_TEXT)
            return await self._until_link_lost(dev, operation())

    async def _until_link_lost(self, dev: _Device, awaitable):
        """Awaits `awaitable` unless the link goes down first: then the request fails as BlueZ
        fails requests cut off by a disconnection (ATT error 0x0e, "Unlikely Error")."""
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(dev.link_lost.wait())
        done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        if task in done:
            return task.result()
        task.cancel()
        raise BlueZError(FAILED, ATT_UNLIKELY_TEXT)

    async def _wait_unstalled(self, dev: _Device):
        timeout = dev.cfg.att_timeout
        try:
            await self._until_link_lost(dev, asyncio.wait_for(dev.unstalled.wait(), timeout))
        except asyncio.TimeoutError:
            # bt_att's 30 s transaction timeout: the request fails, then the link is shut down
            dev.ops.append(("att_timeout",))
            self._loop.call_soon(self._link_down, dev, "ATT timeout")
            raise BlueZError(FAILED, ATT_UNLIKELY_TEXT) from None

    @staticmethod
    def _options(msg: Message, index: int) -> tuple[int, Optional[str]]:
        offset, kind = 0, None
        for key, var in msg.body[index].items():
            if key.lower() == "offset":
                if var.signature != "q":
                    raise BlueZError(INVALID_ARGS, "Invalid arguments in method call")
                offset = var.value
            elif key.lower() == "type":
                if var.signature != "s":
                    raise BlueZError(INVALID_ARGS, "Invalid arguments in method call")
                kind = var.value
        return offset, kind

    async def _read_value(self, msg):
        dev, char = self._char_at(msg.path)
        if not dev.connected:
            raise BlueZError(FAILED, NOT_CONNECTED_TEXT)
        offset, _ = self._options(msg, 0)
        if char.read_op is not None:
            # A read of this characteristic is on its way: BlueZ answers this call with the
            # same value (one packet read twice), or refuses another offset.
            if char.read_op[0] != offset:
                raise BlueZError(IN_PROGRESS, "In Progress")
            value = await asyncio.shield(char.read_op[1])
            return "ay", [value]
        future = self._loop.create_future()
        char.read_op = (offset, future)
        try:
            value = await self._att(dev, char, lambda: self._peripheral_read(dev, char, offset))
        except BlueZError as error:
            future.set_exception(error)
            future.exception()  # consumed here; joiners get it too
            raise
        finally:
            char.read_op = None
        future.set_result(value)
        # BlueZ stores the value in its cache and flushes Value's PropertiesChanged before the reply
        self._set(char.path, GATT_CHAR_IFACE, Value=Variant("ay", value), flush=True)
        return "ay", [value]

    async def _peripheral_read(self, dev: _Device, char: _Char, offset: int) -> bytes:
        if "read" not in char.flags:
            raise BlueZError(NOT_PERMITTED, "Read not permitted")
        if char.uuid == dev.cfg.fromradio_uuid:
            if offset:  # a blob read continues the value already read
                return bytes(self._get(char.path, GATT_CHAR_IFACE, "Value", b""))[offset:]
            value = await self._pop_from_radio(dev)
            dev.stats["reads"] += 1
            if not value:
                dev.stats["reads_empty"] += 1
            dev.ops.append(("read", "FromRadio", _describe_from_radio(value)))
            return value
        if char.uuid == FROMNUM:
            dev.ops.append(("read", "FromNum", dev.from_num))
            return struct.pack("<I", dev.from_num)[offset:]
        dev.ops.append(("read", CHAR_NAMES.get(char.uuid, char.uuid)))
        return b""[offset:]

    async def _pop_from_radio(self, dev: _Device) -> bytes:
        if dev.stall_kind == "firmware":
            # onRead waits for the main task (~20 s in NimbleBluetooth.cpp), then answers empty
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(dev.unstalled.wait(), dev.cfg.firmware_read_wait)
            if dev.stall_kind == "firmware":
                return b""
        if not dev.from_radio and dev.config_nonce is not None:
            # In the config phase the firmware always has the next packet of the burst ready;
            # the simulator sends it over TCP, so wait a little for it to arrive.
            deadline = time.monotonic() + dev.cfg.config_read_wait
            while not dev.from_radio and dev.config_nonce is not None and time.monotonic() < deadline:
                dev.frame_arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(dev.frame_arrived.wait(), deadline - time.monotonic())
        if not dev.from_radio:
            return b""
        value = dev.from_radio.pop(0)
        if dev.config_nonce is not None:
            with contextlib.suppress(Exception):
                parsed = mesh_pb2.FromRadio.FromString(value)
                if parsed.WhichOneof("payload_variant") == "config_complete_id" and parsed.config_complete_id == dev.config_nonce:
                    dev.config_nonce = None
        return value

    async def _write_value(self, msg):
        dev, char = self._char_at(msg.path)
        if not dev.connected:
            raise BlueZError(FAILED, NOT_CONNECTED_TEXT)
        if char.write_busy:
            raise BlueZError(IN_PROGRESS, "In Progress")
        value = bytes(msg.body[0])
        offset, kind = self._options(msg, 1)
        if kind is not None and kind.lower() not in ("request", "command", "reliable"):
            raise BlueZError(NOT_SUPPORTED, "Operation is not supported")
        if kind is None and "write" not in char.flags:
            raise BlueZError(NOT_SUPPORTED, "Operation is not supported")
        if kind is not None and kind.lower() == "command":
            # A write command needs no answer: BlueZ reports success at once. The characteristic
            # has no write-without-response property, so the peripheral ignores it.
            dev.stats["writes_rejected"] += 1
            dev.ops.append(("write_command_ignored", CHAR_NAMES.get(char.uuid, char.uuid)))
            return None
        char.write_busy = True
        try:
            await self._att(dev, char, lambda: self._peripheral_write(dev, char, value, offset))
        finally:
            char.write_busy = False
        return None

    async def _peripheral_write(self, dev: _Device, char: _Char, value: bytes, offset: int):
        if "write" not in char.flags:
            raise BlueZError(NOT_PERMITTED, "Write not permitted")
        if offset + len(value) > MAX_VALUE:
            # a long write the peripheral refuses at execute time: ATT Invalid Attribute Value Length
            dev.stats["writes_rejected"] += 1
            dev.ops.append(("write_rejected", CHAR_NAMES.get(char.uuid, char.uuid), len(value)))
            raise BlueZError(INVALID_ARGS, "Invalid Length")
        if char.uuid != TORADIO:
            return
        # NimbleBluetoothToRadioCallback::onWrite: memcmp with the last accepted write over the
        # new value's length (so a repeat, or a prefix of the last write, is dropped), and only
        # 3 writes wait for the main task.
        if dev.last_to_radio[:len(value)] == value:
            dev.stats["writes_dropped"] += 1
            dev.ops.append(("write_dropped", "ToRadio", _describe_to_radio(value)))
            return
        if dev.stall_kind == "firmware":
            if len(dev.held_writes) >= 3:
                dev.stats["writes_dropped"] += 1
                dev.ops.append(("write_dropped_queue_full", "ToRadio", _describe_to_radio(value)))
                return
            dev.last_to_radio[:len(value)] = value
            dev.held_writes.append(value)
            dev.ops.append(("write_held", "ToRadio", _describe_to_radio(value)))
            return
        dev.last_to_radio[:len(value)] = value
        await self._forward(dev, value)

    async def _forward(self, dev: _Device, value: bytes):
        """Hands a ToRadio to the radio: framed on the simulator's TCP session."""
        dev.stats["writes_accepted"] += 1
        kind = _describe_to_radio(value)
        dev.ops.append(("write", "ToRadio", kind))
        with contextlib.suppress(Exception):
            parsed = mesh_pb2.ToRadio.FromString(value)
            if parsed.WhichOneof("payload_variant") == "want_config_id":
                dev.config_nonce = parsed.want_config_id
                dev.from_radio.clear()
            elif parsed.WhichOneof("payload_variant") == "disconnect":
                dev.api_closed_by_client = True
        if dev.writer is None or dev.writer.is_closing():
            if not dev.connected:
                return
            await self._open_session(dev)  # the client closed the API before: a new session
            if dev.writer is None:
                return
        dev.writer.write(b"\x94\xc3" + struct.pack(">H", len(value)) + value)
        with contextlib.suppress(ConnectionError):
            await dev.writer.drain()

    async def _start_notify(self, msg):
        dev, char = self._char_at(msg.path)
        if dev.disconnect_task is not None:
            raise BlueZError(NOT_CONNECTED, "Not Connected")
        if "notify" not in char.flags and "indicate" not in char.flags:
            raise BlueZError(NOT_SUPPORTED, "Operation is not supported")
        if msg.sender in char.notify_owners:
            return None  # one session per client; a repeat succeeds
        char.notify_owners.append(msg.sender)
        if not dev.connected:
            return None  # registered; armed when the link comes up (cache on)
        dev.ops.append(("start_notify", CHAR_NAMES.get(char.uuid, char.uuid)))
        try:
            await self._att(dev, char, lambda: self._write_cccd(dev, char, True))
        except BlueZError:
            char.notify_owners.remove(msg.sender)
            raise
        self._reply(msg)
        self._update_notifying(dev, char)
        return _DEFERRED

    async def _write_cccd(self, dev, char, on):
        char.cccd = on

    async def _stop_notify(self, msg):
        dev, char = self._char_at(msg.path)
        if msg.sender not in char.notify_owners:
            raise BlueZError(FAILED, "No notify session started")
        char.notify_owners.remove(msg.sender)
        dev.ops.append(("stop_notify", CHAR_NAMES.get(char.uuid, char.uuid)))
        self._reply(msg)
        self._update_notifying(dev, char)
        return _DEFERRED

    def _update_notifying(self, dev: _Device, char: _Char):
        """BlueZ's Notifying turns true when a session is first armed on the peripheral and
        false only when the last session ends; a link loss leaves it as it was."""
        if not char.notify_owners:
            char.cccd = False
        current = self._get(char.path, GATT_CHAR_IFACE, "Notifying", False)
        if char.cccd and not current:
            self._set(char.path, GATT_CHAR_IFACE, Notifying=True)
        elif not char.notify_owners and current:
            self._set(char.path, GATT_CHAR_IFACE, Notifying=False)

    async def _acquire(self, msg):
        _dev, char = self._char_at(msg.path)
        if msg.member == "AcquireWrite" and "write-without-response" not in char.flags:
            raise BlueZError(NOT_SUPPORTED, "Operation is not supported")
        if msg.member == "AcquireNotify" and "notify" not in char.flags:
            raise BlueZError(NOT_SUPPORTED, "Operation is not supported")
        # The fake hands out no sockets: clients (bleak by default) use StartNotify/WriteValue.
        raise BlueZError(NOT_SUPPORTED, "Operation is not supported")

    async def _desc_read(self, msg):
        dev = self._device_at(msg.path)
        if not dev.connected:
            raise BlueZError(FAILED, NOT_CONNECTED_TEXT)
        char = dev.chars[msg.path.rsplit("/", 1)[0]]
        value = (b"\x01\x00" if "notify" in char.flags else b"\x02\x00") if char.cccd else b"\x00\x00"
        value = await self._att(dev, char, lambda: asyncio.sleep(0, value))
        self._set(msg.path, GATT_DESC_IFACE, Value=Variant("ay", value), flush=True)
        return "ay", [value]

    async def _desc_write(self, msg):
        dev = self._device_at(msg.path)
        if not dev.connected:
            raise BlueZError(FAILED, NOT_CONNECTED_TEXT)
        # BlueZ keeps the CCCD to itself: StartNotify/StopNotify write it.
        raise BlueZError(NOT_PERMITTED, "Write not permitted")

    # ---- the radio behind it: the simulator over TCP ------------------------------------------

    async def _open_session(self, dev: _Device):
        if dev.cfg.sim_port is None:
            return  # a radio with nothing behind it: writes vanish, reads are empty
        reader, writer = await asyncio.open_connection("127.0.0.1", dev.cfg.sim_port)
        self._close_session(dev)
        dev.reader, dev.writer = reader, writer
        dev.api_closed_by_client = False
        dev.stats["sessions"] += 1
        dev.reader_task = self._spawn(self._read_frames(dev, reader, writer))

    def _close_session(self, dev: _Device):
        if dev.reader_task:
            dev.reader_task.cancel()
            dev.reader_task = None
        if dev.writer:
            dev.writer.close()
            dev.writer = dev.reader = None

    async def _read_frames(self, dev: _Device, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    start = buffer.find(b"\x94\xc3")
                    if start < 0:
                        del buffer[:-1]
                        break
                    del buffer[:start]
                    if len(buffer) < 4:
                        break
                    length = struct.unpack(">H", buffer[2:4])[0]
                    if length > MAX_VALUE:
                        del buffer[:1]
                        continue
                    if len(buffer) < 4 + length:
                        break
                    payload = bytes(buffer[4:4 + length])
                    del buffer[:4 + length]
                    self._frame_from_radio(dev, payload)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        if dev.writer is writer:  # the simulator ended this session
            dev.reader_task = None
            writer.close()
            dev.writer = dev.reader = None
            if dev.api_closed_by_client:
                dev.ops.append(("api_closed",))  # the BLE link stays; the next write opens a session
            else:
                self._link_down(dev, "radio closed")

    def _frame_from_radio(self, dev: _Device, payload: bytes):
        if dev.stall_kind == "firmware":
            return  # the hung main task sends nothing
        dev.from_radio.append(payload)
        dev.frame_arrived.set()
        dev.from_num += 1
        self._notify(dev, FROMNUM, struct.pack("<I", dev.from_num))

    def _notify(self, dev: _Device, uuid: str, value: bytes):
        """A notification: BlueZ stores it and flushes Value's PropertiesChanged at once."""
        if not dev.connected or not dev.chars:
            return
        char = dev.char_by_uuid(uuid)
        if char.cccd and dev.stall_kind != "link":
            dev.stats["notifications"] += 1
            self._set(char.path, GATT_CHAR_IFACE, Value=Variant("ay", value), flush=True)


class _Deferred:
    """Marks a handler that replies by itself (or later)."""


_DEFERRED = _Deferred()

# Property signatures, for Set checks and for values given without a Variant.
_SIGNATURES = {
    "Address": "s", "AddressType": "s", "Name": "s", "Alias": "s", "Class": "u", "Powered": "b",
    "Discoverable": "b", "DiscoverableTimeout": "u", "Pairable": "b", "PairableTimeout": "u",
    "Discovering": "b", "UUIDs": "as", "Modalias": "s", "Roles": "as", "Paired": "b", "Bonded": "b",
    "Trusted": "b", "Blocked": "b", "LegacyPairing": "b", "RSSI": "n", "Connected": "b", "Adapter": "o",
    "ManufacturerData": "a{qv}", "ServicesResolved": "b", "UUID": "s", "Service": "o", "Value": "ay",
    "Notifying": "b", "Flags": "as", "MTU": "q", "NotifyAcquired": "b", "Device": "o", "Primary": "b",
    "Includes": "ao", "Characteristic": "o", "Percentage": "y", "Source": "s",
}
# gdbus sends changed properties in the order of the interface's property table.
_PROPERTY_ORDER = {name: index for index, name in enumerate([
    "Address", "AddressType", "Name", "Alias", "Class", "Paired", "Bonded", "Trusted", "Blocked",
    "LegacyPairing", "RSSI", "Connected", "UUIDs", "Modalias", "Adapter", "ManufacturerData",
    "ServiceData", "TxPower", "ServicesResolved", "Powered", "Discoverable", "DiscoverableTimeout",
    "Pairable", "PairableTimeout", "Discovering", "Roles", "UUID", "Service", "Value", "Notifying",
    "Flags", "NotifyAcquired", "MTU", "Percentage", "Source"])}

_NO_PROPERTIES = {AGENT_MANAGER, "org.bluez.ProfileManager1"}

_METHODS: dict[tuple[str, str], tuple[str, Callable]] = {
    (AGENT_MANAGER, "RegisterAgent"): ("os", FakeBlueZ._register_agent),
    (AGENT_MANAGER, "UnregisterAgent"): ("o", FakeBlueZ._unregister_agent),
    (AGENT_MANAGER, "RequestDefaultAgent"): ("o", FakeBlueZ._request_default_agent),
    (ADAPTER, "StartDiscovery"): ("", FakeBlueZ._start_discovery),
    (ADAPTER, "SetDiscoveryFilter"): ("a{sv}", FakeBlueZ._set_discovery_filter),
    (ADAPTER, "StopDiscovery"): ("", FakeBlueZ._stop_discovery),
    (ADAPTER, "RemoveDevice"): ("o", FakeBlueZ._remove_device_call),
    (ADAPTER, "GetDiscoveryFilters"): ("", FakeBlueZ._get_discovery_filters),
    (DEVICE, "Connect"): ("", FakeBlueZ._connect),
    (DEVICE, "Disconnect"): ("", FakeBlueZ._disconnect),
    (DEVICE, "Pair"): ("", FakeBlueZ._pair),
    (DEVICE, "CancelPairing"): ("", FakeBlueZ._cancel_pairing),
    (GATT_CHAR_IFACE, "ReadValue"): ("a{sv}", FakeBlueZ._read_value),
    (GATT_CHAR_IFACE, "WriteValue"): ("aya{sv}", FakeBlueZ._write_value),
    (GATT_CHAR_IFACE, "AcquireWrite"): ("a{sv}", FakeBlueZ._acquire),
    (GATT_CHAR_IFACE, "AcquireNotify"): ("a{sv}", FakeBlueZ._acquire),
    (GATT_CHAR_IFACE, "StartNotify"): ("", FakeBlueZ._start_notify),
    (GATT_CHAR_IFACE, "StopNotify"): ("", FakeBlueZ._stop_notify),
    (GATT_DESC_IFACE, "ReadValue"): ("a{sv}", FakeBlueZ._desc_read),
    (GATT_DESC_IFACE, "WriteValue"): ("aya{sv}", FakeBlueZ._desc_write),
}


def _split_signature(signature: str) -> list[str]:
    """Splits a D-Bus signature into its complete types (for introspection)."""
    out, i = [], 0
    while i < len(signature):
        j, depth = i, 0
        while True:
            c = signature[j]
            if c in "a":
                j += 1
                continue
            if c in "({":
                depth += 1
            elif c in ")}":
                depth -= 1
            j += 1
            if depth == 0:
                break
        out.append(signature[i:j])
        i = j
    return out


def _describe_to_radio(value: bytes) -> str:
    with contextlib.suppress(Exception):
        return mesh_pb2.ToRadio.FromString(value).WhichOneof("payload_variant") or "empty"
    return "undecodable"


def _describe_from_radio(value: bytes) -> str:
    if not value:
        return "empty"
    with contextlib.suppress(Exception):
        return mesh_pb2.FromRadio.FromString(value).WhichOneof("payload_variant") or "empty"
    return "undecodable"
