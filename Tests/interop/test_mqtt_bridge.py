"""`meshbus mqtt`: the MQTT bridge with Home Assistant discovery, checked against a real
mosquitto broker (started here on an OS-picked loopback port) and a real paho-mqtt client.
The bridge follows a `meshbus run` broker whose simulated slot `sim` has 7 nodes."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import namedtuple
from datetime import datetime

import jinja2
import paho.mqtt.client as mqtt
import pytest
import zmq
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import BINARY, check_config, command, free_port, subscriber, wait_until

SLOT = "sim"
PREFIX = "meshbus"
DISCOVERY = "homeassistant"
# Debian installs mosquitto in /usr/sbin, which is often not on a user's PATH.
MOSQUITTO = shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
NODE_TOPIC = re.compile(rf"{PREFIX}/{SLOT}/node/(![0-9a-f]{{8}})")
DISCOVERY_TOPIC = re.compile(rf"{DISCOVERY}/(sensor|binary_sensor|text|device_tracker)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config")

# What each per-node sensor must say (contract); None means the key must be absent, as Home
# Assistant refuses e.g. a state_class on a timestamp sensor.
SENSORS = {
    "battery": {"field": "battery", "device_class": "battery", "unit_of_measurement": "%", "state_class": "measurement"},
    "voltage": {"field": "voltage", "device_class": "voltage", "unit_of_measurement": "V", "state_class": "measurement"},
    "snr": {"field": "snr", "device_class": None, "unit_of_measurement": "dB", "state_class": "measurement"},
    "rssi": {"field": "rssi", "device_class": "signal_strength", "unit_of_measurement": "dBm", "state_class": "measurement"},
    "last_heard": {"field": "lastHeard", "device_class": "timestamp", "unit_of_measurement": None, "state_class": None},
}

# Keys Home Assistant's MQTT discovery schemas accept (full names, not abbreviations), per
# component: anything else would be an invalid config there.
COMMON_KEYS = {
    "name", "unique_id", "object_id", "default_entity_id", "device", "origin", "availability_topic", "payload_available",
    "payload_not_available", "availability", "availability_mode", "availability_template", "icon", "entity_category",
    "enabled_by_default", "entity_picture", "json_attributes_topic", "json_attributes_template", "qos", "encoding",
}
COMPONENT_KEYS = {
    "sensor": {"state_topic", "value_template", "device_class", "unit_of_measurement", "state_class",
               "suggested_display_precision", "expire_after", "force_update", "last_reset_value_template", "options"},
    "binary_sensor": {"state_topic", "value_template", "device_class", "payload_on", "payload_off", "off_delay",
                      "expire_after", "force_update"},
    "text": {"command_topic", "command_template", "state_topic", "value_template", "min", "max", "mode", "pattern", "retain"},
    "device_tracker": {"state_topic", "value_template", "source_type", "payload_home", "payload_not_home", "payload_reset"},
}
REQUIRED_KEYS = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "text": {"command_topic"},
                 "device_tracker": {"json_attributes_topic"}}
DEVICE_KEYS = {"identifiers", "connections", "name", "manufacturer", "model", "model_id", "sw_version", "hw_version",
               "serial_number", "suggested_area", "via_device", "configuration_url"}
# The flattened node state's keys (contract), each present only when known.
NODE_STATE_KEYS = {"id", "num", "longName", "shortName", "hwModel", "battery", "voltage", "snr", "rssi", "lastHeard",
                   "hopsAway", "latitude", "longitude", "altitude", "powered"}


# MARK: mosquitto


class Mosquitto:
    """A private mosquitto on a loopback port the OS picked: no persistence, anonymous clients.
    Independent of any system-wide mosquitto service (its own config, port and no pid file)."""

    def __init__(self, directory, extra=""):
        self.port = free_port()
        self.log_path = directory / "mosquitto.log"
        self.config = directory / "mosquitto.conf"
        # Started as root, mosquitto would switch to the `mosquitto` account; `user root` keeps
        # it as it is, so nothing depends on that account (the option does nothing for others).
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            + ("user root\n" if os.getuid() == 0 else "")
            + extra)
        self.process = None

    def start(self, timeout=20.0):
        """Starts mosquitto on `self.port` and returns once it accepts TCP connections. If it
        exits at once (the port briefly unavailable, e.g. just after a stop), it is started again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "a") as log:
                process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
            while time.monotonic() < deadline:
                if self._accepts():
                    self.process = process
                    return
                try:
                    process.wait(timeout=0.05)  # doubles as the short pause between connect attempts
                    break  # it exited: try again
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()
                process.wait()
        raise AssertionError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout} s:\n{self.log()}")

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def mosquitto(tmp_path):
    if MOSQUITTO is None:
        pytest.fail("mosquitto is not installed (scripts/test installs Debian's mosquitto package)")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


# MARK: paho-mqtt


Message = namedtuple("Message", "topic payload retain at json")


def decode(payload):
    try:
        return json.loads(payload)
    except ValueError:
        return None


