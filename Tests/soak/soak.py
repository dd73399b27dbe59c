"""The soak: a MeshBus broker under everything a long service sees, sampled as it runs.

Eight slots on `meshbus sim` radios (LoRa-like traffic plus bursts), a seeded fault every few
seconds through the simulators' control sockets (stall, drop, reboot, garbage, offline),
ZeroMQ consumers that come and go, two official-client virtual radio connections that keep
reconnecting, the MQTT bridge on a private mosquitto, a config reload every minute (one slot
changed, so it reconnects), and sends with and without ACK. Every sample prints the broker's
RSS, open descriptors, threads, replay fill and the sends by terminal status.

It fails if, after warm-up, RSS grew by more than RSS_BOUND_MB or the descriptors by more
than FD_BOUND; if any accepted send did not reach exactly one terminal status; or if a slot
is not ready once the faults stop. Run by `scripts/soak MINUTES`."""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import zmq

SLOTS = 8
# After warm-up, what the broker may grow by before the soak fails.
RSS_BOUND_MB = 12.0
FD_BOUND = 8
# Small rings, so they are full well within warm-up and steady-state memory is what is measured.
REPLAY_CAPACITY = 300
TERMINAL = {"acked", "nak", "expired", "failed", "sent"}


def terminal_statuses(want_ack, seen):
    """The terminal statuses among a send's statuses: `sent` ends only a send without ACK."""
    return [s for s in seen if s in TERMINAL and not (s == "sent" and want_ack)]


def log(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, args, pattern, stderr):
    """Starts `binary args`; returns (process, first group of each regex of `pattern` in its output)."""
    proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=stderr, text=True)
    found = {}
    deadline = time.monotonic() + 30
    while len(found) < len(pattern) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        for key, regex in pattern.items():
            match = re.match(regex, line.strip())
            if match:
                found[key] = match.group(1)
    if len(found) < len(pattern):
        proc.kill()
        raise SystemExit(f"soak: {' '.join(args[:2])} did not announce {sorted(set(pattern) - set(found))}")
    # Keep draining its output so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, found


