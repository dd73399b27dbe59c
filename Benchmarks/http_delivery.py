#!/usr/bin/env python3
"""Events delivered over HTTP (design.md §8): the highest load rate that reaches one real
browser (headless Chromium, an EventSource and a WebSocket on the page) and 50 SSE clients
with nothing lost, next to what one ZeroMQ subscriber gets in the same run.

A rate counts when every client received every event of the load (no slow_consumer gap, no
close) at >= 95% of the rate asked. Called by scripts/bench; `--quick` shortens each step.
"""
import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "interop"))
from bench import Bench, free_port  # noqa: E402
import chromium  # noqa: E402

# A page of the broker's origin (so EventSource and WebSocket are same-origin) with no script of its own.
BROWSER_COUNTERS = """
window.counts = {sse: 0, ws: 0, gaps: 0, closed: 0, first: {}, last: {}};
const seen = (kind) => { const now = performance.now(); counts[kind]++; counts.first[kind] ??= now; counts.last[kind] = now; };
const es = new EventSource('/events?prefix=meshtastic.receive');
es.addEventListener('meshtastic.receive/sim/TEXT_MESSAGE_APP', () => seen('sse'));
es.addEventListener('gap', () => counts.gaps++);
es.onerror = () => counts.closed++;
const ws = new WebSocket(location.origin.replace('http', 'ws') + '/ws');
ws.onopen = () => ws.send(JSON.stringify({subscribe: ['meshtastic.receive']}));
ws.onmessage = (m) => { const x = JSON.parse(m.data); if (x.topic) seen('ws'); else if (x.gap) counts.gaps++; };
ws.onclose = () => counts.closed++;
window.resetCounts = () => Object.assign(counts, {sse: 0, ws: 0, gaps: 0, closed: 0, first: {}, last: {}});
'started';
"""


async def sse_clients(host, port, how_many, expected):
    """Starts `how_many` SSE readers, each ending at `expected` events or when closed; returns
    their tasks, an event set once all are subscribed, and the live counts of events and gaps."""
    marker = b"event: meshtastic.receive/"
    counts = [0] * how_many
    gaps = [0] * how_many
    ready = asyncio.Event()
    opened = 0

    async def one(index):
        nonlocal opened
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /events?prefix=meshtastic.receive HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        opened += 1
        if opened == how_many:
            ready.set()
        carry = b""
        try:
            while counts[index] < expected:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                text = carry + chunk
                counts[index] += text.count(marker)
                gaps[index] += text.count(b"event: gap")
                carry = text[-(len(marker) - 1):]
                counts[index] -= carry.count(marker)  # counted again with the next chunk
                gaps[index] -= carry.count(b"event: gap")
        finally:
            writer.close()

    tasks = [asyncio.create_task(one(i)) for i in range(how_many)]
    return tasks, ready, counts, gaps