class Recorder:
    """A paho-mqtt client (MQTT 5) that records every message it receives. It subscribes with
    retain-as-published, so `retain` says whether the bridge published the message retained,
    whether it arrived live or from the broker's store."""

    def __init__(self, port, topics):
        self.port = port
        self.changed = threading.Condition()
        self.messages = []
        self.connected = None
        self.subscribed = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:12]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self._wait(lambda: self.connected is not None, 10, "CONNACK")
        assert not self.connected.is_failure, self.connected
        _, mid = self.client.subscribe([(topic, SubscribeOptions(qos=1, retainAsPublished=True)) for topic in topics])
        self._wait(lambda: self.subscribed is not None and self.subscribed[0] == mid, 10, "SUBACK")
        assert not any(code.is_failure for code in self.subscribed[1]), self.subscribed

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.changed:
            self.connected = reason_code
            self.changed.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.changed:
            self.subscribed = (mid, reason_codes)
            self.changed.notify_all()

    def _on_message(self, client, userdata, message):
        record = Message(message.topic, message.payload, bool(message.retain), time.monotonic(), decode(message.payload))
        with self.changed:
            self.messages.append(record)
            self.changed.notify_all()

    def _wait(self, condition, timeout, what):
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise AssertionError(f"no {what} from mosquitto on port {self.port} within {timeout} s")

    def wait_for(self, predicate, timeout=20.0, what="condition"):
        """Waits until predicate(messages so far) is truthy; returns its value."""
        with self.changed:
            value = self.changed.wait_for(lambda: predicate(self.messages), timeout)
            if not value:
                topics = sorted({m.topic for m in self.messages})
                raise AssertionError(f"{what} not met within {timeout} s; {len(self.messages)} messages on {topics}")
            return value

    def wait_for_topics(self, topics, timeout=20.0, what="topics"):
        """Waits until a message arrived on each of `topics`; a timeout names the missing ones."""
        with self.changed:
            if not self.changed.wait_for(lambda: topics <= {m.topic for m in self.messages}, timeout):
                missing = sorted(topics - {m.topic for m in self.messages})
                raise AssertionError(f"{what}: nothing within {timeout} s on {len(missing)} topics: {missing}")

    def all(self):
        """Every message received so far, in order."""
        with self.changed:
            return list(self.messages)

    def latest(self):
        """The last message received on each topic."""
        with self.changed:
            return {m.topic: m for m in self.messages}

    def on(self, topic):
        with self.changed:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic, payload):
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_subscriber(mosquitto):
    """Connects recorders to the test's mosquitto, subscribed to the given topic filters."""
    recorders = []

    def subscribe(*topics):
        recorder = Recorder(mosquitto.port, topics or (f"{DISCOVERY}/#", f"{PREFIX}/#"))
        recorders.append(recorder)
        return recorder

    yield subscribe
    for recorder in recorders:
        recorder.close()


# MARK: The bridge


class Bridge:
    """A running `meshbus mqtt`. A thread reads its stdout lines, so any line (such as a
    second "connected" after a reconnect) can be awaited; stderr goes to a file."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self.args = args
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(Bridge.command(args), stdout=subprocess.PIPE, stderr=log, text=True)
        self.changed = threading.Condition()
        self.lines = []
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @staticmethod
    def command(args):
        return [BINARY, "mqtt", *args]

    def _read(self):
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def wait_line(self, pattern, start=0, timeout=30.0):
        """The first stdout line from index `start` on that fully matches `pattern`: (index, match)."""
        def found():
            for index in range(start, len(self.lines)):
                match = re.fullmatch(pattern, self.lines[index])
                if match:
                    return index, match
            return "closed" if self.closed else None

        with self.changed:
            result = self.changed.wait_for(found, timeout)
            lines = list(self.lines)
        if result is None or result == "closed":
            raise AssertionError(f"meshbus mqtt printed no line matching {pattern!r} within {timeout} s "
                                 f"(exit code {self.process.poll()}); stdout {lines}; stderr:\n{self.stderr()}")
        return result

    def stop(self):
        """SIGTERM, then the exit code (a second call just returns it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)
        return self.process.returncode

    def stderr(self):
        return self.log_path.read_text()[-4000:]


def connected_line(port):
    return rf"mqtt bridge connected to 127\.0\.0\.1:{port}"


def lost_line(port):
    return rf"mqtt bridge lost 127\.0\.0\.1:{port}: .+"


FOLLOWING_LINE = rf"mqtt bridge following {SLOT} at seq (\d+)"


@pytest.fixture
def start_bridge(tmp_path, start_broker, mosquitto):
    """Starts `meshbus mqtt` against a broker's endpoints and the test's mosquitto, and returns
    once it is connected and follows the slot. Each is stopped (SIGTERM) before the broker and
    mosquitto, and must exit 0."""
    bridges = []

    def start(endpoints, *extra):
        bridge = Bridge(["--events", endpoints["events"], "--commands", endpoints["commands"],
                         "--mqtt", f"127.0.0.1:{mosquitto.port}", "--keep-alive", "2s", *extra],
                        tmp_path / f"bridge-{len(bridges)}.stderr")
        bridges.append(bridge)
        bridge.wait_line(connected_line(mosquitto.port))
        _, match = bridge.wait_line(FOLLOWING_LINE)
        bridge.following_seq = int(match.group(1))
        return bridge

    yield start
    for bridge in bridges:
        code = bridge.stop()
        assert code == 0, f"meshbus mqtt exited with {code} on SIGTERM; stderr:\n{bridge.stderr()}"


# MARK: ZeroMQ side and expectations


