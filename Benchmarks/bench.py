#!/usr/bin/env python3
"""Runs MeshBus and its two baselines side by side on this machine and prints one table.

MeshBus: `meshbus run` with TCP slots on load simulators (`meshbus sim`). Baseline A: the
Python republisher users write today (Benchmarks/python/republisher.py: the official
`meshtastic` TCPInterface, pypubsub, pyzmq). Baseline B: the libzmq floor (Benchmarks/c/floor.c:
a PUB sending prepared messages of the same size). Every figure comes from the same
subscriber program (Benchmarks/c/subscriber.c) and is printed next to the baseline it is
compared with, as a ratio, because absolute numbers on a shared machine are noise.

Called by scripts/bench, which builds everything first; `--quick` shortens every phase.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import zmq

import footprint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The size of MeshBus's envelope for one load text (measured: `meshbus tail --json`), so the
# floor publishes messages of the same size.
FLOOR_ENVELOPE_BYTES = 420


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose stdout lines are read by a thread, so any line can be awaited."""

    def __init__(self, args, name):
        self.name = name
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)
            self.changed.notify_all()

    def wait_line(self, pattern, timeout=60):
        def found():
            for line in self.lines:
                if line is None:
                    return "ended"
                match = re.search(pattern, line)
                if match:
                    return match
            return None

        with self.changed:
            result = self.changed.wait_for(found, timeout)
        if result is None or result == "ended":
            raise RuntimeError(f"{self.name}: no line matching {pattern!r}; saw {self.lines[-5:]}")
        return result

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bench:
    def __init__(self, args):
        self.args = args
        self.meshbus = args.meshbus
        self.subscriber_bin = args.subscriber
        self.floor_bin = args.floor
        self.context = zmq.Context()
        self.running = []

    def start(self, args, name):
        process = Process(args, name)
        self.running.append(process)
        return process

    def stop_all(self):
        for process in reversed(self.running):
            process.stop()
        self.running = []

    # Parts

    def simulator(self, nodes=6):
        port, control = free_port(), f"tcp://127.0.0.1:{free_port()}"
        process = self.start([self.meshbus, "sim", "--port", str(port), "--nodes", str(nodes), "--traffic", "0",
                              "--control", control], "simulator")
        process.wait_line(r"control: ")
        return port, control

    def control(self, endpoint, request):
        reply = self.command(endpoint, request)
        if not reply.get("ok"):
            raise RuntimeError(f"simulator control {request}: {reply}")
        return reply

    def command(self, endpoint, request):
        """One JSON request on a fresh REQ socket (the broker's commands, the simulator's control)."""
        with self.context.socket(zmq.REQ) as req:
            req.setsockopt(zmq.LINGER, 0)
            req.setsockopt(zmq.RCVTIMEO, 10_000)
            req.connect(endpoint)
            req.send_json(request)
            return req.recv_json()

    def meshbus_broker(self, slots):
        args = [self.meshbus, "run", "--events", "tcp://127.0.0.1:*", "--commands", "tcp://127.0.0.1:*",
                "--outbox-capacity", "100000"]
        for name, port in slots:
            args += ["--tcp", f"{name}=127.0.0.1:{port}"]
        process = self.start(args, "meshbus")
        events = process.wait_line(r"events: (\S+)").group(1)
        commands = process.wait_line(r"commands: (\S+)").group(1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            slots_status = self.command(commands, {"cmd": "status"})["result"]["slots"]
            if all(slot["ready"] for slot in slots_status.values()):
                return process, events, commands
            time.sleep(0.1)
        raise RuntimeError("meshbus slots did not become ready")

    def republisher(self, radio_port):
        events = f"tcp://127.0.0.1:{free_port()}"
        process = self.start([sys.executable, os.path.join(ROOT, "Benchmarks", "python", "republisher.py"),
                              "--radio", f"127.0.0.1:{radio_port}", "--events", events], "python republisher")
        process.wait_line(r"^republishing$", timeout=120)
        return process, events

    def subscribers(self, events, count, how_many=1, idle_ms=3000):
        subs = [self.start([self.subscriber_bin, events, str(count), str(idle_ms), "meshtastic.receive"], "subscriber")
                for _ in range(how_many)]
        return subs

    @staticmethod
    def result(sub):
        return json.loads(sub.wait_line(r"^\{.*\}$", timeout=600).group(0))

    def warm_up(self, control, subs):
        """Emits texts until every subscriber has heard one: their subscriptions are in place."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.control(control, {"emit": "text"})
            try:
                for sub in subs:
                    sub.wait_line(r"^first$", timeout=0.5)
                return
            except RuntimeError:
                continue
        raise RuntimeError("subscribers never heard the warm-up")

    # Runs: each returns the subscriber results plus the publisher's CPU seconds

    def run_relay(self, system, rate, count, how_many=1):
        """One load through MeshBus ("meshbus") or the Python republisher ("python")."""
        port, control = self.simulator()
        if system == "meshbus":
            relay, events, _ = self.meshbus_broker([("sim", port)])
        else:
            relay, events = self.republisher(port)
        subs = self.subscribers(events, count, how_many)
        self.warm_up(control, subs)
        cpu_before = relay.cpu_seconds()
        self.control(control, {"load": count, "rate": rate})
        results = [self.result(sub) for sub in subs]
        cpu = relay.cpu_seconds() - cpu_before
        load = self.control(control, {"loadStatus": True})["load"]
        self.stop_all()
        return {"results": results, "cpu": cpu, "sent_seconds": load["seconds"], "emitted": load["emitted"]}

    def run_floor(self, rate, count, how_many=1, size=FLOOR_ENVELOPE_BYTES):
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        floor = self.start([self.floor_bin, endpoint, str(count), str(rate), str(size), str(how_many)], "floor")
        # Subscribers connect whenever the floor has bound (libzmq retries); it starts sending
        # only once every subscription has arrived.
        subs = self.subscribers(endpoint, count, how_many)
        floor.wait_line(r"^subscribed$")
        cpu_before = floor.cpu_seconds()
        floor.wait_line(r"^sent ", timeout=600)
        cpu = floor.cpu_seconds() - cpu_before
        results = [self.result(sub) for sub in subs]
        self.stop_all()
        return {"results": results, "cpu": cpu}

    @staticmethod
    def delivered_rate(run):
        r = run["results"][0]
        return r["unique"] / r["seconds"] if r["seconds"] > 0 else float("nan")

    def sustained(self, runner, rates, seconds):
        """The highest rate of the ladder delivered completely (no loss) at >= 95% of the rate
        asked, the ladder, and the publisher's CPU µs per event at that rate (its saturation)."""
        best, detail, cpu_per_event = 0, [], float("nan")
        for rate in rates:
            count = int(rate * seconds)
            run = runner(rate, count)
            r = run["results"][0]
            achieved = self.delivered_rate(run)
            ok = r["lost"] == 0 and achieved >= 0.95 * rate
            detail.append((rate, round(achieved), r["lost"]))
            if not ok:
                break
            best = rate
            cpu_per_event = run["cpu"] / max(1, r["unique"]) * 1e6
        return best, detail, cpu_per_event


def fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def ratio(a, b):
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def main():
    parser = argparse.ArgumentParser(description="MeshBus benchmarks, side by side")
    parser.add_argument("--meshbus", required=True)
    parser.add_argument("--subscriber", required=True)
    parser.add_argument("--floor", required=True)
    parser.add_argument("--quick", action="store_true", help="short phases (a smoke run, not figures to quote)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    bench = Bench(args)
    quick = args.quick
    seconds = 1.5 if quick else 3
    rows, targets, raw = [], [], {}
    try:
        # 1. Sustained events/s with zero loss.
        # Steps of at most 1.5× where the relays top out, so neither side's figure is rounded down far.
        ladder = [1000, 5000, 10000, 20000, 50000, 100000] if quick else [1000, 2000, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 50000, 75000, 100000, 150000, 200000]
        python_ladder = [100, 250, 500, 1000, 2000, 5000] if quick else [100, 250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 4000, 5000]
        mb_rate, mb_detail, mb_top_cpu = bench.sustained(lambda r, c: bench.run_relay("meshbus", r, c), ladder, seconds)
        py_rate, py_detail, py_top_cpu = bench.sustained(lambda r, c: bench.run_relay("python", r, c), python_ladder, seconds)
        floor_rate, floor_detail, floor_top_cpu = bench.sustained(lambda r, c: bench.run_floor(r, c), ladder, seconds)
        raw["sustained"] = {"meshbus": mb_detail, "python": py_detail, "floor": floor_detail}
        rows.append(("sustained events/s, 0 loss", fmt(mb_rate), fmt(py_rate), fmt(floor_rate),
                     f"{ratio(mb_rate, py_rate)} A, {ratio(mb_rate, floor_rate)} B"))
        targets.append(("≥ 20× the Python republisher's events/s", f"{ratio(mb_rate, py_rate)}",
                        mb_rate >= 20 * py_rate if py_rate else None))
        targets.append(("within 3× of the libzmq floor's events/s", f"{ratio(floor_rate, mb_rate)} below",
                        mb_rate * 3 >= floor_rate if floor_rate else None))
        rows.append(("CPU µs per event at the top rate (saturation)", fmt(mb_top_cpu), fmt(py_top_cpu), fmt(floor_top_cpu),
                     f"{ratio(mb_top_cpu, py_top_cpu)} A, {ratio(mb_top_cpu, floor_top_cpu)} B"))
        targets.append(("CPU per event at saturation ≤ 1/50 of the Python republisher's", f"{ratio(mb_top_cpu, py_top_cpu)}",
                        mb_top_cpu * 50 <= py_top_cpu))

        # 2. Latency and CPU at a rate every system sustains.
        rate = max(100, min(py_rate or 100, 500))
        count = int(rate * (5 if quick else 20))
        mb = bench.run_relay("meshbus", rate, count)
        py = bench.run_relay("python", rate, count)
        fl = bench.run_floor(rate, count)
        raw["latency"] = {"rate": rate, "meshbus": mb, "python": py, "floor": fl}
        for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
            a, b, c = mb["results"][0][key], py["results"][0][key], fl["results"][0][key]
            rows.append((f"latency {label} at {rate}/s (µs)", fmt(a), fmt(b), fmt(c), f"{ratio(a, b)} A, {ratio(a, c)} B"))
        targets.append(("p99 latency ≤ 1/10 of the Python republisher's", f"{ratio(mb['results'][0]['p99_us'], py['results'][0]['p99_us'])}",
                        mb["results"][0]["p99_us"] * 10 <= py["results"][0]["p99_us"]))
        targets.append(("p99 latency ≤ 1.5× the libzmq floor's", f"{ratio(mb['results'][0]['p99_us'], fl['results'][0]['p99_us'])}",
                        mb["results"][0]["p99_us"] <= 1.5 * fl["results"][0]["p99_us"]))
        per = lambda run: run["cpu"] / max(1, run["results"][0]["unique"]) * 100_000
        rows.append((f"CPU s per 100k events (at {rate}/s)", fmt(per(mb)), fmt(per(py)), fmt(per(fl)),
                     f"{ratio(per(mb), per(py))} A, {ratio(per(mb), per(fl))} B"))

        # 3. Fan-out: CPU per event with 1, 8 and 32 subscribers.
        fan_rate = 2000 if quick else 5000
        fan_count = int(fan_rate * seconds * 2)
        cpu_per_event = {}
        for n in (1, 8, 32):
            run = bench.run_relay("meshbus", fan_rate, fan_count, how_many=n)
            lost = sum(r["lost"] for r in run["results"])
            cpu_per_event[n] = run["cpu"] / fan_count * 1e6
            floor_run = bench.run_floor(fan_rate, fan_count, how_many=n)
            rows.append((f"fan-out {n} subscribers: CPU µs/event (lost)", f"{cpu_per_event[n]:.1f} ({lost})", "–",
                         f"{floor_run['cpu'] / fan_count * 1e6:.1f}", ""))
        targets.append(("fan-out to 32 costs < 2× the CPU per event of 1", f"{cpu_per_event[32] / cpu_per_event[1]:.2f}×",
                        cpu_per_event[32] < 2 * cpu_per_event[1]))

        # 4. Footprint: memory idle and with every replay ring full, CPU and wakeups when idle.
        idle_rss = footprint.idle_one_slot(bench, quick)
        full = footprint.full_rings(bench, quick)
        port, _ = bench.simulator(nodes=2000)
        republisher, _ = bench.republisher(port)
        time.sleep(10 if quick else 60)
        py_rss = republisher.rss_mb()
        bench.stop_all()
        full_mb = full["memory_kb"]["rss"] / 1024
        rows.append(("RSS MB, one idle slot (PSS, private)", footprint.describe(idle_rss), "–", "–", ""))
        targets.append(("RSS < 20 MB with one idle slot", f"{idle_rss['rss'] / 1024:.1f} MB", idle_rss["rss"] < 20 * 1024))
        rows.append((f"RSS MB, 8 slots × 2,000 nodes, every ring full ({full['held']:,} events)", footprint.describe(full["memory_kb"]),
                     f"{py_rss:.1f} (1 radio)", "–", ""))
        targets.append(("RSS < 40 MB for 8 slots × 2,000 nodes with full replay rings", f"{full_mb:.1f} MB", full_mb < 40))
        raw["smaps_full_rings_kb"] = dict(full["smaps_kb"])
        idle = footprint.idle_slots(bench, quick)
        rows.append((f"8 idle slots: % of a core / wakeups per s ({idle['seconds']} s)",
                     f"{idle['cpu_percent']:.3f} / {idle['wakeups_per_second']:.1f}", "–", "–", ""))
        targets.append(("8 idle slots < 0.05% of a core", f"{idle['cpu_percent']:.3f}%", idle["cpu_percent"] < 0.05))
        targets.append(("8 idle slots < 5 wakeups/s", f"{idle['wakeups_per_second']:.1f}/s", idle["wakeups_per_second"] < 5))

        # 5. Command round trip: sendText → reply with 8 concurrent REQ clients.
        port, _ = bench.simulator()
        _, _, commands = bench.meshbus_broker([("sim", port)])
        per_client = 100 if quick else 500
        times = []
        lock = threading.Lock()

        def client():
            with bench.context.socket(zmq.REQ) as req:
                req.connect(commands)
                mine = []
                for i in range(per_client):
                    start = time.perf_counter()
                    req.send_json({"cmd": "sendText", "slot": "sim", "text": f"rtt {i}", "ttlSeconds": 600})
                    reply = req.recv_json()
                    mine.append(time.perf_counter() - start)
                    assert reply["ok"], reply
                with lock:
                    times.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        bench.stop_all()
        times.sort()
        p50, p99 = times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6
        rows.append(("sendText round trip, 8 REQ clients: p50 / p99 (µs)", f"{p50:.0f} / {p99:.0f}", "–", "–", ""))
        raw["command_rtt_us"] = {"p50": p50, "p99": p99, "n": len(times)}
    finally:
        bench.stop_all()

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'figure':<{width}}  {'MeshBus':>16}  {'A: Python':>16}  {'B: libzmq floor':>16}  ratio")
    for name, a, b, c, r in rows:
        print(f"{name:<{width}}  {a:>16}  {b:>16}  {c:>16}  {r}")
    print()
    print("sustained ladder (rate asked, delivered/s, lost):")
    for system, detail in raw["sustained"].items():
        print(f"  {system}: {detail}")
    print()
    footprint.print_breakdown(full["smaps_kb"])
    print()
    print("targets")
    for name, value, passed in targets:
        verdict = "–" if passed is None else ("PASS" if passed else "MISS")
        print(f"  {verdict:4}  {name}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "targets": targets, "raw": raw}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
