"""Fixtures: the real meshbus binary on ports it picks itself, and pyzmq clients."""
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("MESHBUS_BIN", os.path.join(ROOT, ".build", "debug", "meshbus"))


def _start(args, pattern, timeout=30.0, env=None, stderr=subprocess.DEVNULL, preexec_fn=None):
    """Starts meshbus with args; waits for stdout lines matching pattern; returns (proc, matches).
    `preexec_fn` runs in the child before meshbus (e.g. to lower its limits)."""
    environment = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment,
                            preexec_fn=preexec_fn)
    found = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < len(pattern):
        line = proc.stdout.readline()
        if not line:
            break
        for key, regex in pattern.items():
            m = re.match(regex, line.strip())
            if m:
                found[key] = m.group(1)
    if len(found) < len(pattern):
        proc.kill()
        raise RuntimeError(f"meshbus {args} did not announce {list(pattern)}; saw {found}")
    return proc, found


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_config(path, binary=BINARY):
    """`meshbus check --config path` with this (or the given) binary: its exit code and output."""
    return subprocess.run([str(binary), "check", "--config", str(path)], capture_output=True, text=True, timeout=30)


def free_port():
    """A loopback port that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start_broker():
    """Starts brokers on the given (or OS-picked) endpoints; stops each with SIGTERM and checks exit 0.
    `http`: True for an OS-picked HTTP port, or a "host:port" to listen on."""
    procs = []

    def start(*radio_args, metrics=False, http=False, virtual_radio=False, env=None, stderr=subprocess.DEVNULL):
        pattern = {"events": r"events: (\S+)", "commands": r"commands: (\S+)"}
        if metrics:
            pattern["metrics"] = r"metrics: (\S+)"
        if http:
            pattern["http"] = r"http: (\S+)/"
            radio_args = ("--http", http if isinstance(http, str) else "127.0.0.1:0", *radio_args)
        if virtual_radio:
            pattern["virtual_radio"] = r"virtual radio \S+: \S+:(\d+)"
        proc, found = _start(
            ["run", "--events", "tcp://127.0.0.1:*", "--commands", "tcp://127.0.0.1:*", "--sim-traffic", "240", *radio_args],
            pattern, env=env, stderr=stderr,
        )
        procs.append(proc)
        found["process"] = proc
        return found

    yield start
    for proc in procs:
        _stop(proc)
        assert proc.returncode == 0, f"broker exited with {proc.returncode} on SIGTERM"


@pytest.fixture
def broker(start_broker):
    return start_broker()


@pytest.fixture
def start_simulator():
    """Starts `meshbus sim` processes (port 0: OS-picked); returns the port each listens on."""
    procs = []

    def start(port=0):
        proc, found = _start(
            ["sim", "--port", str(port), "--nodes", "5", "--traffic", "120"],
            {"port": r"simulator listening on [\d.]+:(\d+)"},
        )
        procs.append(proc)
        return int(found["port"])

    yield start
    for proc in procs:
        _stop(proc)


@pytest.fixture
def start_controlled_simulator():
    """Starts `meshbus sim` with a fault-control REP socket, on TCP (OS-picked port) or on a
    pseudo-terminal linked at `serial`; returns {"port"?, "control"}."""
    procs = []

    def start(serial=None, port=0, traffic=0):
        args = ["sim", "--nodes", "5", "--traffic", str(traffic), "--control", "tcp://127.0.0.1:*"]
        pattern = {"control": r"control: (\S+)"}
        if serial:
            args += ["--serial", serial]
        else:
            args += ["--port", str(port)]
            pattern["port"] = r"simulator listening on [\d.]+:(\d+)"
        proc, found = _start(args, pattern)
        procs.append(proc)
        return found

    yield start
    for proc in procs:
        _stop(proc)


def control(ctx, endpoint, request):
    """Sends one fault-control request to a simulator; returns its reply."""
    req = requester(ctx, endpoint)
    try:
        req.send_json(request)
        reply = req.recv_json()
    finally:
        req.close()
    assert reply["ok"], reply
    return reply


@pytest.fixture
def simulator(start_simulator):
    return start_simulator()


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def subscriber(ctx, endpoint, prefix=b""):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 15000)
    sub.connect(endpoint)
    sub.subscribe(prefix)
    return sub


def requester(ctx, endpoint):
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 10000)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    return req


def collect(sub, until, timeout=30.0):
    """Receives events as (topic, envelope, frames) until `until(events)` holds; returns them all."""
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = sub.recv_multipart()
        events.append((frames[0].decode(), json.loads(frames[1]), frames))
        if until(events):
            return events
    raise AssertionError(f"condition not met; saw {[e[0] for e in events]}")


def command(ctx, endpoint, request):
    """One request on a fresh REQ socket; returns the reply."""
    req = requester(ctx, endpoint)
    try:
        req.send_json(request)
        return req.recv_json()
    finally:
        req.close()


def slot_status(ctx, endpoint, slot):
    """The `status` of one slot (checked to have succeeded)."""
    reply = command(ctx, endpoint, {"cmd": "status", "slot": slot})
    assert reply["ok"], reply
    return reply["result"]["slots"][slot]


def wait_until(check, what, timeout=10.0, interval=0.02):
    """Polls `check()` until it returns something truthy (returned); fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(interval)


