"""Limits under churn: subscribers that come and go leave no descriptor or memory behind, and
many clients replaying the whole ring at once stay within a stated memory bound."""
import os
import time
import re
import threading

import zmq
import zmq.utils.monitor

from conftest import collect, command, subscriber, wait_until


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def subscribers(context, endpoints):
    return command(context, endpoints["commands"], {"cmd": "ping"})["result"]["subscribers"]


def test_a_thousand_subscriber_cycles_leave_no_descriptor_or_memory_behind(start_broker, context):
    endpoints = start_broker()
    pid = endpoints["process"].pid
    watcher = subscriber(context, endpoints["events"], b"meshtastic.")
    collect(watcher, lambda seen: len(seen) >= 1)

    def cycles(count):
        for cycle in range(count):
            sub = context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            # Each cycle is a whole session: closed only once the ZMTP handshake with the broker is done.
            monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            monitor.setsockopt(zmq.RCVTIMEO, 10000)
            sub.connect(endpoints["events"])
            sub.subscribe(b"meshtastic.receive")
            try:
                event = zmq.utils.monitor.recv_monitor_message(monitor)
            except zmq.Again:
                raise AssertionError(f"subscriber {cycle} saw no handshake with the broker in 10 s")
            assert event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
            sub.disable_monitor()
            monitor.close()
            sub.close()
        # The broker counts subscribers from its PUB socket's monitor: back to the watcher alone.
        wait_until(lambda: subscribers(context, endpoints) == 1, what="the broker to count one subscriber again", timeout=30)

    cycles(100)  # warm-up: libzmq's and the allocator's pools reach their working size
    fds, rss = open_fds(pid), status_kib(pid, "VmRSS")
    cycles(1000)
    # Back to at most the count before (a command connection open then may have closed since).
    wait_until(lambda: open_fds(pid) <= fds, what=f"the broker's descriptors back to {fds}", timeout=30)
    grown = status_kib(pid, "VmRSS") - rss
    print(f"1000 subscriber cycles: descriptors {fds} -> {open_fds(pid)}, RSS grew {grown} KiB")
    # Before the PUB socket ran its housekeeping while idle, 1,000 cycles kept about 8 MB.
    assert grown < 2048, f"RSS grew {grown} KiB over 1000 subscriber cycles"
    # The watcher never lost its stream.
    collect(watcher, lambda seen: len(seen) >= 1)


def test_fifty_clients_replaying_the_whole_ring_at_once_stay_within_a_memory_bound(start_broker, context):
    endpoints = start_broker("--replay-capacity", "2000", "--sim-nodes", "20", "--sim-traffic", "30000")
    pid = endpoints["process"].pid
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    # A full ring: more events published than it holds.
    collect(sub, lambda seen: seen[-1][1].get("seq", 0) >= 2300, timeout=120)
    oldest = command(context, endpoints["commands"], {"cmd": "replay", "slot": "sim", "sinceSeq": 0, "limit": 1})
    assert not oldest["ok"] and oldest["error"]["code"] == "gap_too_old", oldest
    oldest = int(re.search(r"from seq (\d+) on", oldest["error"]["message"]).group(1)) - 1
    before = status_kib(pid, "VmRSS")
    failures = []

    def client():
        socket = context.socket(zmq.REQ)
        socket.setsockopt(zmq.RCVTIMEO, 60000)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoints["commands"])
        since, received = oldest, 0
        try:
            while True:
                socket.send_json({"cmd": "replay", "slot": "sim", "sinceSeq": since, "limit": 1000})
                reply = socket.recv_json()
                if not reply["ok"] and reply["error"]["code"] == "gap_too_old":
                    # The slot goes on publishing, so the ring moves on: go on from its oldest.
                    since = int(re.search(r"from seq (\d+) on", reply["error"]["message"]).group(1)) - 1
                    continue
                if not reply["ok"]:
                    failures.append(reply)
                    return
                events = reply["result"]["events"]
                received += len(events)
                if reply["result"]["complete"] or not events:
                    break
                since = events[-1]["envelope"]["seq"]
            if received < 2000:
                failures.append(f"only {received} events replayed")
        finally:
            socket.close()

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a replaying client did not finish"
    assert not failures, failures[:3]
    peak = status_kib(pid, "VmHWM")
    print(f"50 clients replaying 2,000+ events each: RSS {before} KiB before, peak {peak} KiB")
    assert peak - before < 32 * 1024, f"peak RSS {peak} KiB is {peak - before} KiB over the {before} KiB before the replays"


