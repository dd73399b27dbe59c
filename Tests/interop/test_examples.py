"""The examples users copy from: each runs against the real broker and simulator, and what it
prints is checked."""
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, _stop, control, free_port
from test_operations import all_ready, wait_until

PYTHON_EXAMPLES = os.path.join(ROOT, "Examples", "python")
GO_EXAMPLE = os.path.join(ROOT, "Examples", "go")
SWIFT_EXAMPLE = os.path.join(ROOT, "Examples", "swift")


def example(name, *args):
    return [sys.executable, "-u", os.path.join(PYTHON_EXAMPLES, name), *args]


def read_until(proc, pattern, timeout=30.0):
    """Lines of a running example up to the first that matches `pattern`."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r}; saw {lines}")


@pytest.fixture(scope="module")
def go_consumer(tmp_path_factory):
    """Examples/go built with `go build`: Go and libzmq only, no module downloads."""
    binary = str(tmp_path_factory.mktemp("go") / "consumer")
    environment = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
    subprocess.run(["go", "build", "-o", binary, "."], cwd=GO_EXAMPLE, env=environment, check=True, timeout=300)
    return binary


@pytest.fixture(scope="module")
def swift_consumer():
    """Examples/swift built with `swift build`, against the MeshBusClient library product."""
    subprocess.run(["swift", "build"], cwd=SWIFT_EXAMPLE, check=True, timeout=900)
    output = subprocess.run(["swift", "build", "--show-bin-path"], cwd=SWIFT_EXAMPLE, check=True, timeout=300,
                            capture_output=True, text=True).stdout.strip()
    return os.path.join(output, "consumer")


@pytest.fixture(params=["python", "go", "swift"])
def consumer(request):
    """The consumer example's command line, in each language (they print the same lines)."""
    if request.param == "swift":
        binary = request.getfixturevalue("swift_consumer")
        return lambda *args: [binary, *args]
    if request.param == "go":
        binary = request.getfixturevalue("go_consumer")
        return lambda *args: [binary, *[arg.replace("--", "-", 1) if arg.startswith("--") else arg for arg in args]]
    return lambda *args: example("consumer.py", *args)


def run_consumer(command, timeout=60):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_consumer_starts_from_a_snapshot_and_follows_without_gaps(start_broker, consumer, context):
    endpoints = start_broker("--sim-traffic", "1200")
    wait_until(lambda: all_ready(context, endpoints["commands"], ["sim"]), what="slot ready")
    lines = run_consumer(consumer("--events", endpoints["events"], "--commands", endpoints["commands"], "--count", "40"))
    assert re.fullmatch(r"snapshot sim: 7 nodes at seq \d+", lines[0]), lines[0]
    assert any(re.fullmatch(r"(text sim !\w{8}: .+|node sim !\w{8}: .+)", line) for line in lines[1:]), lines
    assert not any(line.startswith("gap") for line in lines), lines


def test_consumer_repairs_a_gap_with_replay(start_broker, consumer):
    endpoints = start_broker("--sim-traffic", "1200")
    lines = run_consumer(consumer("--events", endpoints["events"], "--commands", endpoints["commands"],
                                  "--count", "30", "--simulate-gap", "7"))
    gaps = [i for i, line in enumerate(lines) if line.startswith("gap sim: ")]
    assert gaps, lines
    for i in gaps:
        seq, after, missed = map(int, re.fullmatch(r"gap sim: seq (\d+) after (\d+), replaying (\d+)", lines[i]).groups())
        assert missed == seq - after - 1 >= 1
        # The replayed events are applied (and printed) in between.
        repaired = next(line for line in lines[i + 1:] if line.startswith(("repaired", "replay failed", "gap")))
        assert repaired == f"repaired sim: now at seq {seq - 1}", lines[i:]


def test_consumer_takes_a_new_snapshot_when_the_broker_restarts(start_broker, consumer):
    events, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    first = start_broker("--events", events, "--commands", commands, "--sim-traffic", "1200")
    consumer = subprocess.Popen(consumer("--events", events, "--commands", commands), stdout=subprocess.PIPE, text=True)
    try:
        read_until(consumer, r"^snapshot sim: ")
        read_until(consumer, r"^(text|node) sim ")
        _stop(first["process"])
        start_broker("--events", events, "--commands", commands, "--sim-traffic", "1200")
        lines = read_until(consumer, r"^snapshot sim: ")
        assert any(re.fullmatch(r"broker restarted \([0-9a-f]{16}\): snapshot sim again", line) for line in lines), lines
    finally:
        consumer.kill()
        consumer.wait()


def test_python_echo_bot_answers_ping_and_reports_the_send_lifecycle(start_broker, start_controlled_simulator, context):
    sim = start_controlled_simulator(traffic=120)  # background traffic: the bot's first event says it is subscribed
    endpoints = start_broker("--tcp", f"radio=127.0.0.1:{sim['port']}")
    bot = subprocess.Popen(example("echo_bot.py", "--events", endpoints["events"], "--commands", endpoints["commands"], "--answers", "1"),
                           stdout=subprocess.PIPE, text=True)
    try:
        read_until(bot, r"^echo bot hearing the mesh$")
        control(context, sim["control"], {"emit": "text", "text": "no ping here"})
        control(context, sim["control"], {"emit": "text", "text": "ping"})
        out, _ = bot.communicate(timeout=60)
    finally:
        bot.kill()
    lines = out.splitlines()
    assert re.fullmatch(r"ping from !\w{8} on radio", lines[0]), lines
    packet = re.fullmatch(r"pong (\d+) queued", lines[1]).group(1)
    assert lines[1:] == [f"pong {packet} queued", f"pong {packet} sent", f"pong {packet} acked"], lines