def main():
    parser = argparse.ArgumentParser(description="MeshBus HTTP delivery figures")
    parser.add_argument("--meshbus", required=True)
    parser.add_argument("--subscriber", required=True)
    parser.add_argument("--floor", default="")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else 3
    bench = Bench(args)
    rows = []
    try:
        sim_port, control = bench.simulator()
        http_port = free_port()
        args_run = [bench.meshbus, "run", "--events", "tcp://127.0.0.1:*", "--commands", "tcp://127.0.0.1:*",
                    "--outbox-capacity", "100000", "--tcp", f"sim=127.0.0.1:{sim_port}", "--http", f"127.0.0.1:{http_port}"]
        broker = bench.start(args_run, "meshbus")
        events = broker.wait_line(r"events: (\S+)").group(1)
        broker.wait_line(r"http: ")
        commands = broker.wait_line(r"commands: (\S+)").group(1)
        deadline = time.monotonic() + 60
        while not bench.command(commands, {"cmd": "status", "slot": "sim"})["result"]["slots"]["sim"]["ready"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the slot did not become ready")
            time.sleep(0.1)

        def load(rate, count):
            bench.control(control, {"load": count, "rate": rate})

        def load_done():
            while not bench.control(control, {"loadStatus": True})["load"]["done"]:
                time.sleep(0.05)

        # 1. One browser: an EventSource and a WebSocket on one page, plus one ZeroMQ subscriber beside it.
        ladder = [1000, 2000, 5000, 10000, 20000] if args.quick else [1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000]
        best = {"sse": 0, "ws": 0, "zmq": 0}
        passing = {"sse": True, "ws": True, "zmq": True}
        detail = []
        with chromium.Chromium() as page:
            page.navigate(f"http://127.0.0.1:{http_port}/metrics")
            page.evaluate(BROWSER_COUNTERS)
            page.wait_for("document.readyState === 'complete'", "the counting page")
            time.sleep(0.5)
            for rate in ladder:
                count = int(rate * seconds)
                sub = bench.subscribers(events, count, 1)[0]
                bench.warm_up(control, [sub])
                time.sleep(0.3)
                page.evaluate("resetCounts()")
                load(rate, count)
                result = bench.result(sub)
                try:
                    page.wait_for(f"counts.sse >= {count} && counts.ws >= {count} || counts.closed > 0 || counts.gaps > 0",
                                  f"{count} events in the browser", timeout=seconds * 4 + 10)
                except AssertionError:
                    pass
                load_done()
                got = page.evaluate("counts")
                delivered = {}
                for kind in ("sse", "ws"):
                    span = (got["last"].get(kind, 0) - got["first"].get(kind, 0)) / 1000
                    delivered[kind] = (got[kind] - 1) / span if span > 0 else 0
                    complete = got[kind] == count and got["gaps"] == 0 and got["closed"] == 0
                    passing[kind] = passing[kind] and complete and delivered[kind] >= 0.95 * rate
                    if passing[kind]:
                        best[kind] = rate
                zmq_rate = result["unique"] / result["seconds"] if result["seconds"] > 0 else 0
                passing["zmq"] = passing["zmq"] and result["lost"] == 0 and result["unique"] == count and zmq_rate >= 0.95 * rate
                if passing["zmq"]:
                    best["zmq"] = rate
                detail.append((rate, got["sse"], round(delivered["sse"]), got["ws"], round(delivered["ws"]), result["unique"], got["gaps"]))
                if not passing["sse"] and not passing["ws"]:
                    break
                if got["closed"] or got["gaps"]:
                    page.navigate(f"http://127.0.0.1:{http_port}/metrics")
                    page.evaluate(BROWSER_COUNTERS)
                    time.sleep(0.5)
        rows.append(("one browser, EventSource: events/s with 0 loss", best["sse"]))
        rows.append(("one browser, WebSocket: events/s with 0 loss", best["ws"]))
        rows.append(("one ZeroMQ subscriber beside it: events/s with 0 loss", best["zmq"]))

        # 2. 50 SSE clients at once.
        sse_ladder = [100, 200, 500, 1000] if args.quick else [100, 200, 300, 500, 750, 1000, 1500, 2000]
        sse_best, sse_detail = 0, []
        for rate in sse_ladder:
            count = int(rate * seconds)

            async def run():
                tasks, ready, counts, gaps = await sse_clients("127.0.0.1", http_port, 50, count)
                await asyncio.wait_for(ready.wait(), 30)
                await asyncio.sleep(0.3)
                started = time.monotonic()
                await asyncio.to_thread(load, rate, count)
                done, pending = await asyncio.wait(tasks, timeout=seconds * 4 + 10)
                for task in pending:
                    task.cancel()
                return counts, gaps, time.monotonic() - started

            counts, gaps, elapsed = asyncio.run(run())
            load_done()
            complete = sum(1 for c in counts if c == count)
            sse_detail.append((rate, complete, min(counts), sum(gaps), round(elapsed, 1)))
            if complete < 50 or sum(gaps):
                break
            sse_best = rate
        rows.append(("50 SSE clients: events/s to each with 0 loss", sse_best))
        rows.append(("50 SSE clients: events/s delivered in all", sse_best * 50))
    finally:
        bench.stop_all()

    width = max(len(r[0]) for r in rows)
    print()
    print("HTTP delivery (highest rate of the ladder with every event delivered)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10,}")
    if passing["zmq"]:
        print("  (ZeroMQ never lost an event: its figure is where the browser's ladder stopped, not its limit)")
    print(f"  ratio EventSource / ZeroMQ: {best['sse'] / best['zmq']:.2f}×" if best["zmq"] else "")
    print("  browser ladder (rate, SSE got, SSE/s, WS got, WS/s, ZeroMQ got, gaps):", detail)
    print("  50-client ladder (rate, clients complete, fewest events, gaps, seconds):", sse_detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