class Events:
    """The broker's events as one ZeroMQ subscriber saw them, (frame topic, envelope) in order."""

    def __init__(self, context, endpoint, *prefixes):
        self.sub = subscriber(context, endpoint, prefixes[0] if prefixes else b"meshtastic.")
        for prefix in prefixes[1:]:
            self.sub.subscribe(prefix)
        self.events = []

    def until(self, condition, timeout=30.0, what="condition"):
        """Receives until condition(events) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while not (value := condition(self.events)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not met on ZeroMQ within {timeout} s")
            frames = self.sub.recv_multipart()
            self.events.append((frames[0].decode(), json.loads(frames[1])))
        return value


def snapshot(context, endpoints):
    reply = command(context, endpoints["commands"], {"cmd": "snapshot", "slot": SLOT})
    assert reply["ok"], reply
    return reply["result"]


def slot_status(context, endpoints):
    reply = command(context, endpoints["commands"], {"cmd": "status", "slot": SLOT})
    assert reply["ok"], reply
    return reply["result"]["slots"][SLOT]


def hex_of(node_id):
    return node_id[1:]


def node_device(node_id):
    return f"meshbus_{SLOT}_{hex_of(node_id)}"


def position_of(node):
    """(latitude, longitude) of a node DB entry, from the floats or the 1e-7 integers."""
    position = node.get("position", {})
    if "latitude" in position or "latitudeI" in position:
        return (position.get("latitude", position.get("latitudeI", 0) * 1e-7),
                position.get("longitude", position.get("longitudeI", 0) * 1e-7))
    return None


def expected_discovery(snap):
    """The discovery topics the contract requires given the snapshot's data: per node, the
    sensors it has values for (rssi comes with the first packet heard, so it is not required
    here) and a device tracker if it has a position; per slot, the link and the send text."""
    topics = {
        f"{DISCOVERY}/binary_sensor/meshbus_{SLOT}/link/config",
        f"{DISCOVERY}/text/meshbus_{SLOT}/send/config",
    }
    for node_id, node in snap["nodes"].items():
        device = node_device(node_id)
        metrics = node.get("deviceMetrics", {})
        keys = [key for key, present in (("battery", "batteryLevel" in metrics), ("voltage", "voltage" in metrics),
                                         ("snr", "snr" in node), ("last_heard", "lastHeard" in node)) if present]
        topics |= {f"{DISCOVERY}/sensor/{device}/{key}/config" for key in keys}
        if position_of(node):
            topics.add(f"{DISCOVERY}/device_tracker/{device}/position/config")
    return topics


def epoch_of(timestamp):
    """Seconds since 1970 of an ISO 8601 UTC time ending in Z."""
    assert isinstance(timestamp, str) and timestamp.endswith("Z"), timestamp
    return datetime.fromisoformat(timestamp[:-1] + "+00:00").timestamp()


def expected_state(node):
    """The flattened state the contract derives from a node DB entry (rssi and powered aside:
    rssi comes from received packets, not the node DB); lastHeard as seconds since 1970. A
    value the node DB lacks is there as None (null), as the bridge publishes it."""
    user, metrics, position = node.get("user", {}), node.get("deviceMetrics", {}), node.get("position", {})
    state = dict.fromkeys(("longName", "shortName", "hwModel", "battery", "voltage", "snr", "lastHeard", "hopsAway",
                           "latitude", "longitude", "altitude"))
    state |= {"id": user.get("id", "!%08x" % node["num"]), "num": node["num"]}
    state |= {key: user[key] for key in ("longName", "shortName", "hwModel") if key in user}
    if "batteryLevel" in metrics:
        state["battery"] = metrics["batteryLevel"]
    if "voltage" in metrics:
        state["voltage"] = metrics["voltage"]
    for key in ("snr", "lastHeard", "hopsAway"):
        if key in node:
            state[key] = node[key]
    if (coordinates := position_of(node)):
        state["latitude"], state["longitude"] = coordinates
    if "altitude" in position:
        state["altitude"] = position["altitude"]
    return state


def comparable(state, keys=None):
    """A node state with lastHeard in seconds and floats rounded, restricted to `keys`."""
    result = {}
    for key, value in state.items():
        if keys is not None and key not in keys:
            continue
        if key == "lastHeard" and isinstance(value, str):
            value = epoch_of(value)
        if isinstance(value, float):
            value = round(value, 6)
        result[key] = value
    return result


def node_states(messages):
    """The latest node state per node id."""
    states = {}
    for m in messages:
        match = NODE_TOPIC.fullmatch(m.topic)
        if match and m.json is not None:
            states[match.group(1)] = m
    return states


# MARK: Tests


def test_discovery_configs_are_valid_home_assistant_json(start_broker, start_bridge, mqtt_subscriber, context):
    endpoints = start_broker()
    start_bridge(endpoints)
    snap = snapshot(context, endpoints)
    assert len(snap["nodes"]) == 7
    expected = expected_discovery(snap)
    recorder = mqtt_subscriber()
    recorder.wait_for_topics(expected | {f"{PREFIX}/status", f"{PREFIX}/{SLOT}/link"}, what="discovery configs")
    latest = recorder.latest()

    status = latest[f"{PREFIX}/status"]
    assert status.payload == b"online" and status.retain
    link = latest[f"{PREFIX}/{SLOT}/link"]
    assert link.retain and link.json["ready"] is True and link.json["state"] == "ready" and link.json["slot"] == SLOT
    assert link.json["myNodeNum"] == snap["myInfo"]["myNodeNum"] and link.json["reason"] is None
    assert link.json["time"].endswith("Z")

    configs = {topic: m for topic, m in latest.items() if topic.startswith(f"{DISCOVERY}/")}
    unique_ids = []
    devices = {}  # device identifier -> its name, the same in every config of the device
    for topic, message in configs.items():
        match = DISCOVERY_TOPIC.fullmatch(topic)
        assert match, f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config with [a-zA-Z0-9_-]+ ids"
        component, device_id, object_id = match.groups()
        config = message.json
        assert isinstance(config, dict), f"{topic}: {message.payload!r} is not a JSON object"
        assert message.retain, f"{topic} is not retained"
        assert REQUIRED_KEYS[component] <= config.keys(), (topic, config)
        assert config.keys() <= COMMON_KEYS | COMPONENT_KEYS[component], f"{topic}: keys Home Assistant does not know: " \
            f"{sorted(config.keys() - COMMON_KEYS - COMPONENT_KEYS[component])}"
        assert isinstance(config["name"], str) and config["name"], (topic, config)
        assert isinstance(config["unique_id"], str) and config["unique_id"], (topic, config)
        # The contract names `object_id`; Home Assistant 2025.10 deprecated it for
        # `default_entity_id` ("<component>.<object id>", object_id is ignored from 2026.4 on):
        # either one is accepted.
        assert (isinstance(config.get("object_id"), str) and re.fullmatch(r"[a-z0-9_]+", config["object_id"])) or \
            re.fullmatch(rf"{component}\.[a-z0-9_]+", config.get("default_entity_id", "")), (topic, config)
        unique_ids.append(config["unique_id"])
        assert config["availability_topic"] == f"{PREFIX}/status", (topic, config)
        assert config.get("payload_available", "online") == "online"
        assert config.get("payload_not_available", "offline") == "offline"
        assert config["origin"]["name"] == "MeshBus" and isinstance(config["origin"]["sw_version"], str), (topic, config)

        device = config["device"]
        assert device.keys() <= DEVICE_KEYS, (topic, device)
        assert isinstance(device["identifiers"], list) and device["identifiers"], (topic, device)
        assert isinstance(device["name"], str) and device["name"], (topic, device)
        assert isinstance(device["manufacturer"], str) and isinstance(device["model"], str), (topic, device)
        assert device["identifiers"] == [device_id], f"{topic}: device identifiers {device['identifiers']}"
        assert devices.setdefault(device_id, device["name"]) == device["name"], f"{device_id} named differently"

        if device_id == f"meshbus_{SLOT}":  # the slot's own device
            assert "via_device" not in device or device["via_device"] != device_id
            if component == "binary_sensor":
                assert object_id == "link"
                assert config["state_topic"] == f"{PREFIX}/{SLOT}/link"
                assert config["device_class"] == "connectivity"
                assert config["payload_on"] == "ON" and config["payload_off"] == "OFF"
                assert "value_json.ready" in config["value_template"], config["value_template"]
            else:
                assert (component, object_id) == ("text", "send"), topic
                assert config["command_topic"] == f"{PREFIX}/{SLOT}/send"
                assert config["max"] == 200 and config["mode"] == "text"
            continue

        node_id = "!" + device_id.removeprefix(f"meshbus_{SLOT}_")
        assert re.fullmatch(r"![0-9a-f]{8}", node_id) and node_id in snap["nodes"], f"{topic}: no such node"
        assert device["via_device"] == f"meshbus_{SLOT}", (topic, device)
        if component == "device_tracker":
            assert object_id == "position"
            assert config["json_attributes_topic"] == f"{PREFIX}/{SLOT}/node/{node_id}/position"
            assert config["source_type"] == "gps" and "state_topic" not in config
            continue
        assert component == "sensor" and object_id in SENSORS, topic
        wanted = SENSORS[object_id]
        assert config["state_topic"] == f"{PREFIX}/{SLOT}/node/{node_id}"
        assert re.fullmatch(r"\{\{\s*value_json\.%s\s*\}\}" % wanted["field"], config["value_template"]), config
        for key in ("device_class", "unit_of_measurement", "state_class"):
            assert config.get(key) == wanted[key], f"{topic}: {key} {config.get(key)!r}, expected {wanted[key]!r}"

    assert len(unique_ids) == len(set(unique_ids)), f"unique_id repeated: {sorted(unique_ids)}"
    assert f"meshbus_{SLOT}" in devices, "node devices name a via_device that no config defines"

    # For the closing note: what one node looks like to Home Assistant.
    node_id = next(n for n in sorted(snap["nodes"]) if n != "!%08x" % snap["myInfo"]["myNodeNum"])
    print(f"\ndiscovery topics of node {node_id}:")
    for topic in sorted(t for t in configs if f"/{node_device(node_id)}/" in t):
        print(" ", topic)
    print("  battery config:", configs[f"{DISCOVERY}/sensor/{node_device(node_id)}/battery/config"].payload.decode())


def test_node_state_follows_the_mesh(start_broker, start_bridge, mqtt_subscriber, context):
    endpoints = start_broker()
    zmq_events = Events(context, endpoints["events"])
    zmq_events.until(lambda events: events, what="a first event")  # the subscription is live: nothing later is missed
    start_bridge(endpoints)
    snap = snapshot(context, endpoints)
    recorder = mqtt_subscriber(f"{PREFIX}/#")
    states = recorder.wait_for(lambda messages: len(node_states(messages)) == 7 and node_states(messages),
                               what="a state for each of the 7 nodes")

    # The retained states say what the snapshot says. Fields that never change in the
    # simulated mesh must be equal; the moving ones (snr, voltage, lastHeard, altitude) must
    # be there and well formed (the live check below compares them exactly).
    assert set(states) == set(snap["nodes"])
    stable = {"id", "num", "longName", "shortName", "hwModel", "battery", "hopsAway", "latitude", "longitude"}
    for node_id, message in states.items():
        state = message.json
        assert message.retain, f"node state of {node_id} is not retained"
        assert state.keys() <= NODE_STATE_KEYS, (node_id, sorted(state.keys() - NODE_STATE_KEYS))
        expected = expected_state(snap["nodes"][node_id])
        assert comparable(state, stable) == comparable(expected, stable), node_id
        assert state.keys() == NODE_STATE_KEYS, ("every key is there, null while unknown", node_id, state)
        for key in ("voltage", "snr", "altitude"):
            assert state[key] is None or isinstance(state[key], (int, float)), (node_id, key, state)
        assert state["rssi"] is None or (isinstance(state["rssi"], int) and state["rssi"] < 0), state
        assert abs(epoch_of(state["lastHeard"]) - expected["lastHeard"]) < 600, (node_id, state["lastHeard"])
        if state["latitude"] is not None:
            position = recorder.wait_for(lambda ms, t=message.topic + "/position": [m for m in ms if m.topic == t],
                                         what=f"position of {node_id}")[-1]
            assert position.retain
            assert round(position.json["latitude"], 6) == round(state["latitude"], 6)
            assert round(position.json["longitude"], 6) == round(state["longitude"], 6)
            assert isinstance(position.json["gps_accuracy"], (int, float))

    # A live change: a node heard after the snapshot (a newer lastHeard) must show up on its
    # state topic with the node DB's values. rssi and snr come from the last packet heard: snr
    # may be the node DB's or that packet's rxSnr (they differ when rxSnr is 0, i.e. omitted).
    def newer(events):
        for topic, envelope in events:
            if topic == f"meshtastic.node.updated/{SLOT}" and envelope["seq"] > snap["seq"]:
                node = envelope["node"]
                before = snap["nodes"].get("!%08x" % node["num"], {})
                if node.get("lastHeard", 0) > before.get("lastHeard", 0):
                    return envelope
        return None

    update = zmq_events.until(newer, what="a node heard after the snapshot")
    wanted = comparable(expected_state(update["node"]))
    heard = [e["packet"] for t, e in zmq_events.events if t.startswith(f"meshtastic.receive/{SLOT}/")
             and e["seq"] < update["seq"] and e["packet"]["from"] == update["node"]["num"]]
    snrs = {wanted.get("snr")} | ({round(heard[-1].get("rxSnr", 0.0), 6)} if heard else set())
    exact = wanted.keys() - {"snr"}

    def showing_update(messages):
        return [m for m in messages if m.topic == node_topic and comparable(m.json, exact) == comparable(wanted, exact)
                and comparable(m.json).get("snr") in snrs]

    node_topic = f"{PREFIX}/{SLOT}/node/{wanted['id']}"
    live = recorder.wait_for(showing_update, what=f"{node_topic} showing seq {update['seq']} ({wanted})")
    assert live[-1].retain

    # Events are republished per slot and topic, with the envelope exactly as on ZeroMQ.
    def mqtt_events(messages):
        return [m for m in messages if m.topic.startswith(f"{PREFIX}/{SLOT}/meshtastic.")]

    recorder.wait_for(lambda ms: {f"{PREFIX}/{SLOT}/meshtastic.node.updated"} <= {m.topic for m in mqtt_events(ms)}
                      and any(m.topic.startswith(f"{PREFIX}/{SLOT}/meshtastic.receive/") for m in mqtt_events(ms)),
                      what="node.updated and receive events")
    republished = mqtt_events(recorder.all())
    last_seq = max(m.json["seq"] for m in republished)
    zmq_events.until(lambda events: events[-1][1]["seq"] >= last_seq, what=f"ZeroMQ up to seq {last_seq}")
    by_seq = {envelope["seq"]: (topic, envelope) for topic, envelope in zmq_events.events}
    first_seq = min(by_seq)
    compared = 0
    for message in republished:
        envelope = message.json
        assert envelope["schema"] == 1 and envelope["slot"] == SLOT and isinstance(envelope["seq"], int), envelope
        assert not message.retain, f"{message.topic} is retained"
        if envelope["seq"] < first_seq:
            continue
        assert envelope["seq"] in by_seq, f"seq {envelope['seq']} was never published on ZeroMQ"
        zmq_topic, zmq_envelope = by_seq[envelope["seq"]]
        name, slot, *port = zmq_topic.split("/")
        assert message.topic == "/".join([PREFIX, slot, name, *port]), (message.topic, zmq_topic)
        assert envelope == zmq_envelope, f"seq {envelope['seq']} differs from ZeroMQ"
        compared += 1
    assert compared >= 2
    receive = next(m for m in republished if "/meshtastic.receive/" in m.topic)
    assert receive.topic.rsplit("/", 1)[1] == receive.json["packet"]["decoded"]["portnum"]


def replies(messages, request_id):
    return [m.json for m in messages
            if m.topic == f"{PREFIX}/{SLOT}/send/reply" and isinstance(m.json, dict) and m.json.get("id") == request_id]


def test_text_on_command_topic_reaches_the_radio_and_replies(start_broker, start_bridge, mqtt_subscriber, context):
    endpoints = start_broker()
    sent = Events(context, endpoints["events"], b"meshtastic.sent/" + SLOT.encode(), b"meshtastic.receive/" + SLOT.encode())
    sent.until(lambda events: events, what="a first event")
    start_bridge(endpoints)
    recorder = mqtt_subscriber(f"{PREFIX}/#")
    send_topic = f"{PREFIX}/{SLOT}/send"

    # A malformed command never reaches the radio, so it can be repeated until the bridge's
    # subscription to the command topic is surely in place (a reply comes back).
    for attempt in range(40):
        recorder.publish(send_topic, json.dumps({"text": 5, "id": f"probe-{attempt}"}))
        try:
            bad = recorder.wait_for(lambda ms: replies(ms, f"probe-{attempt}"), timeout=0.5, what="probe reply")[0]
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the bridge never answered on the command topic")
    assert bad["ok"] is False and bad["error"]["code"] == "bad_request" and isinstance(bad["error"]["message"], str), bad

    recorder.publish(send_topic, json.dumps({"text": "hello from mqtt", "id": "t1", "wantAck": True}))
    reply = recorder.wait_for(lambda ms: replies(ms, "t1"), what="reply to t1")[0]
    assert reply["ok"] is True and reply["result"]["status"] == "queued", reply
    packet_id = reply["result"]["packetId"]
    assert isinstance(packet_id, int) and 0 < packet_id < 2**32
    assert all(not m.retain for m in recorder.on(f"{send_topic}/reply")), "replies must not be retained"

    recorder.publish(send_topic, json.dumps({"text": "x" * 300, "id": "long1"}))
    too_long = recorder.wait_for(lambda ms: replies(ms, "long1"), what="reply to long1")[0]
    assert too_long["ok"] is False and too_long["error"]["code"] == "text_too_long", too_long

    recorder.publish(send_topic, "hi plain")
    plain = recorder.wait_for(lambda ms: replies(ms, None), what="reply to the plain text")[0]
    assert plain["ok"] is True and plain["result"]["status"] == "queued", plain
    plain_id = plain["result"]["packetId"]

    # The radio was given both texts (the broker paces texts 2.5 s apart), and nothing else.
    def packets(events):
        return {e["packet"]["id"]: e["packet"] for t, e in events if t == f"meshtastic.sent/{SLOT}"}

    radio = sent.until(lambda events: {packet_id, plain_id} <= packets(events).keys() and packets(events),
                       what="both texts written to the radio")
    assert radio[packet_id]["decoded"]["text"] == "hello from mqtt" and radio[packet_id].get("wantAck") is True
    assert radio[plain_id]["decoded"]["text"] == "hi plain"
    assert radio[plain_id]["toId"] == "^all" and radio[plain_id].get("channel", 0) == 0
    assert set(radio) == {packet_id, plain_id}, "the malformed and too-long commands reached the radio"

    # The send's life, on MQTT: the status events and the sent packet.
    def status_of(ms):
        return [m.json["status"] for m in ms
                if m.topic == f"{PREFIX}/{SLOT}/meshtastic.send.status" and m.json["packetId"] == packet_id]

    recorder.wait_for(lambda ms: {"sent", "acked"} & set(status_of(ms)), what=f"sent/acked status of {packet_id}")
    # The contract puts sent events under the port name (like receive); ZeroMQ publishes them
    # without one: either form is accepted here.
    recorder.wait_for(lambda ms: [m for m in ms if re.fullmatch(rf"{PREFIX}/{SLOT}/meshtastic\.sent(/TEXT_MESSAGE_APP)?", m.topic)
                                  and m.json["packet"]["id"] == packet_id], what="the sent event on MQTT")


def test_mosquitto_restart_reconnects_and_republishes_retained_state(
        start_broker, start_bridge, mqtt_subscriber, mosquitto, context):
    endpoints = start_broker()
    bridge = start_bridge(endpoints)
    snap = snapshot(context, endpoints)
    before = mqtt_subscriber()
    before.wait_for_topics(expected_discovery(snap) | {f"{PREFIX}/status", f"{PREFIX}/{SLOT}/link"},
                           what="retained state before the restart")
    before.wait_for(lambda ms: len(node_states(ms)) == 7, what="all node states before the restart")
    retained_before = {m.topic for m in before.all() if m.retain}
    before.close()

    # Without persistence, the restarted mosquitto has forgotten everything retained.
    mosquitto.stop()
    lost, _ = bridge.wait_line(lost_line(mosquitto.port))
    mosquitto.start()
    bridge.wait_line(connected_line(mosquitto.port), start=lost + 1)

    after = mqtt_subscriber()
    wanted = retained_before | {f"{PREFIX}/{SLOT}/link"}
    after.wait_for_topics(wanted, what="retained state after the restart")
    latest = after.latest()
    assert all(latest[topic].retain for topic in wanted), sorted(t for t in wanted if not latest[t].retain)
    assert latest[f"{PREFIX}/status"].payload == b"online"
    assert latest[f"{PREFIX}/{SLOT}/link"].json["ready"] is True
    assert len(node_states(after.all())) == 7
    assert all(isinstance(latest[t].json, dict) for t in wanted if t.startswith(f"{DISCOVERY}/"))

    # The radio side never noticed.
    status = slot_status(context, endpoints)
    assert status["ready"] is True and status["reconnects"] == 0, status


def test_sigterm_marks_the_bridge_offline_and_exits_zero(start_broker, start_bridge, mqtt_subscriber, mosquitto):
    bridge = start_bridge(start_broker())
    mqtt_subscriber(f"{PREFIX}/status").wait_for(lambda ms: any(m.payload == b"online" for m in ms), what="online")
    assert bridge.stop() == 0, bridge.stderr()
    # A client arriving later finds the retained "offline".
    status = mqtt_subscriber(f"{PREFIX}/status").wait_for(lambda ms: ms, what="retained status")[-1]
    assert status.payload == b"offline" and status.retain
    # ...published by the bridge itself before a clean DISCONNECT, not by the broker's last will
    # (which a clean DISCONNECT cancels and an unclean close fires).
    assert "Client meshbus-bridge disconnected." in mosquitto.log(), mosquitto.log()
    assert "Client meshbus-bridge closed its connection." not in mosquitto.log()


def test_time_from_meshbus_start_to_first_mqtt_state(start_broker, start_bridge, mqtt_subscriber):
    recorder = mqtt_subscriber(f"{PREFIX}/#")
    started = time.monotonic()
    endpoints = start_broker()
    broker_up = time.monotonic()
    start_bridge(endpoints)
    following = time.monotonic()
    first = recorder.wait_for(lambda ms: next((m for m in ms if NODE_TOPIC.fullmatch(m.topic)), None),
                              what="a first node state")
    assert isinstance(first.json, dict) and first.json["id"] == NODE_TOPIC.fullmatch(first.topic).group(1)
    print(f"\nmeshbus run up after {broker_up - started:.3f} s, bridge following after {following - started:.3f} s, "
          f"first node state ({first.topic}) after {first.at - started:.3f} s")


def test_a_silent_meshbus_broker_takes_the_links_down_until_it_answers_again(
        start_broker, start_bridge, mqtt_subscriber):
    endpoints = start_broker()
    start_bridge(endpoints)
    watcher = mqtt_subscriber(f"{PREFIX}/{SLOT}/link")
    watcher.wait_for(lambda ms: ms and ms[-1].json["ready"] is True, what="link ready")

    # A frozen broker publishes nothing, not even a "lost": only the bridge's pings can tell.
    # The radios may be fine, but nothing reaches MQTT any more, so HA must not show the link up.
    broker = endpoints["process"]
    broker.send_signal(signal.SIGSTOP)
    try:
        down = watcher.wait_for(lambda ms: ms[-1] if ms[-1].json["ready"] is False else None, timeout=30,
                                what="link down while the MeshBus broker is frozen")
        assert down.json["reason"] == "broker_unreachable" and down.retain, down.json
    finally:
        broker.send_signal(signal.SIGCONT)
    back = watcher.wait_for(lambda ms: ms[-1] if ms[-1].json["ready"] is True else None, timeout=30,
                            what="link up again once the broker answers")
    assert back.json["reason"] is None and back.retain, back.json


def rendered_sensor_values(latest):
    """Each retained sensor config's value_template rendered with Jinja2 (Home Assistant's
    engine) against the retained state on its state_topic, by unique_id. StrictUndefined: a key
    the template reads that the state lacks fails, where Home Assistant logs "Template variable
    warning" and shows a stale or unknown value."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    values = {}
    for topic, message in latest.items():
        if not (message.retain and topic.startswith(f"{DISCOVERY}/sensor/") and isinstance(message.json, dict)):
            continue
        state = latest.get(message.json["state_topic"])
        assert state is not None and state.retain, f"{topic}: nothing retained on {message.json['state_topic']}"
        try:
            values[message.json["unique_id"]] = environment.from_string(message.json["value_template"]).render(value_json=state.json)
        except jinja2.UndefinedError as error:
            raise AssertionError(f"{topic}: {message.json['value_template']} on {state.json}: {error}") from None
    return values