BLUEZ_BUS_CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bluez", "bus.conf")


class PrivateBus:
    """A dbus-daemon of its own (bluez/bus.conf) on a unix socket in a temp dir."""

    def __init__(self, directory, timeout=10.0):
        self.socket = os.path.join(directory, "system_bus")
        self.log = open(os.path.join(directory, "dbus-daemon.log"), "w")
        self.process = subprocess.Popen(
            ["dbus-daemon", f"--config-file={BLUEZ_BUS_CONF}", f"--address=unix:path={self.socket}",
             "--nofork", "--print-address"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        # --print-address writes the address (with its guid) once the bus listens.
        ready = {}

        def read_address():
            ready["line"] = self.process.stdout.readline().strip()

        reader = threading.Thread(target=read_address, daemon=True)
        reader.start()
        reader.join(timeout)
        if not ready.get("line", "").startswith("unix:"):
            self.stop()
            raise RuntimeError(f"dbus-daemon did not print its address within {timeout} s (see {self.log.name})")
        self.address = ready["line"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def fake_bluetoothctl(directory):
    """A `bluetoothctl` that only knows `--version` (bleak runs it to check BlueZ >= 5.55)."""
    bin_dir = os.path.join(directory, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "bluetoothctl")
    with open(path, "w") as script:
        script.write('#!/bin/sh\n'
                     'if [ "$1" = "--version" ]; then echo "bluetoothctl: 5.66"; exit 0; fi\n'
                     'echo "fake bluetoothctl: only --version is supported" >&2; exit 1\n')
    os.chmod(path, 0o755)
    return bin_dir


@pytest.fixture
def start_fake_bluez(tmp_path):
    """Starts a private bus and a fake BlueZ on it (fake_bluez.py) with the given peripherals,
    backed by the simulator at sim_port. The returned FakeBlueZ has .bus_address and .env
    (DBUS_SYSTEM_BUS_ADDRESS, and PATH with a fake bluetoothctl first) for a broker's
    start_broker(..., env=bluez.env) or for bleak in this process (monkeypatch.setenv)."""
    from fake_bluez import FakeBlueZ

    started = []

    def start(*peripherals, sim_port=None, **options):
        directory = tmp_path / f"bluez{len(started)}"
        directory.mkdir()
        bus = PrivateBus(str(directory))
        started.append(bus)
        bluez = FakeBlueZ(bus.address, list(peripherals), sim_port=sim_port, **options)
        bluez.start()
        started.append(bluez)
        bluez.env = {"DBUS_SYSTEM_BUS_ADDRESS": bus.address,
                     "PATH": fake_bluetoothctl(str(directory)) + os.pathsep + os.environ.get("PATH", "")}
        return bluez

    yield start
    for item in reversed(started):
        item.stop()


@pytest.fixture
def fake_bluez(start_fake_bluez, start_controlled_simulator):
    """One known Meshtastic radio (AA:BB:CC:DD:EE:01, "Meshtastic_ee01", no pin, GATT cache on)
    backed by a controlled simulator (5 nodes); .sim holds the simulator's port and control."""
    from fake_bluez import Peripheral

    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(), sim_port=int(sim["port"]))
    bluez.sim = sim
    return bluez