def test_a_low_descriptor_limit_refuses_new_peers_with_a_reason_while_existing_clients_and_the_radio_keep_working(
        tmp_path, context):
    from meshtastic.tcp_interface import TCPInterface
    import resource
    import signal
    import socket as sockets
    from conftest import _start

    limit = 128

    def lower_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    config = tmp_path / "meshbus.yaml"
    config.write_text("events: [tcp://127.0.0.1:*]\ncommands: [tcp://127.0.0.1:*]\n"
                      "slots:\n  - {name: sim, simulator: {nodes: 4, trafficPerMinute: 600}, virtualRadio: '127.0.0.1:0'}\n")
    log_path = tmp_path / "broker.log"
    with open(log_path, "w") as log:
        proc, found = _start(["run", "--config", str(config)],
                             {"events": r"events: (\S+)", "commands": r"commands: (\S+)", "virtual": r"virtual radio sim: \S+:(\d+)"},
                             stderr=log, preexec_fn=lower_limit)
    flood, raw = [], []
    existing = None
    try:
        # Connected before the flood: a consumer, a command client and an official client.
        keep = subscriber(context, found["events"], b"meshtastic.send.status")
        commands = context.socket(zmq.REQ)
        commands.setsockopt(zmq.RCVTIMEO, 10000)
        commands.connect(found["commands"])

        def ask(request):
            commands.send_json(request)
            reply = commands.recv_json()
            assert reply["ok"], reply
            return reply["result"]

        wait_until(lambda: ask({"cmd": "status", "slot": "sim"})["slots"]["sim"]["ready"], "the slot to be ready")
        existing = TCPInterface(hostname="127.0.0.1", portNumber=int(found["virtual"]), timeout=30)
        time.sleep(0.5)  # the subscription reaches the broker before the flood

        # The flood: more ZeroMQ peers and virtual radio clients than the limit leaves room for.
        for _ in range(150):
            sub = context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.connect(found["events"])
            sub.subscribe(b"")
            flood.append(sub)
            time.sleep(0.005)
        for _ in range(60):
            raw.append(sockets.create_connection(("127.0.0.1", int(found["virtual"])), timeout=10))

        ping = wait_until(lambda: (lambda p: p if p["peersRefused"] > 0 else None)(ask({"cmd": "ping"})),
                          "ZeroMQ peers refused for want of descriptors")
        virtual = wait_until(
            lambda: (lambda v: v if v["lowOnDescriptors"] > 0 else None)(ask({"cmd": "status", "slot": "sim"})["slots"]["sim"]["virtualRadio"]),
            "virtual radio clients turned away for want of descriptors")
        assert ping["subscribers"] < 150
        assert open_fds(proc.pid) < limit, "the broker never reaches its limit: the reserve is kept for radios and replies"
        # A turned-away virtual radio client sees its connection closed at once.
        closed = 0
        for connection in raw:
            connection.settimeout(5)
            try:
                closed += connection.recv(1) == b""
            except (ConnectionResetError, sockets.timeout):
                pass
        assert closed >= virtual["lowOnDescriptors"] > 0

        # The clients from before the flood and the radio go on: a send from each is settled.
        sent = ask({"cmd": "sendText", "slot": "sim", "text": "during the flood", "wantAck": True})
        existing.sendText("official client during the flood")
        statuses = collect(keep, lambda seen: any(e[1]["packetId"] == sent["packetId"] and e[1]["status"] == "acked" for e in seen)
                           and any((e[1].get("requestId") or "").startswith("virtualRadio:") and e[1]["status"] == "sent" for e in seen))
        assert statuses
        assert ask({"cmd": "status", "slot": "sim"})["slots"]["sim"]["ready"]
    finally:
        for sub in flood:
            sub.close()
        for connection in raw:
            connection.close()
        if existing is not None:
            existing.close()
    # Room again: a new peer is admitted once the flood has gone.
    wait_until(lambda: command(context, found["commands"], {"cmd": "ping"}).get("ok"), "a new command client to be admitted again")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    text = log_path.read_text()
    assert "ZeroMQ peer refused: low on file descriptors" in text
    assert "virtual radio client turned away: low on file descriptors" in text
    assert text.count("ZeroMQ peer refused") == 1, "logged once a minute, not once a peer"