def test_retained_templates_render_after_a_bridge_restart_without_stale_values(
        start_broker, start_bridge, mqtt_subscriber, context):
    endpoints = start_broker()
    first = start_bridge(endpoints)
    before = mqtt_subscriber()
    rssi_configs = lambda ms: {m.topic for m in ms if m.retain and m.topic.startswith(f"{DISCOVERY}/sensor/") and m.topic.endswith("/rssi/config")}
    before.wait_for(lambda ms: len(rssi_configs(ms)) >= 2, what="RSSI sensors announced for nodes heard")
    values = rendered_sensor_values(before.latest())
    assert all(values[uid] not in ("", "None") for uid in values if uid.endswith("_rssi")), values
    before.close()

    heard = Events(context, endpoints["events"], b"meshtastic.receive/")
    assert first.stop() == 0
    after = mqtt_subscriber()
    after.wait_for(lambda ms: len(node_states(ms)) == 7, what="the node states retained from the first bridge")
    retained_count = len(after.all())
    second = start_bridge(endpoints)
    after.wait_for(lambda ms: len(node_states(ms[retained_count:])) == 7, what="node states from the restarted bridge")
    values = rendered_sensor_values(after.latest())
    assert any(uid.endswith("_rssi") for uid in values), "the RSSI configs are still retained"

    # An RSSI shown after the restart is one heard after it, or None (unknown), never a stale one.
    rssi_since = {}
    while True:  # every packet heard since the restart began, up to now
        try:
            frames = heard.sub.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
        packet = json.loads(frames[1]).get("packet", {})
        if "rxRssi" in packet:
            rssi_since.setdefault(hex_of("!%08x" % packet["from"]), set()).add(str(packet["rxRssi"]))
    for uid, value in values.items():
        if uid.endswith("_rssi"):
            node_hex = uid.split("_")[-2]
            assert value == "None" or value in rssi_since.get(node_hex, set()), (uid, value, rssi_since.get(node_hex))
    assert second.stop() == 0


