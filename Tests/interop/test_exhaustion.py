"""Limits under churn: subscribers that come and go leave no descriptor or memory behind, and
many clients replaying the whole ring at once stay within a stated memory bound."""
import os
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