class Soak:
    def __init__(self, binary, seconds, every, seed, workdir):
        self.binary = binary
        self.seconds = seconds
        self.every = every
        self.seed = seed
        self.random = random.Random(seed)
        self.workdir = workdir
        self.context = zmq.Context()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted = {}          # (slot, packetId) -> wantAck
        self.refused = Counter()    # command error code -> count
        self.statuses = {}          # (slot, packetId) -> [status, ...] in order
        self.faults = Counter()
        self.cycles = Counter()     # consumer, virtual radio and reload cycles
        self.problems = []
        self.processes = []
        self.logs = []

    # MARK: setup

    def stderr(self, name):
        handle = open(os.path.join(self.workdir, f"{name}.log"), "w")
        self.logs.append(handle)
        return handle

    def start_simulators(self):
        self.sims = []
        for index in range(SLOTS):
            # LoRa-like: one to three packets a minute per node, six nodes.
            traffic = self.random.choice([40, 60, 90, 120])
            proc, found = start(self.binary, ["sim", "--port", "0", "--nodes", "6", "--traffic", str(traffic),
                                              "--control", "tcp://127.0.0.1:*"],
                                {"port": r"simulator listening on [\d.]+:(\d+)", "control": r"control: (\S+)"},
                                self.stderr(f"sim{index}"))
            self.processes.append(proc)
            self.sims.append({"port": int(found["port"]), "control": found["control"]})

    def start_mosquitto(self):
        mosquitto = shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
        if mosquitto is None:
            raise SystemExit("soak: mosquitto is not installed (scripts/setup test installs it)")
        self.mqtt_port = free_port()
        config = os.path.join(self.workdir, "mosquitto.conf")
        with open(config, "w") as out:
            out.write(f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      + ("user root\n" if os.getuid() == 0 else ""))
        self.processes.append(subprocess.Popen([mosquitto, "-c", config], stdout=self.stderr("mosquitto"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("soak: mosquitto did not accept connections within 20 s")

    def write_config(self, generation):
        """The broker's config; each reload flips the first slot's health-check interval, which
        makes that slot reconnect, while the others stay untouched."""
        lines = [
            f"events: [tcp://127.0.0.1:{self.events_port}]",
            f"commands: [tcp://127.0.0.1:{self.commands_port}]",
            f"replayCapacity: {REPLAY_CAPACITY}",
            f"stateDirectory: {os.path.join(self.workdir, 'state')}",
            "timing: {healthCheckInterval: 3s, probeTimeout: 2s, baseBackoff: 300ms, maxBackoff: 3s, stableAfter: 5s}",
            f"mqtt: {{broker: '127.0.0.1:{self.mqtt_port}', site: soak}}",
            "slots:",
        ]
        for index, sim in enumerate(self.sims):
            entry = f"  - {{name: radio{index}, tcp: '127.0.0.1:{sim['port']}'"
            if index == 0:
                entry += f", timing: {{healthCheckInterval: {3 + generation % 2}s}}"
            if index < 2:
                entry += f", virtualRadio: '127.0.0.1:{self.virtual_ports[index]}'"
            lines.append(entry + "}")
        path = os.path.join(self.workdir, "meshbus.yaml")
        with open(path + ".new", "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(path + ".new", path)
        return path

    def start_broker(self):
        self.events_port, self.commands_port = free_port(), free_port()
        self.virtual_ports = [free_port(), free_port()]
        self.events = f"tcp://127.0.0.1:{self.events_port}"
        self.commands = f"tcp://127.0.0.1:{self.commands_port}"
        config = self.write_config(0)
        self.broker, _ = start(self.binary, ["run", "--config", config], {"commands": r"commands: (\S+)"}, self.stderr("broker"))
        self.processes.append(self.broker)
        bridge_log = self.stderr("bridge")
        self.bridge = subprocess.Popen([self.binary, "mqtt", "--config", config], stdout=bridge_log, stderr=subprocess.STDOUT)
        self.processes.append(self.bridge)

    # MARK: talking to the broker

    def command(self, request, timeout_ms=10000):
        socket_ = self.context.socket(zmq.REQ)
        socket_.setsockopt(zmq.RCVTIMEO, timeout_ms)
        socket_.setsockopt(zmq.LINGER, 0)
        socket_.connect(self.commands)
        try:
            socket_.send_json(request)
            return socket_.recv_json()
        finally:
            socket_.close()

    def status(self):
        reply = self.command({"cmd": "status"})
        assert reply["ok"], reply
        return reply["result"]["slots"]

    # MARK: the load

    def loop(self, name, body, interval, first_wait=0):
        """Runs `body(rng)` every `interval(rng)` seconds until the soak stops, with its own random
        generator seeded from the soak's seed and its name; an exception is a problem."""
        rng = random.Random(f"{self.seed}-{name}")

        def run():
            self.stop.wait(first_wait)
            while not self.stop.is_set():
                try:
                    body(rng)
                except Exception as error:  # noqa: BLE001 - every failure is reported at the end
                    with self.lock:
                        self.problems.append(f"{name}: {error!r}")
                self.stop.wait(interval(rng))
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def record_statuses(self):
        """One subscriber for the whole run: every send.status, in order, per packet."""
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVTIMEO, 500)
        sub.connect(self.events)
        sub.subscribe(b"meshtastic.send.status")
        self.status_subscriber_ready.set()
        while not self.status_stop.is_set():
            try:
                frames = sub.recv_multipart()
            except zmq.Again:
                continue
            envelope = json.loads(frames[1])
            key = (envelope["slot"], envelope["packetId"])
            with self.lock:
                self.statuses.setdefault(key, []).append(envelope["status"])
        sub.close()

    def send_one(self, rng):
        slot = f"radio{rng.randrange(SLOTS)}"
        want_ack = rng.random() < 0.6
        reply = self.command({"cmd": "sendText", "slot": slot, "text": f"soak {time.time():.3f}", "wantAck": want_ack,
                              "ttlSeconds": rng.choice([10, 20, 30])})
        with self.lock:
            if reply["ok"]:
                self.accepted[(slot, reply["result"]["packetId"])] = want_ack
            else:
                self.refused[reply["error"]["code"]] += 1

    def inject_fault(self, rng):
        index = rng.randrange(SLOTS)
        kind = rng.choice(["stall", "drop", "reboot", "garbage", "offline", "burst"])
        control = self.context.socket(zmq.REQ)
        control.setsockopt(zmq.RCVTIMEO, 5000)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(self.sims[index]["control"])
        try:
            if kind == "stall":
                request = {"fault": "stall", "on": True}
            elif kind == "offline":
                request = {"fault": "offline", "seconds": rng.choice([1, 2, 4])}
            elif kind == "burst":
                request = {"load": rng.choice([50, 100, 200]), "rate": 50}
            else:
                request = {"fault": kind}
            control.send_json(request)
            reply = control.recv_json()
            if kind == "burst" and not reply["ok"]:
                return  # no client connected at that moment: nothing to burst into
            assert reply["ok"], (kind, reply)
            with self.lock:
                self.faults[kind] += 1
            if kind == "stall":
                # Long enough for the probes to notice (strikes), then the radio answers again.
                self.stop.wait(rng.choice([2, 5, 8]))
                control.send_json({"fault": "stall", "on": False})
                control.recv_json()
        finally:
            control.close()

    def consumer_cycle(self, rng):
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVTIMEO, 200)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(self.events)
        sub.subscribe(rng.choice([b"", b"meshtastic.receive", b"meshtastic.node"]))
        deadline = time.monotonic() + rng.uniform(0.2, 3)
        while time.monotonic() < deadline:
            try:
                sub.recv_multipart()
            except zmq.Again:
                pass
        sub.close()
        if rng.random() < 0.2:
            # A consumer that catches up: replay the slot's whole ring.
            self.command({"cmd": "replay", "slot": f"radio{rng.randrange(SLOTS)}", "sinceSeq": 0})
        with self.lock:
            self.cycles["consumers"] += 1

    def virtual_client_cycle(self, index, rng):
        from meshtastic.tcp_interface import TCPInterface
        try:
            client = TCPInterface(hostname="127.0.0.1", portNumber=self.virtual_ports[index], timeout=20)
        except Exception:  # noqa: BLE001 - the slot may be in a fault; the next cycle tries again
            with self.lock:
                self.cycles["virtual radio refused"] += 1
            return
        self.stop.wait(rng.uniform(1, 6))
        client.close()
        with self.lock:
            self.cycles["virtual radio"] += 1

    def reload(self, rng):
        with self.lock:
            self.cycles["reloads"] += 1
            generation = self.cycles["reloads"]
        self.write_config(generation)

    def bridged_slots(self):
        """The slots the MQTT bridge keeps retained topics for on mosquitto."""
        import paho.mqtt.client as mqtt
        topics = set()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="meshbus-soak-check")
        client.on_message = lambda _client, _data, message: topics.add(message.topic)
        client.connect("127.0.0.1", self.mqtt_port)
        client.subscribe("meshbus/soak/#")
        client.loop_start()
        time.sleep(3)
        client.loop_stop()
        client.disconnect()
        return {f"radio{index}" for index in range(SLOTS) if any(f"/radio{index}/" in topic for topic in topics)}

    # MARK: measuring

    def sample(self, elapsed):
        pid = self.broker.pid
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        rss = int(fields["VmRSS"].split()[0]) / 1024
        threads = int(fields["Threads"])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        slots = self.status()
        held = sum(s["replayHeld"] for s in slots.values())
        ready = sum(1 for s in slots.values() if s["ready"])
        sends = Counter()
        for s in slots.values():
            sends.update(s["sends"])
        with self.lock:
            faults = sum(self.faults.values())
            cycles = dict(self.cycles)
        row = {"t": elapsed, "rss": rss, "fds": fds, "threads": threads, "fill": held / (REPLAY_CAPACITY * SLOTS),
               "ready": ready, "sends": sends, "faults": faults, "cycles": cycles}
        log(f"| {elapsed / 60:5.1f} | {rss:7.1f} | {fds:4d} | {threads:3d} | {100 * row['fill']:5.1f}% |   {ready}/{SLOTS} | "
            f"{sends['acked']:5d} | {sends['sent']:5d} | {sends['nak']:4d} | {sends['expired']:5d} | {sends['failed']:4d} | "
            f"{faults:5d} | {cycles.get('consumers', 0):5d} | {cycles.get('virtual radio', 0):4d} | {cycles.get('reloads', 0):3d} |")
        return row

    # MARK: the run

    def run(self):
        log(f"soak: {self.seconds:.0f} s, a sample every {self.every:.0f} s, seed {self.seed}, work dir {self.workdir}")
        self.start_simulators()
        self.start_mosquitto()
        self.start_broker()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(1 for s in self.status().values() if s["ready"]) < SLOTS:
            time.sleep(0.2)
        self.status_subscriber_ready = threading.Event()
        self.status_stop = threading.Event()
        recorder = threading.Thread(target=self.record_statuses, name="statuses", daemon=True)
        recorder.start()
        self.status_subscriber_ready.wait(10)
        time.sleep(0.5)  # the subscription reaches the PUB socket before the first send

        log("| min   | RSS MB  | fds  | thr | replay | ready | acked | sent  | nak  | expir | fail | fault | cons. | virt | rld |")
        log("|------:|--------:|-----:|----:|-------:|------:|------:|------:|-----:|------:|-----:|------:|------:|-----:|----:|")
        started = time.monotonic()
        samples = [self.sample(0)]
        reload_every = min(60, self.seconds / 3)
        threads = [
            self.loop("sender", self.send_one, lambda rng: rng.uniform(0.3, 1.2)),
            self.loop("faults", self.inject_fault, lambda rng: rng.uniform(2, 5)),
            self.loop("consumers", self.consumer_cycle, lambda rng: rng.uniform(0.1, 1)),
            # Every minute; a run shorter than three minutes reloads three times.
            self.loop("reload", self.reload, lambda rng: reload_every, first_wait=reload_every),
        ]
        threads += [self.loop(f"virtual{index}", lambda rng, index=index: self.virtual_client_cycle(index, rng),
                              lambda rng: rng.uniform(0.5, 2)) for index in range(2)]
        next_sample = started + self.every
        while time.monotonic() < started + self.seconds:
            time.sleep(max(0, min(next_sample, started + self.seconds) - time.monotonic()))
            if time.monotonic() >= next_sample:
                samples.append(self.sample(time.monotonic() - started))
                next_sample += self.every
        self.stop.set()
        for thread in threads:
            thread.join(timeout=30)

        # Quiet: every fault cleared, every send given time to settle (the longest ttl is 30 s).
        for sim in self.sims:
            control = self.context.socket(zmq.REQ)
            control.setsockopt(zmq.RCVTIMEO, 5000)
            control.setsockopt(zmq.LINGER, 0)
            control.connect(sim["control"])
            control.send_json({"fault": "clear"})
            control.recv_json()
            control.close()
        settle_deadline = time.monotonic() + 45
        while time.monotonic() < settle_deadline:
            with self.lock:
                unsettled = [key for key, want_ack in self.accepted.items() if not terminal_statuses(want_ack, self.statuses.get(key, []))]
            if not unsettled and all(s["ready"] for s in self.status().values()):
                break
            time.sleep(0.5)
        final = self.sample(time.monotonic() - started)
        self.status_stop.set()
        recorder.join(timeout=5)
        return self.verdict(samples, final)

    def verdict(self, samples, final):
        failures = list(self.problems)
        warm = [s for s in samples if s["t"] >= min(self.seconds / 3, 300)] or samples[-1:]
        baseline = warm[0]
        rss_growth = final["rss"] - baseline["rss"]
        fd_growth = final["fds"] - min(s["fds"] for s in warm)
        if rss_growth > RSS_BOUND_MB:
            failures.append(f"RSS grew {rss_growth:.1f} MB after warm-up ({baseline['rss']:.1f} → {final['rss']:.1f}), bound {RSS_BOUND_MB} MB")
        if fd_growth > FD_BOUND:
            failures.append(f"descriptors grew by {fd_growth} after warm-up, bound {FD_BOUND}")
        with self.lock:
            accepted = dict(self.accepted)
            statuses = {key: list(value) for key, value in self.statuses.items()}
        outcomes = Counter()
        for key, want_ack in accepted.items():
            seen = statuses.get(key, [])
            terminal = terminal_statuses(want_ack, seen)
            if len(terminal) != 1:
                failures.append(f"send {key} (wantAck {want_ack}) has statuses {seen}: not exactly one terminal status")
            else:
                outcomes[terminal[0]] += 1
        if final["ready"] != SLOTS:
            failures.append(f"{SLOTS - final['ready']} slots not ready once the faults stopped: "
                            + ", ".join(f"{name}={s['state']}" for name, s in self.status().items() if not s["ready"]))
        bridged = self.bridged_slots()
        if len(bridged) != SLOTS:
            failures.append(f"the MQTT bridge has retained topics for {sorted(bridged)} only")
        if self.bridge.poll() is not None:
            failures.append(f"the MQTT bridge exited with {self.bridge.returncode}")
        if self.broker.poll() is not None:
            failures.append(f"the broker exited with {self.broker.returncode}")
        log(f"soak: {len(accepted)} sends accepted, by terminal status {dict(outcomes)}; refused {dict(self.refused)}")
        log(f"soak: faults injected {dict(self.faults)}; cycles {dict(self.cycles)}")
        log(f"soak: after warm-up RSS {baseline['rss']:.1f} → {final['rss']:.1f} MB (bound +{RSS_BOUND_MB}), "
            f"fds {min(s['fds'] for s in warm)} → {final['fds']} (bound +{FD_BOUND})")
        for failure in failures[:40]:
            log(f"FAIL: {failure}")
        return not failures

    def close(self):
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for handle in self.logs:
            handle.close()
        self.context.destroy(linger=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("minutes", type=float)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--every", type=float, default=60, help="seconds between samples (default 60)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("MESHBUS_SOAK_SEED", "20261130")))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, config, journal)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="meshbus-soak-")
    soak = Soak(args.binary, args.minutes * 60, args.every, args.seed, workdir)
    try:
        passed = soak.run()
    finally:
        soak.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    log("soak: PASS" if passed else f"soak: FAIL (logs in {workdir} with --keep)")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