def test_two_sites_share_a_bridged_mosquitto_pair_without_clashing(
        tmp_path, start_broker, start_controlled_simulator, mosquitto, mqtt_subscriber, context):
    """Two MeshBus hosts (sites north and south, the same slot name and the same simulated mesh)
    bridge into one mosquitto; a second mosquitto joins it with mosquitto's own bridge, as a
    second broker of a cluster would. Home Assistant on the second sees both sites apart."""
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = Mosquitto(second_dir, extra=(
        "connection to-first\n"
        f"address 127.0.0.1:{mosquitto.port}\n"
        "topic # both 1\n"
        "cleansession true\n"))
    second.start()
    bridges = []
    try:
        sims = {}
        for site in ("north", "south"):
            sims[site] = start_controlled_simulator()
            endpoints = start_broker("--tcp", f"{SLOT}=127.0.0.1:{sims[site]['port']}")
            bridge = Bridge(["--events", endpoints["events"], "--commands", endpoints["commands"], "--mqtt", f"127.0.0.1:{mosquitto.port}",
                             "--site", site, "--client-id", f"meshbus-{site}", "--keep-alive", "2s"], tmp_path / f"bridge-{site}.stderr")
            bridges.append(bridge)
            bridge.wait_line(rf"mqtt bridge following {SLOT} at seq \d+")
        home_assistant = Recorder(second.port, (f"{DISCOVERY}/#", f"{PREFIX}/#"))
        try:
            def both_sites(messages):
                ids = {m.json["unique_id"] for m in messages if m.topic.startswith(f"{DISCOVERY}/sensor/") and isinstance(m.json, dict)}
                return [i for i in ids if i.startswith("meshbus_north_")] and [i for i in ids if i.startswith("meshbus_south_")] and ids
            ids = home_assistant.wait_for(both_sites, what="discovery configs of both sites on the second mosquitto")
            north = {i.removeprefix("meshbus_north_") for i in ids if i.startswith("meshbus_north_")}
            south = {i.removeprefix("meshbus_south_") for i in ids if i.startswith("meshbus_south_")}
            assert north & south, "the same nodes are heard at both sites, under distinct ids"
            home_assistant.wait_for(lambda ms: {f"{PREFIX}/north/status", f"{PREFIX}/south/status"} <= {m.topic for m in ms},
                                    what="both sites' status")
            home_assistant.wait_for(lambda ms: any(NODE_TOPIC_OF("north").fullmatch(m.topic) for m in ms)
                                    and any(NODE_TOPIC_OF("south").fullmatch(m.topic) for m in ms), what="node states of both sites")
            home_assistant.publish(f"{PREFIX}/north/{SLOT}/send", "hello north only")
            got_text = lambda sim: "hello north only" in command(context, sim["control"], {"fault": "clear"})["texts"]
            wait_until(lambda: got_text(sims["north"]), "the text sent on the north command topic at north's radio", timeout=20)
            assert not got_text(sims["south"]), "south's radio got north's text"
        finally:
            home_assistant.close()
    finally:
        for bridge in bridges:
            assert bridge.stop() == 0, bridge.stderr()
        second.stop()


