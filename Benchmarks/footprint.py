#!/usr/bin/env python3
"""What MeshBus costs while it waits and once it has filled up: resident memory of one idle
slot, of 8 slots × 2,000 nodes with every replay ring full (with the /proc smaps breakdown),
and the CPU time and wakeups of 8 connected slots with no traffic.

Used by bench.py (its Bench class starts the processes); alone:

    Benchmarks/footprint.py --meshbus .build/release/meshbus [--quick]
"""
import argparse
import collections
import os
import time

RING = 10_000


def memory_kb(pid):
    """RSS, PSS (shared pages divided among the processes mapping them) and private memory
    (what the process alone holds: its anonymous memory and the file pages it changed)."""
    totals = collections.Counter()
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                totals[parts[0][:-1]] = int(parts[1])
    return {"rss": totals["Rss"], "pss": totals["Pss"], "private": totals["Private_Clean"] + totals["Private_Dirty"]}


def describe(kb):
    return f"{kb['rss'] / 1024:.1f} MB (PSS {kb['pss'] / 1024:.1f}, private {kb['private'] / 1024:.1f})"


def smaps_breakdown(pid):
    """Resident kB by what is mapped: each file by name, the heap, stacks, anonymous memory."""
    groups = collections.Counter()
    name = "?"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                path = parts[5] if len(parts) > 5 else ""
                if path.startswith("/"):
                    name = os.path.basename(path)
                elif path:
                    name = path
                else:
                    name = "anonymous (malloc arenas, thread stacks)"
            elif parts[0] == "Rss:":
                groups[name] += int(parts[1])
    return groups


def cpu_and_switches(pid):
    """CPU seconds of the whole process (/proc/<pid>/stat: threads that ended count too) and
    the context switches of its live threads (/proc/<pid>/task/*/status)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return cpu, switches


def wait_until(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def slots_status(bench, commands):
    return bench.command(commands, {"cmd": "status"})["result"]["slots"]


def idle_one_slot(bench, quick):
    """Memory (``memory_kb``) of a broker with one ready slot and nothing flowing."""
    port, _ = bench.simulator()
    broker, _, _ = bench.meshbus_broker([("sim", port)])
    time.sleep(2 if quick else 10)
    kb = memory_kb(broker.proc.pid)
    bench.stop_all()
    return kb


def full_rings(bench, quick, slots=8, nodes=2000):
    """8 slots × 2,000 nodes, each ring filled past its 10,000 events by load texts."""
    radios = [bench.simulator(nodes=nodes) for _ in range(slots)]
    broker, _, commands = bench.meshbus_broker([(f"s{i}", port) for i, (port, _) in enumerate(radios)])
    texts = RING + RING // 5
    for _, control in radios:
        bench.control(control, {"load": texts, "rate": 1500})

    def full():
        return all(s["replayHeld"] >= RING and s["lastSeq"] >= texts for s in slots_status(bench, commands).values())

    wait_until("every replay ring full", full, 300)
    for _, control in radios:
        wait_until("the simulator's load sent", lambda: bench.control(control, {"loadStatus": True})["load"]["emitted"] >= texts, 120)
    time.sleep(3 if quick else 15)
    status = slots_status(bench, commands)
    result = {
        "memory_kb": memory_kb(broker.proc.pid),
        "smaps_kb": smaps_breakdown(broker.proc.pid),
        "nodes": sum(s["nodeCount"] for s in status.values()),
        "held": sum(s["replayHeld"] for s in status.values()),
    }
    bench.stop_all()
    return result


def idle_slots(bench, quick, slots=8):
    """CPU share of one core and wakeups per second of `slots` connected slots with no traffic."""
    radios = [bench.simulator() for _ in range(slots)]
    broker, _, _ = bench.meshbus_broker([(f"s{i}", port) for i, (port, _) in enumerate(radios)])
    time.sleep(2)  # the handshakes' last writes
    seconds = 10 if quick else 120
    cpu_before, switches_before = cpu_and_switches(broker.proc.pid)
    time.sleep(seconds)
    cpu_after, switches_after = cpu_and_switches(broker.proc.pid)
    bench.stop_all()
    return {
        "seconds": seconds,
        "cpu_percent": (cpu_after - cpu_before) / seconds * 100,
        "cpu_ms": (cpu_after - cpu_before) * 1000,
        "wakeups_per_second": (switches_after - switches_before) / seconds,
    }


def print_breakdown(smaps_kb, top=12):
    total = sum(smaps_kb.values())
    print(f"smaps, resident kB by mapping (total {total:,} kB):")
    for name, kb in smaps_kb.most_common(top):
        print(f"  {kb:>8,}  {name}")
    rest = sum(kb for _, kb in smaps_kb.most_common()[top:])
    if rest:
        print(f"  {rest:>8,}  (the rest)")


def main():
    from bench import Bench

    parser = argparse.ArgumentParser(description="MeshBus footprint: idle and full-ring memory, idle CPU")
    parser.add_argument("--meshbus", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.subscriber = args.floor = None
    bench = Bench(args)
    try:
        print(f"one idle slot: {describe(idle_one_slot(bench, args.quick))}")
        full = full_rings(bench, args.quick)
        print(f"8 slots × 2,000 nodes, rings full: {describe(full['memory_kb'])} ({full['nodes']:,} nodes, "
              f"{full['held']:,} events held for replay)")
        print_breakdown(full["smaps_kb"])
        idle = idle_slots(bench, args.quick)
        print(f"8 idle slots: {idle['cpu_percent']:.3f}% of a core ({idle['cpu_ms']:.0f} ms in {idle['seconds']} s), "
              f"{idle['wakeups_per_second']:.2f} wakeups/s")
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
