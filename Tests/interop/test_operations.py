"""Running MeshBus as a service: config files and `meshbus check`, hot reload, graceful
shutdown with a stalled radio, the Prometheus page, CURVE, systemd notify and JSON logs.
All against the real binary."""
import json
import os
import signal
import socket
import subprocess
import textwrap
import time

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from conftest import BINARY, ROOT, check_config, collect, command, control, subscriber


def write(path, text):
    # Write then rename, as editors do: the watcher sees one complete new file.
    temporary = f"{path}.new"
    with open(temporary, "w") as f:
        f.write(textwrap.dedent(text))
    os.replace(temporary, path)


def wait_until(condition, timeout=30.0, what="condition"):
    """Polls a real query (a command to the broker, a scrape) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


def slots_status(context, endpoint):
    reply = command(context, endpoint, {"cmd": "status"})
    assert reply["ok"], reply
    return reply["result"]["slots"]


def all_ready(context, endpoint, names):
    slots = slots_status(context, endpoint)
    return set(slots) == set(names) and all(slots[n]["ready"] for n in names)


# MARK: meshbus check


def test_check_names_file_line_and_key_of_every_problem(tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text(textwrap.dedent("""\
        events: [tcp://127.0.0.1:7710]
        slots:
          - name: roof
            tcp: meshtastic.local:notaport
          - name: desk
            serial: /dev/ttyACM0
            timing: {probeTimeout: 8}
        timing: {healthCheckInterval: 2m, maxBackoff: 1s}
        """))
    result = check_config(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:4: slots[0].tcp: expected host:port (port 4403 if left out), got 'meshtastic.local:notaport'",
        f"{path}:7: slots[1].timing.probeTimeout: expected a duration like 12s, 500ms or 2m, got '8'",
        f"{path}:8: timing.maxBackoff: must not be shorter than baseBackoff",
    ]


def test_check_accepts_a_good_file_and_summarises_it(tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text("slots:\n  - {name: roof, tcp: radio.lan}\n  - {name: sim, simulator: {nodes: 2}}\n")
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "slot roof: tcp radio.lan:4403" in result.stdout
    assert "slot sim: simulator, 2 nodes" in result.stdout


def test_run_refuses_a_broken_file_with_the_same_messages(tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text("slots:\n  - name: a b\n    simulator: {}\n")
    result = subprocess.run([BINARY, "run", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"{path}:2: slots[0].name: 'a b' is not a slot name" in result.stderr


# MARK: Reload


def slot_of(topic):
    return topic.split("/")[1]


def config_text(slots, extra=""):
    return "slots:\n" + "".join(f"  - {slot}\n" for slot in slots) + extra


def test_reload_adds_removes_and_changes_slots_and_leaves_the_rest_alone(start_broker, context, tmp_path):
    path = tmp_path / "meshbus.yaml"
    keep = "{name: keep, simulator: {nodes: 2, trafficPerMinute: 600}}"
    write(path, config_text([keep, "{name: gone, simulator: {nodes: 2}}", "{name: change, simulator: {nodes: 2}}"]))
    endpoints = start_broker("--config", str(path))
    wait_until(lambda: all_ready(context, endpoints["commands"], ["keep", "gone", "change"]), what="three slots ready")
    sub = subscriber(context, endpoints["events"])
    # A subscriber that sees a keep event is surely connected; from here on nothing may be missed.
    collect(sub, lambda events: any(slot_of(t) == "keep" for t, _, _ in events))

    write(path, config_text([keep, "{name: change, simulator: {nodes: 3}, timing: {healthCheckInterval: 5s}}",
                             "{name: added, simulator: {nodes: 1}}"]))
    events = collect(sub, lambda events: all(
        any(t == topic for t, _, _ in events) for topic in (
            "meshtastic.connection.lost/gone", "meshtastic.connection.established/change",
            "meshtastic.connection.established/added")))

    def of(topic):
        return [env for t, env, _ in events if t == topic]
    assert [e["reason"] for e in of("meshtastic.connection.lost/gone")] == ["reload"]
    assert [e["reason"] for e in of("meshtastic.connection.lost/change")] == ["reload"]
    assert of("meshtastic.connection.established/change")[0]["nodeCount"] == 4
    assert not [t for t, _, _ in events if t.startswith("meshtastic.connection.") and slot_of(t) == "keep"]
    keep_seqs = [env["seq"] for t, env, _ in events if slot_of(t) == "keep"]
    assert keep_seqs == list(range(keep_seqs[0], keep_seqs[0] + len(keep_seqs))), "keep's seq runs on without a gap"
    change_seqs = [env["seq"] for t, env, _ in events if slot_of(t) == "change"]
    assert change_seqs == list(range(change_seqs[0], change_seqs[0] + len(change_seqs))), "a changed slot keeps its seq"
    assert change_seqs[0] > 1

    slots = slots_status(context, endpoints["commands"])
    assert sorted(slots) == ["added", "change", "keep"]
    assert slots["keep"]["attempt"] == 1 and slots["keep"]["reconnects"] == 0
    reply = command(context, endpoints["commands"], {"cmd": "status", "slot": "gone"})
    assert reply["error"]["code"] == "unknown_slot"
    ping = command(context, endpoints["commands"], {"cmd": "ping"})["result"]
    assert ping["reloads"]["applied"] == 1
    assert ping["reloads"]["last"]["added"] == ["added"] and ping["reloads"]["last"]["removed"] == ["gone"]


def test_invalid_file_keeps_the_running_config_and_sighup_reloads(start_broker, context, tmp_path):
    path = tmp_path / "meshbus.yaml"
    write(path, config_text(["{name: one, simulator: {nodes: 2}}"]))
    endpoints = start_broker("--config", str(path))
    wait_until(lambda: all_ready(context, endpoints["commands"], ["one"]), what="slot one ready")

    write(path, config_text(["{name: one, simulator: {nodes: 2}}", "{name: two, tcp: 'nohost:'}"]))
    ping = wait_until(lambda: (r := command(context, endpoints["commands"], {"cmd": "ping"})["result"])["reloads"]["rejected"] and r,
                      what="rejected reload")
    assert ping["reloads"]["last"]["problems"] == [
        f"{path}:3: slots[1].tcp: expected host:port (port 4403 if left out), got 'nohost:'"]
    assert ping["reloads"]["applied"] == 0
    assert all_ready(context, endpoints["commands"], ["one"]), "the running config stays"

    # Same content as running, so the file watcher has nothing to change; SIGHUP forces a reload.
    with open(path, "w") as f:
        f.write(config_text(["{name: one, simulator: {nodes: 2}}"]))
    wait_until(lambda: command(context, endpoints["commands"], {"cmd": "ping"})["result"]["reloads"]["applied"] == 1,
               what="file reload")
    endpoints["process"].send_signal(signal.SIGHUP)
    last = wait_until(lambda: (r := command(context, endpoints["commands"], {"cmd": "ping"})["result"]["reloads"])["applied"] == 2 and r,
                      what="SIGHUP reload")
    assert last["last"]["removed"] == [] and last["last"]["added"] == []
    assert slots_status(context, endpoints["commands"])["one"]["reconnects"] == 0
    assert endpoints["process"].poll() is None, "SIGHUP did not end the process"


# MARK: Shutdown


def test_sigterm_with_a_stalled_radio_and_queued_sends_exits_cleanly_in_bounds(
        start_broker, start_controlled_simulator, context, tmp_path):
    sim = start_controlled_simulator()
    path = tmp_path / "meshbus.yaml"
    write(path, config_text([f"{{name: stalled, tcp: '127.0.0.1:{sim['port']}'}}", "{name: sim, simulator: {nodes: 2}}"],
                            "flushTimeout: 5s\n"))
    endpoints = start_broker("--config", str(path))
    wait_until(lambda: all_ready(context, endpoints["commands"], ["stalled", "sim"]), what="both ready")
    sub = subscriber(context, endpoints["events"], b"meshtastic.send.status")
    sub_lost = subscriber(context, endpoints["events"], b"meshtastic.connection.lost")
    control(context, sim["control"], {"fault": "stall"})
    ids = []
    # Spaced 2.5 s apart, the fourth cannot be written within the 5 s flush.
    for i in range(4):
        reply = command(context, endpoints["commands"],
                        {"cmd": "sendText", "slot": "stalled", "text": f"before shutdown {i}", "wantAck": True})
        assert reply["ok"], reply
        ids.append(reply["result"]["packetId"])
    before = collect(sub, lambda events: sum(env["status"] == "queued" for _, env, _ in events) == 4)

    started = time.monotonic()
    endpoints["process"].terminate()
    # Commands stop being answered while the process is still flushing its outbox.
    while True:
        req = context.socket(zmq.REQ)
        req.setsockopt(zmq.RCVTIMEO, 300)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(endpoints["commands"])
        req.send_json({"cmd": "ping"})
        try:
            req.recv()
        except zmq.Again:
            break
        finally:
            req.close()
    assert endpoints["process"].poll() is None, "commands were still answered until the process ended"
    assert endpoints["process"].wait(timeout=20) == 0
    elapsed = time.monotonic() - started
    print(f"shutdown with a stalled radio and 4 queued sends took {elapsed:.2f} s")
    # Flush waits up to 5 s for the outbox, then the radios close (8 s deadline).
    assert elapsed < 5 + 8 + 2

    sub.setsockopt(zmq.RCVTIMEO, 2000)
    statuses = {}
    for _, env, _ in before:
        statuses.setdefault(env["packetId"], []).append(env["status"])
    try:
        while True:
            _, env, _ = (lambda f: (f[0], json.loads(f[1]), f))(sub.recv_multipart())
            statuses.setdefault(env["packetId"], []).append(env["status"])
    except zmq.Again:
        pass
    # The radio never answers, so every send ends failed: written ones never acked, the last never written.
    assert [statuses[packet_id] for packet_id in ids] == [
        ["queued", "sent", "failed"], ["queued", "sent", "failed"], ["queued", "sent", "failed"], ["queued", "failed"]], statuses
    sub_lost.setsockopt(zmq.RCVTIMEO, 2000)
    lost = {}
    try:
        while True:
            frames = sub_lost.recv_multipart()
            lost[frames[0].decode().split("/")[1]] = json.loads(frames[1])["reason"]
    except zmq.Again:
        pass
    assert lost == {"stalled": "shutdown", "sim": "shutdown"}


# MARK: Metrics


def scrape(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_page_parses_and_its_counters_move(start_broker, context, tmp_path):
    path = tmp_path / "meshbus.yaml"
    write(path, config_text(["{name: sim, simulator: {nodes: 4, trafficPerMinute: 600}, "
                             "timing: {healthCheckInterval: 200ms, probeTimeout: 2s}}"], "metrics: 127.0.0.1:0\n"))
    endpoints = start_broker("--config", str(path), metrics=True)
    url = endpoints["metrics"]
    sub = subscriber(context, endpoints["events"])
    first = wait_until(lambda: (s := scrape(url)) and value(s, "meshbus_slot_ready", slot="sim") == 1 and s, what="ready")
    reply = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "sim", "text": "metrics", "wantAck": True})
    assert reply["ok"]
    collect(sub, lambda events: any(env.get("status") == "acked" for _, env, _ in events))
    later = wait_until(lambda: (s := scrape(url)) and value(s, "meshbus_probe_round_trip_seconds_count", slot="sim") >= 2 and s,
                       what="probes counted")

    assert value(later, "meshbus_packets_received_total", slot="sim") > value(first, "meshbus_packets_received_total", slot="sim")
    assert value(later, "meshbus_events_published_total", slot="sim") > value(first, "meshbus_events_published_total", slot="sim")
    assert value(later, "meshbus_sends_total", slot="sim", status="acked") == 1
    assert value(later, "meshbus_slot_state", slot="sim", state="ready") == 1
    assert value(later, "meshbus_slot_state", slot="sim", state="backoff") == 0
    assert value(later, "meshbus_nodes", slot="sim") == 5
    assert value(later, "meshbus_replay_events_held", slot="sim") > 0
    assert value(later, "meshbus_replay_capacity", slot="sim") == 10000
    assert value(later, "meshbus_event_subscribers") >= 1
    assert value(later, "meshbus_commands_total", outcome="ok") >= 1
    assert value(later, "meshbus_probe_round_trip_seconds_bucket", slot="sim", le="+Inf") >= 2
    print("metrics sample:", {k: v for k, v in later.items() if "slot" in dict(k[1]) and "bucket" not in k[0]})


# MARK: CURVE


def keygen():
    result = subprocess.run([BINARY, "keygen"], capture_output=True, text=True, timeout=30, check=True)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    return lines["public"], lines["secret"]


def curve_socket(context, kind, endpoint, server_public, pair):
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 1500 if pair is None or pair[0] == "stranger" else 10000)
    if pair is not None:
        sock.curve_serverkey = server_public.encode()
        sock.curve_publickey = pair[1][0].encode()
        sock.curve_secretkey = pair[1][1].encode()
    sock.connect(endpoint)
    return sock


def test_curve_admits_listed_keys_by_role_and_nothing_else(start_broker, context, tmp_path):
    server, sender, reader, stranger = keygen(), keygen(), keygen(), keygen()
    (tmp_path / "server.key").write_text(server[1] + "\n")
    path = tmp_path / "meshbus.yaml"
    write(path, f"""\
        slots:
          - {{name: sim, simulator: {{nodes: 2, trafficPerMinute: 600}}}}
        security:
          curve:
            secretKeyFile: server.key
            clients:
              - {{key: "{sender[0]}", role: send, name: bot}}
              - {{key: "{reader[0]}", role: read, name: dashboard}}
        """)
    endpoints = start_broker("--config", str(path))

    def ask(pair, request):
        req = curve_socket(context, zmq.REQ, endpoints["commands"], server[0], pair)
        try:
            req.send_json(request)
            return req.recv_json()
        finally:
            req.close()

    wait_until(lambda: ask(("sender", sender), {"cmd": "status"})["result"]["slots"]["sim"]["ready"], what="ready")
    assert ask(("sender", sender), {"cmd": "sendText", "slot": "sim", "text": "hi"})["ok"]
    assert ask(("reader", reader), {"cmd": "ping"})["ok"]
    refused = ask(("reader", reader), {"cmd": "sendText", "slot": "sim", "text": "hi"})
    assert refused["ok"] is False and refused["error"]["code"] == "unauthorized"
    for pair in [("stranger", stranger), None]:
        with pytest.raises(zmq.Again):
            ask(pair, {"cmd": "ping"})

    listener = curve_socket(context, zmq.SUB, endpoints["events"], server[0], ("reader", reader))
    listener.subscribe(b"")
    assert listener.recv_multipart()[0].startswith(b"meshtastic.")
    outsider = curve_socket(context, zmq.SUB, endpoints["events"], server[0], ("stranger", stranger))
    outsider.subscribe(b"")
    with pytest.raises(zmq.Again):
        outsider.recv_multipart()


def test_non_loopback_endpoint_without_curve_is_refused_at_start(tmp_path):
    result = subprocess.run([BINARY, "run", "--events", "tcp://0.0.0.0:0", "--commands", "tcp://127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "tcp://0.0.0.0:0 is reachable from other machines: configure security.curve" in result.stderr
    path = tmp_path / "meshbus.yaml"
    path.write_text("commands: [tcp://192.0.2.1:7711]\nslots: []\n")
    assert check_config(path).stderr.strip() == (
        f"{path}:1: commands[0]: tcp://192.0.2.1:7711 is reachable from other machines; "
        "configure security.curve or set security.insecure: true")
    path.write_text("commands: [tcp://192.0.2.1:7711]\nslots: []\nsecurity: {insecure: true}\n")
    assert check_config(path).returncode == 0


# MARK: systemd and logs


def test_systemd_hears_ready_watchdog_and_stopping(start_broker, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    endpoints = start_broker(env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
    assert notify.recv(4096).decode().startswith("READY=1")
    assert notify.recv(4096).decode() == "WATCHDOG=1"
    endpoints["process"].terminate()
    messages = []
    while not any(m.startswith("STOPPING=1") for m in messages):
        messages.append(notify.recv(4096).decode())
    assert endpoints["process"].wait(timeout=20) == 0
    notify.close()


def test_json_log_lines_carry_level_message_and_metadata(start_broker, context, tmp_path):
    log = open(tmp_path / "stderr.log", "w")
    endpoints = start_broker("--log-format", "json", stderr=log)
    wait_until(lambda: all_ready(context, endpoints["commands"], ["sim"]), what="ready")
    endpoints["process"].terminate()
    assert endpoints["process"].wait(timeout=20) == 0
    log.close()
    lines = [json.loads(line) for line in open(tmp_path / "stderr.log") if line.strip()]
    ready = [line for line in lines if line["message"] == "link ready"]
    assert ready and ready[0]["level"] == "info" and ready[0]["slot"] == "sim" and ready[0]["time"].endswith("Z")
    assert any(line["message"] == "broker stopped" for line in lines)


@pytest.mark.parametrize("name", ["meshbus.service", "meshbus-mqtt.service"])
def test_systemd_unit_verifies(tmp_path, name):
    analyze = subprocess.run(["which", "systemd-analyze"], capture_output=True, text=True)
    if analyze.returncode != 0:
        pytest.skip("systemd-analyze is not installed here")
    unit = open(os.path.join(ROOT, "deploy", "systemd", name)).read()
    # Point ExecStart at the binary under test: verify checks that it exists.
    path = tmp_path / name
    path.write_text(unit.replace("/usr/local/bin/meshbus", BINARY))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    if name == "meshbus.service":
        assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    else:
        assert "ExecStart=/usr/local/bin/meshbus mqtt --config /etc/meshbus/meshbus.yaml" in unit