def NODE_TOPIC_OF(site):
    return re.compile(rf"{PREFIX}/{site}/{SLOT}/node/(![0-9a-f]{{8}})")


def test_the_bridge_reads_its_settings_from_the_config_file(tmp_path, start_broker, mosquitto, mqtt_subscriber):
    endpoints = start_broker()
    path = tmp_path / "meshbus.yaml"
    path.write_text(f"""events: [{endpoints['events']}]
commands: [{endpoints['commands']}]
slots: [{{name: {SLOT}, simulator: }}]
mqtt:
  broker: 127.0.0.1:{mosquitto.port}
  site: lab
  discovery: false
  clientId: meshbus-lab
  keepAlive: 2s
""")
    recorder = mqtt_subscriber(f"{DISCOVERY}/#", f"{PREFIX}/#")
    bridge = Bridge(["--config", str(path)], tmp_path / "bridge.stderr")
    try:
        bridge.wait_line(rf"mqtt bridge following {SLOT} at seq \d+")
        recorder.wait_for(lambda ms: any(m.topic == f"{PREFIX}/lab/status" and m.payload == b"online" for m in ms), what="the lab site online")
        recorder.wait_for(lambda ms: any(NODE_TOPIC_OF("lab").fullmatch(m.topic) for m in ms), what="a node state under meshbus/lab")
        assert not [m.topic for m in recorder.all() if m.topic.startswith(f"{DISCOVERY}/")], "discovery: false publishes no configs"
    finally:
        assert bridge.stop() == 0, bridge.stderr()


