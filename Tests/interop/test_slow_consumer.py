"""A subscriber that stops reading: past its queue (`subscriberQueue`) only its own messages
are dropped; the other subscriber and the radio go on, and the stuck one repairs its `seq`
jump with `replay`."""
import json

import zmq

from conftest import collect, command, subscriber, wait_until


def seqs_of(frames_list):
    return [json.loads(frames[1])["seq"] for frames in frames_list]


def test_a_stuck_subscriber_loses_only_its_own_messages_and_replay_fills_its_gap(start_broker, context, tmp_path):
    config = tmp_path / "meshbus.yaml"
    config.write_text("subscriberQueue: 20\nslots:\n  - {name: sim, simulator: {nodes: 4, trafficPerMinute: 12000}}\n")
    # Over ipc:// the kernel buffers a few hundred events for a stuck reader; over loopback TCP
    # it would buffer megabytes before the broker's queue even starts to fill.
    events = f"ipc://{tmp_path}/events"
    endpoints = start_broker("--config", str(config), "--events", events)
    wait_until(lambda: command(context, endpoints["commands"], {"cmd": "status", "slot": "sim"})["result"]["slots"]["sim"]["ready"],
               what="slot sim ready")

    # The stuck one takes one message at a time into a 4 KiB socket buffer, then reads nothing.
    stuck = context.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.RCVTIMEO, 2000)
    stuck.connect(events)
    stuck.subscribe(b"")
    reader = subscriber(context, events, b"")
    # Both are surely subscribed once each has one event of the slot.
    first = collect(reader, lambda seen: any(e.get("slot") == "sim" for _, e, _ in seen))
    start = [e["seq"] for _, e, _ in first if e.get("slot") == "sim"][-1]
    wait_until(lambda: stuck.poll(0), what="the stuck subscriber's first event")

    # A send while one subscriber is stuck still goes all the way.
    reply = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "sim", "text": "still flowing", "wantAck": True})
    packet_id = reply["result"]["packetId"]
    seen = collect(reader, lambda seen: sum(1 for _, e, _ in seen if e.get("slot") == "sim") >= 3000
                   and any(t == "meshtastic.send.status/sim" and e["packetId"] == packet_id and e["status"] == "acked" for t, e, _ in seen),
                   timeout=60)
    read = [e["seq"] for _, e, _ in seen if e.get("slot") == "sim" and "seq" in e]
    assert read == list(range(start + 1, start + 1 + len(read))), "the reading subscriber missed nothing"

    stuck_frames = []
    while True:
        try:
            frames = stuck.recv_multipart()
        except zmq.Again:
            break
        stuck_frames.append(frames)
        if json.loads(frames[1]).get("seq", 0) >= read[-1]:
            break
    stuck_seqs = seqs_of(stuck_frames)
    jumps = [(a, b) for a, b in zip(stuck_seqs, stuck_seqs[1:]) if b != a + 1]
    assert jumps, f"the stuck subscriber got all {len(stuck_seqs)} events; nothing was dropped for it"
    assert len(stuck_seqs) < len(read)

    # Its repair: replay after the last seq before its first jump, up to where it resumed;
    # what replay gives is what the reading subscriber got.
    have, resumed = jumps[0]
    by_seq = {e["seq"]: (t, e) for t, e, _ in seen if e.get("slot") == "sim" and "seq" in e}
    repaired = []
    while have < resumed - 1:
        events = command(context, endpoints["commands"], {"cmd": "replay", "slot": "sim", "sinceSeq": have})["result"]["events"]
        assert events, f"replay after seq {have} returned nothing"
        repaired += [(event["topic"], event["envelope"]) for event in events]
        have = repaired[-1][1]["seq"]
    gap = [entry for entry in repaired if entry[1]["seq"] < resumed]
    assert [e["seq"] for _, e in gap] == list(range(jumps[0][0] + 1, resumed))
    compared = [entry for entry in gap if entry[1]["seq"] in by_seq]
    assert compared and compared == [by_seq[e["seq"]] for _, e in compared]

    stuck.close(linger=0)
    assert command(context, endpoints["commands"], {"cmd": "status", "slot": "sim"})["result"]["slots"]["sim"]["ready"]
