#!/usr/bin/env python3
"""Instructions per event, counted by callgrind: the figure regressions are tracked by.

Runs `meshbus-workload` (a load simulator, one broker slot, a subscriber, in one process)
under `valgrind --tool=callgrind` with two event counts; the difference divided by the
difference in events is the cost of one event without the fixed start-up cost. The same for
`--radio-only` (the simulator and a bare reader) gives the simulator's share, which is
subtracted. Instruction counts do not depend on what else the machine is doing.

    instructions.py --workload .build/release/meshbus-workload            compare with the baseline
    instructions.py --workload ... --update                               write a new baseline
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "Benchmarks", "instructions-baseline.json")
SMALL, LARGE = 2_000, 12_000
TOLERANCE = 0.05
# The second performance round's target for MeshBus's share.
TARGET = 30_000


def prepare(workload, directory):
    """valgrind 3.19 gives up on the DWARF 5 debug info of Swift 6 binaries and of the Swift
    runtime: run copies without debug info (symbols stay, so profiles keep function names)."""
    libraries = os.path.join(directory, "lib")
    os.makedirs(libraries)
    copy = os.path.join(directory, os.path.basename(workload))
    shutil.copy(workload, copy)
    subprocess.run(["strip", "--strip-debug", copy], check=True)
    for line in subprocess.run(["ldd", workload], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split("=>")
        path = parts[1].split()[0] if len(parts) == 2 and parts[1].split() else ""
        if "/swift/" in path:  # the toolchain's runtime: stdlib, Foundation, dispatch
            target = os.path.join(libraries, os.path.basename(path))
            shutil.copy(path, target)
            subprocess.run(["strip", "--strip-debug", target], check=True)
    return copy, libraries


def total_instructions(workload, count, *extra):
    with tempfile.TemporaryDirectory() as directory:
        binary, libraries = prepare(workload, directory)
        out = os.path.join(directory, "callgrind.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, str(count), *extra],
            capture_output=True, text=True, timeout=1800, env={**os.environ, "LD_LIBRARY_PATH": libraries},
        )
        if result.returncode != 0:
            raise RuntimeError(f"workload {count} {extra} failed:\n{result.stdout}\n{result.stderr[-2000:]}")
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    raise RuntimeError("callgrind wrote no total")


def per_event(workload, *extra):
    small = total_instructions(workload, SMALL, *extra)
    large = total_instructions(workload, LARGE, *extra)
    return (large - small) / (LARGE - SMALL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--update", action="store_true", help="write the measured values as the new baseline")
    args = parser.parse_args()

    whole = per_event(args.workload)
    radio = per_event(args.workload, "--radio-only")
    measured = {"whole": round(whole), "radio_only": round(radio), "meshbus": round(whole - radio)}
    print(f"instructions per event (callgrind, {SMALL:,} vs {LARGE:,} events):")
    print(f"  whole path (simulator → TCP → slot → JSON → PUB → SUB): {measured['whole']:,}")
    print(f"  simulator and a bare reader alone:                      {measured['radio_only']:,}")
    print(f"  MeshBus's share (the difference):                       {measured['meshbus']:,}")
    verdict = "PASS" if measured["meshbus"] <= TARGET else "MISS"
    print(f"  {verdict}  MeshBus's share ≤ {TARGET:,} instructions per event")

    if args.update or not os.path.exists(BASELINE):
        with open(BASELINE, "w") as f:
            json.dump(measured, f, indent=1)
            f.write("\n")
        print(f"baseline written to {os.path.relpath(BASELINE, ROOT)}")
        return 0
    with open(BASELINE) as f:
        baseline = json.load(f)
    change = (measured["meshbus"] - baseline["meshbus"]) / baseline["meshbus"]
    verdict = "MOVED" if abs(change) > TOLERANCE else "steady"
    print(f"  against the baseline ({baseline['meshbus']:,}): {change:+.1%}  {verdict} (tolerance ±{TOLERANCE:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