def test_plain_mqtt_to_another_machine_is_refused_unless_insecure(tmp_path):
    refused = subprocess.run([BINARY, "mqtt", "--mqtt", "192.0.2.7:1883"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "192.0.2.7:1883 is on another machine and plain MQTT sends the password and every packet in clear" in refused.stderr
    path = tmp_path / "meshbus.yaml"
    path.write_text("slots: []\nmqtt:\n  broker: 192.0.2.7\n")
    checked = check_config(path)
    assert checked.returncode == 1
    assert "meshbus.yaml:3: mqtt.broker: 192.0.2.7 is on another machine" in checked.stderr
    path.write_text("slots: []\nmqtt: {broker: 192.0.2.7, insecure: true, site: far}\n")
    checked = check_config(path)
    assert checked.returncode == 0, checked.stderr
    assert "mqtt (meshbus mqtt --config): 192.0.2.7:1883, topics meshbus/far/…, discovery homeassistant" in checked.stdout


def test_the_bridge_reaches_a_curve_broker_with_its_own_key(tmp_path, start_broker, mosquitto, mqtt_subscriber):
    def keygen():
        lines = dict(line.split(": ", 1) for line in subprocess.run([BINARY, "keygen"], capture_output=True, text=True, timeout=30, check=True).stdout.splitlines())
        return lines["public"], lines["secret"]
    server, bridge_key, stranger = keygen(), keygen(), keygen()
    (tmp_path / "server.key").write_text(server[1] + "\n")
    (tmp_path / "bridge.key").write_text(bridge_key[1] + "\n")
    (tmp_path / "stranger.key").write_text(stranger[1] + "\n")

    def config(key_file):
        path = tmp_path / "meshbus.yaml"
        path.write_text(f"""slots: [{{name: {SLOT}, simulator: }}]
security:
  curve:
    secretKeyFile: server.key
    clients: [{{key: "{bridge_key[0]}", role: send, name: mqtt-bridge}}]
mqtt:
  broker: 127.0.0.1:{mosquitto.port}
  curveSecretKeyFile: {key_file}
  keepAlive: 2s
""")
        return path

    refused = check_config(config("stranger.key"))
    assert refused.returncode == 1 and "mqtt.curveSecretKeyFile: its public key is not in security.curve.clients with role send" in refused.stderr
    path = config("bridge.key")
    endpoints = start_broker("--config", str(path))
    recorder = mqtt_subscriber(f"{PREFIX}/#")
    bridge = Bridge(["--config", str(path), "--events", endpoints["events"], "--commands", endpoints["commands"]], tmp_path / "bridge.stderr")
    try:
        bridge.wait_line(rf"mqtt bridge following {SLOT} at seq \d+")
        recorder.wait_for(lambda ms: len(node_states(ms)) >= 1, what="node states through the CURVE-secured broker")
    finally:
        assert bridge.stop() == 0, bridge.stderr()
