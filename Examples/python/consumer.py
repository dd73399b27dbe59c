#!/usr/bin/env python3
"""A MeshBus consumer that never misses an event.

It keeps a live copy of every slot's node DB: subscribe first, take a `snapshot`, then apply
events whose `seq` is greater. A jump in `seq` means events were missed (a slow consumer past
its high-water mark, a reconnect): it fetches them with `replay`, or takes a new snapshot if
the broker no longer holds them. A new `broker` id means MeshBus restarted: snapshot again.

    python3 consumer.py --events tcp://127.0.0.1:7710 --commands tcp://127.0.0.1:7711
"""
import argparse
import json
import sys

import zmq


class Broker:
    """The command socket: one JSON request, one JSON reply."""

    def __init__(self, context, endpoint):
        self.context, self.endpoint = context, endpoint

    def call(self, **request):
        # A fresh REQ socket per call: a lost reply never wedges the REQ state machine.
        with self.context.socket(zmq.REQ) as req:
            req.setsockopt(zmq.RCVTIMEO, 10_000)
            req.setsockopt(zmq.LINGER, 0)
            req.connect(self.endpoint)
            req.send_json(request)
            reply = req.recv_json()
        if not reply["ok"]:
            raise RuntimeError(f"{request['cmd']}: {reply['error']['code']}: {reply['error']['message']}")
        return reply["result"]


class SlotView:
    """What one slot looks like, current at `seq`."""

    def __init__(self, name):
        self.name, self.broker_id, self.seq, self.nodes = name, None, 0, {}

    def load(self, snapshot, broker_id):
        self.broker_id, self.seq, self.nodes = broker_id, snapshot["seq"], dict(snapshot["nodes"])
        print(f"snapshot {self.name}: {len(self.nodes)} nodes at seq {self.seq}", flush=True)

    def apply(self, topic, envelope):
        self.seq = envelope["seq"]
        if topic.startswith("meshtastic.node.updated/"):
            node = envelope["node"]
            node_id = f"!{node['num']:08x}"
            self.nodes[node_id] = node
            metrics = node.get("deviceMetrics", {})
            battery = f" battery {metrics['batteryLevel']}%" if "batteryLevel" in metrics else ""
            name = node.get("user", {}).get("longName", "?")
            print(f"node {self.name} {node_id}: {name}{battery}", flush=True)
        elif topic.startswith("meshtastic.receive/") and topic.endswith("/TEXT_MESSAGE_APP"):
            packet = envelope["packet"]
            print(f"text {self.name} {packet['fromId']}: {packet['decoded'].get('text', '')}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="tcp://127.0.0.1:7710")
    parser.add_argument("--commands", default="tcp://127.0.0.1:7711")
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: run forever)")
    parser.add_argument("--simulate-gap", type=int, default=0, metavar="N",
                        help="throw away every Nth event as if it had been missed, to show the repair")
    args = parser.parse_args()

    context = zmq.Context()
    broker = Broker(context, args.commands)
    sub = context.socket(zmq.SUB)
    sub.connect(args.events)
    sub.subscribe(b"")  # everything; `meshtastic.receive/roof` would narrow it to one slot's packets
    views = {}

    def resync(name, broker_id):
        views.setdefault(name, SlotView(name)).load(broker.call(cmd="snapshot", slot=name), broker_id)

    # Subscribe first, then snapshot: nothing published in between is lost, and events
    # already covered by the snapshot are recognised by their seq.
    broker_id = broker.call(cmd="ping")["broker"]
    for name in broker.call(cmd="status")["slots"]:
        resync(name, broker_id)

    received = 0
    while args.count == 0 or received < args.count:
        topic, envelope = sub.recv_multipart()[:2]
        topic, envelope = topic.decode(), json.loads(envelope)
        received += 1
        if args.simulate_gap and received % args.simulate_gap == 0:
            continue
        name = envelope["slot"]
        view = views.get(name)
        if view is None or envelope["broker"] != view.broker_id:
            if view is not None:
                print(f"broker restarted ({envelope['broker']}): snapshot {name} again", flush=True)
            resync(name, envelope["broker"])
            view = views[name]
        if envelope["seq"] <= view.seq:
            continue  # already in the snapshot or a replay
        if envelope["seq"] > view.seq + 1:
            missed = envelope["seq"] - view.seq - 1
            print(f"gap {name}: seq {envelope['seq']} after {view.seq}, replaying {missed}", flush=True)
            try:
                # A reply holds one page (up to 1,000 events); ask again until the gap is closed.
                while view.seq < envelope["seq"] - 1:
                    replayed = broker.call(cmd="replay", slot=name, sinceSeq=view.seq)
                    for event in replayed["events"]:
                        if view.seq < event["envelope"]["seq"] < envelope["seq"]:
                            view.apply(event["topic"], event["envelope"])
                    if replayed["complete"] or not replayed["events"]:
                        break
                if view.seq < envelope["seq"] - 1:
                    raise RuntimeError(f"replay ended at seq {view.seq}")
                print(f"repaired {name}: now at seq {view.seq}", flush=True)
            except RuntimeError as error:
                print(f"replay failed ({error}): snapshot {name} again", flush=True)
                resync(name, envelope["broker"])
                if envelope["seq"] <= view.seq:
                    continue
        view.apply(topic, envelope)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
