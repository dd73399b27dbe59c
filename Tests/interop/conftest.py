"""Fixtures: the real meshbus binary on ports it picks itself, and pyzmq clients."""
import json
import os
import re
import socket
import subprocess
import time

import pytest
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("MESHBUS_BIN", os.path.join(ROOT, ".build", "debug", "meshbus"))


def _start(args, pattern, timeout=30.0, env=None, stderr=subprocess.DEVNULL):
    """Starts meshbus with args; waits for stdout lines matching pattern; returns (proc, matches)."""
    environment = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment)
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
