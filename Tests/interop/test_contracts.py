"""design.md §3–4 through real ZeroMQ clients: gap-free consumption (snapshot, replay),
the send lifecycle, duplicates, slot isolation, and bad input that never hurts anyone."""
import base64
import json
import time

import zmq

from conftest import collect, command, control, free_port, requester, subscriber


def topic_is(prefix):
    return lambda events: events[-1][0].startswith(prefix)


def statuses(events, packet_id):
    return [e["status"] for t, e, _ in events if t.startswith("meshtastic.send.status/") and e["packetId"] == packet_id]


def live_subscriber(ctx, endpoint, prefix=b"meshtastic."):
    """A subscriber that has demonstrably received (so nothing published from now on is missed)."""
    sub = subscriber(ctx, endpoint, prefix)
    collect(sub, lambda ev: True)
    return sub


def wait_ready(sub):
    collect(sub, topic_is("meshtastic.connection.established/"))


def radio_behind_subscriber(start_broker, start_controlled_simulator, context, *extra):
    """A broker with one TCP slot 'radio' whose simulator appears only once the subscriber
    demonstrably listens; returns (endpoints, simulator, subscriber)."""
    port = free_port()
    endpoints = start_broker("--tcp", f"radio=127.0.0.1:{port}", *extra)
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    collect(sub, topic_is("meshtastic.connection.state/radio"))
    sim = start_controlled_simulator(port=port)
    wait_ready(sub)
    return endpoints, sim, sub


# MARK: Gap-free consumption


def test_subscribe_then_snapshot_then_apply_has_no_gap(broker, context):
    sub = subscriber(context, broker["events"], b"meshtastic.")
    # The subscription is live and the slot is past its handshake.
    collect(sub, lambda ev: ev[-1][0].startswith("meshtastic.receive/") and not ev[-1][1]["backlog"])
    snapshot = command(context, broker["commands"], {"cmd": "snapshot", "slot": "sim"})["result"]
    assert {"seq", "state", "myInfo", "metadata", "nodes", "channels", "config", "moduleConfig"} <= snapshot.keys()
    assert snapshot["myInfo"]["myNodeNum"] > 0 and len(snapshot["channels"]) == 8 and "lora" in snapshot["config"]
    nodes = dict(snapshot["nodes"])
    assert len(nodes) == 7 and all(key.startswith("!") for key in nodes)
    # Let the mesh talk, then ask for the node DB again: snapshot + the events between the two
    # seqs must give exactly that DB, and those events must follow the snapshot without a hole.
    received = collect(sub, lambda ev: sum(1 for _, e, _ in ev if e["seq"] > snapshot["seq"] and e["topic"] == "meshtastic.node.updated") >= 3)
    current = command(context, broker["commands"], {"cmd": "nodes", "slot": "sim"})["result"]
    if received[-1][1]["seq"] < current["seq"]:
        received += collect(sub, lambda ev: ev[-1][1]["seq"] >= current["seq"])
    later = [e for _, e, _ in received if snapshot["seq"] < e["seq"] <= current["seq"]]
    assert [e["seq"] for e in later] == list(range(snapshot["seq"] + 1, current["seq"] + 1))
    for envelope in later:
        if envelope["topic"] == "meshtastic.node.updated":
            nodes["!%08x" % envelope["node"]["num"]] = envelope["node"]
    assert current["nodes"] == nodes


def test_reconnecting_consumer_recovers_missed_events_with_replay(broker, context):
    watcher = subscriber(context, broker["events"], b"meshtastic.")
    consumer = subscriber(context, broker["events"], b"meshtastic.")
    seen = collect(consumer, lambda ev: len(ev) >= 3)
    last_seq = seen[-1][1]["seq"]
    consumer.close()
    # While the consumer is away the slot goes on publishing.
    missed = collect(watcher, lambda ev: ev[-1][1]["seq"] >= last_seq + 15)
    reply = command(context, broker["commands"], {"cmd": "replay", "slot": "sim", "sinceSeq": last_seq})
    assert reply["ok"], reply
    replayed = reply["result"]["events"]
    seqs = [event["envelope"]["seq"] for event in replayed]
    assert seqs == list(range(last_seq + 1, last_seq + 1 + len(seqs))) and len(seqs) >= 15
    by_seq = {e["seq"]: (t, e, f) for t, e, f in missed}
    for event in replayed:
        if event["envelope"]["seq"] in by_seq:
            topic, envelope, frames = by_seq[event["envelope"]["seq"]]
            assert event["topic"] == topic and event["envelope"] == envelope
            if len(frames) == 3:
                assert base64.b64decode(event["raw"]) == frames[2]
    limited = command(context, broker["commands"], {"cmd": "replay", "slot": "sim", "sinceSeq": last_seq, "limit": 2})["result"]
    assert len(limited["events"]) == 2 and limited["complete"] is False


def test_replay_beyond_the_ring_is_gap_too_old(start_broker, context):
    endpoints = start_broker("--replay-capacity", "5")
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    collect(sub, lambda ev: ev[-1][1]["seq"] >= 12)
    reply = command(context, endpoints["commands"], {"id": "g", "cmd": "replay", "slot": "sim", "sinceSeq": 1})
    assert reply["id"] == "g" and reply["error"]["code"] == "gap_too_old", reply
    assert "snapshot" in reply["error"]["message"]


# MARK: The send lifecycle


def test_send_with_ack_goes_queued_sent_acked(broker, context):
    sub = live_subscriber(context, broker["events"])
    reply = command(context, broker["commands"], {"id": "s1", "cmd": "sendText", "slot": "sim", "text": "lifecycle", "wantAck": True})
    assert reply["ok"] and reply["result"]["status"] == "queued", reply
    packet_id = reply["result"]["packetId"]
    events = collect(sub, lambda ev: "acked" in statuses(ev, packet_id))
    assert statuses(events, packet_id) == ["queued", "sent", "acked"]
    assert all(e["requestId"] == "s1" for t, e, _ in events if t.startswith("meshtastic.send.status/"))
    sent = [e for t, e, _ in events if t == "meshtastic.sent/sim"]
    assert [e["packet"]["id"] for e in sent] == [packet_id]


def test_texts_sent_back_to_back_are_paced_under_the_firmware_rate_limit(broker, context):
    # The simulator, like firmware 2.7, NAKs a text within 2 s of the previous one with
    # RATE_LIMIT_EXCEEDED; the broker spaces texts 2.5 s apart, so all three are ACKed.
    sub = live_subscriber(context, broker["events"])
    ids = []
    for n in range(3):
        reply = command(context, broker["commands"], {"cmd": "sendText", "slot": "sim", "text": f"burst {n}", "wantAck": True})
        ids.append(reply["result"]["packetId"])
    events = collect(sub, lambda ev: all(statuses(ev, i)[-1:] in (["acked"], ["nak"]) for i in ids), timeout=20)
    assert [statuses(events, i)[-1] for i in ids] == ["acked"] * 3


def test_send_to_a_node_that_never_answers_ends_nak_with_the_error_name(broker, context):
    sub = live_subscriber(context, broker["events"])
    reply = command(context, broker["commands"], {"cmd": "sendText", "slot": "sim", "text": "anyone?", "to": "!00000001", "wantAck": True})
    packet_id = reply["result"]["packetId"]
    events = collect(sub, lambda ev: "nak" in statuses(ev, packet_id))
    nak = next(e for t, e, _ in events if t.startswith("meshtastic.send.status/") and e["status"] == "nak")
    assert nak["error"] == "MAX_RETRANSMIT" and statuses(events, packet_id) == ["queued", "sent", "nak"]


def test_send_while_the_radio_is_down_waits_and_goes_out_after_reconnect(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub = radio_behind_subscriber(start_broker, start_controlled_simulator, context)
    control(context, sim["control"], {"fault": "offline", "seconds": 2})
    collect(sub, topic_is("meshtastic.connection.lost/radio"))
    reply = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "radio", "text": "later", "wantAck": True})
    assert reply["ok"] and reply["result"]["status"] == "queued"
    packet_id = reply["result"]["packetId"]
    refused = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "radio", "text": "now", "requireReady": True})
    assert refused["error"]["code"] == "not_ready", refused
    events = collect(sub, lambda ev: "acked" in statuses(ev, packet_id), timeout=40)
    established_at = next(i for i, (t, _, _) in enumerate(events) if t == "meshtastic.connection.established/radio")
    sent_at = next(i for i, (t, e, _) in enumerate(events) if t.startswith("meshtastic.send.status/") and e["status"] == "sent")
    assert sent_at > established_at, "written only once the link was back"
    assert statuses(events, packet_id) == ["queued", "sent", "acked"]


def test_send_with_a_short_ttl_while_the_radio_stays_down_expires(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub = radio_behind_subscriber(start_broker, start_controlled_simulator, context)
    control(context, sim["control"], {"fault": "offline", "seconds": 30})
    collect(sub, topic_is("meshtastic.connection.lost/radio"))
    reply = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "radio", "text": "too late", "ttlSeconds": 0.5})
    packet_id = reply["result"]["packetId"]
    events = collect(sub, lambda ev: "expired" in statuses(ev, packet_id), timeout=10)
    assert statuses(events, packet_id) == ["queued", "expired"]
    status = command(context, endpoints["commands"], {"cmd": "status", "slot": "radio"})["result"]["slots"]["radio"]
    assert status["queueDepth"] == 0 and status["pendingSends"] == 0 and status["sends"]["expired"] == 1


def test_full_outbox_is_queue_full(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub = radio_behind_subscriber(start_broker, start_controlled_simulator, context, "--outbox-capacity", "3")
    control(context, sim["control"], {"fault": "offline", "seconds": 30})
    collect(sub, topic_is("meshtastic.connection.lost/radio"))
    replies = [command(context, endpoints["commands"], {"cmd": "sendText", "slot": "radio", "text": str(n)}) for n in range(4)]
    assert [r["ok"] for r in replies] == [True, True, True, False]
    assert replies[3]["error"]["code"] == "queue_full" and "3 packets" in replies[3]["error"]["message"]


def test_send_data_carries_the_port_and_payload(broker, context):
    from meshtastic.protobuf import mesh_pb2, portnums_pb2

    sub = live_subscriber(context, broker["events"])
    payload = bytes(range(16))
    reply = command(context, broker["commands"], {
        "cmd": "sendData", "slot": "sim", "portnum": "PRIVATE_APP", "payload": base64.b64encode(payload).decode(),
    })
    packet_id = reply["result"]["packetId"]
    events = collect(sub, lambda ev: "sent" in statuses(ev, packet_id))
    frames = next(f for t, e, f in events if t == "meshtastic.sent/sim" and e["packet"]["id"] == packet_id)
    packet = mesh_pb2.MeshPacket()
    packet.ParseFromString(frames[2])
    assert packet.decoded.portnum == portnums_pb2.PRIVATE_APP and packet.decoded.payload == payload


# MARK: Duplicates and slot isolation


def test_two_slots_with_identical_meshes_never_see_each_others_packets(start_broker, start_controlled_simulator, context):
    # Both simulators have the same seed: the same node numbers and the same packet ids.
    port_a, port_b = free_port(), free_port()
    endpoints = start_broker("--tcp", f"a=127.0.0.1:{port_a}", "--tcp", f"b=127.0.0.1:{port_b}")
    sub_a = subscriber(context, endpoints["events"], b"meshtastic.receive/a/")
    sub_b = subscriber(context, endpoints["events"], b"meshtastic.receive/b/")
    watch = subscriber(context, endpoints["events"], b"meshtastic.connection")
    collect(watch, lambda ev: True)
    sim_a = start_controlled_simulator(port=port_a)
    sim_b = start_controlled_simulator(port=port_b)
    wanted = {"meshtastic.connection.established/a", "meshtastic.connection.established/b"}
    collect(watch, lambda ev: {t for t, _, _ in ev} >= wanted)
    control(context, sim_a["control"], {"emit": "text"})
    control(context, sim_b["control"], {"emit": "text"})
    control(context, sim_a["control"], {"emit": "repeat"})  # heard again on a: a duplicate there
    control(context, sim_a["control"], {"emit": "position"})
    got_a = collect(sub_a, lambda ev: any(t.endswith("/POSITION_APP") for t, _, _ in ev))
    got_b = collect(sub_b, lambda ev: True)
    texts_a = [e["packet"] for t, e, _ in got_a if t.endswith("/TEXT_MESSAGE_APP")]
    text_b = got_b[0][1]["packet"]
    assert len(texts_a) == 1, "the repeat on slot a is a duplicate"
    assert texts_a[0]["id"] == text_b["id"] and texts_a[0]["from"] == text_b["from"], "same packet, both slots publish it"
    assert all(e["slot"] == "a" for _, e, _ in got_a) and all(e["slot"] == "b" for _, e, _ in got_b)
    slots = command(context, endpoints["commands"], {"cmd": "status"})["result"]["slots"]
    assert slots["a"]["duplicates"] == 1 and slots["b"]["duplicates"] == 0


# MARK: Bad input


def raw_request(ctx, endpoint, frames):
    """Sends frames as they are from a DEALER (no REQ envelope rules); returns the reply."""
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVTIMEO, 10000)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    try:
        dealer.send_multipart(frames)
        return json.loads(dealer.recv_multipart()[-1])
    finally:
        dealer.close()


BAD_REQUESTS = [
    ([b"not json"], "request is not JSON"),
    ([b"[1, 2]"], "must be a JSON object"),
    ([b'{"cmd": 5}'], "field 'cmd' must be a string"),
    ([b'{"cmd": "sendText", "slot": "sim", "text": "x", "chanel": 1}'], "unknown field 'chanel'"),
    ([b""], "empty request"),
    ([b'{"cmd": "ping"}', b'{"cmd": "ping"}'], "a request is one frame; got 2"),
    ([b'{"cmd": "ping", "id": "' + b"x" * (1 << 20) + b'"}'], "the limit is 65536"),
    ([b'{"cmd": "ping", "id": "\xc3\x28"}'], "request is not JSON"),
    ([b'{"cmd": "sendText", "slot": "sim", "text": "x", "to": "bob"}'], "field 'to'"),
]


def test_every_kind_of_bad_request_gets_a_specific_reply(broker, context):
    for frames, message in BAD_REQUESTS:
        reply = raw_request(context, broker["commands"], frames)
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request", (frames[0][:40], reply)
        assert message in reply["error"]["message"], (message, reply)
    assert command(context, broker["commands"], {"cmd": "ping"})["ok"], "the broker is fine afterwards"


def test_every_other_error_code_is_reachable(broker, context):
    def code(request):
        return command(context, broker["commands"], request)["error"]["code"]

    assert code({"cmd": "launch"}) == "unknown_command"
    assert code({"cmd": "nodes", "slot": "rof"}) == "unknown_slot"
    assert code({"cmd": "sendText", "slot": "sim", "text": "é" * 117}) == "text_too_long"
    # not_ready, queue_full and gap_too_old need a radio that is down or a small ring: see the tests above.


def test_a_flood_of_malformed_requests_does_not_starve_a_well_behaved_client(broker, context):
    flooder = context.socket(zmq.DEALER)
    flooder.setsockopt(zmq.LINGER, 0)
    flooder.setsockopt(zmq.SNDHWM, 0)
    flooder.connect(broker["commands"])
    for n in range(5000):
        flooder.send(b"{garbage %d" % n)
    polite = requester(context, broker["commands"])
    started = time.monotonic()
    for n in range(5):
        polite.send_json({"id": n, "cmd": "ping"})
        assert polite.recv_json()["ok"]
    assert time.monotonic() - started < 10
    answered = 0
    flooder.setsockopt(zmq.RCVTIMEO, 5000)
    try:
        while answered < 5000:
            flooder.recv()
            answered += 1
    except zmq.Again:
        pass
    assert answered > 0, "the flooder itself gets bad_request replies (or counted drops once its queue is full)"
    flooder.close()


def test_sends_still_waiting_at_shutdown_end_failed(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub = radio_behind_subscriber(start_broker, start_controlled_simulator, context)
    control(context, sim["control"], {"fault": "offline", "seconds": 30})
    collect(sub, topic_is("meshtastic.connection.lost/radio"))
    packet_id = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "radio", "text": "never"})["result"]["packetId"]
    endpoints["process"].terminate()
    events = collect(sub, lambda ev: "failed" in statuses(ev, packet_id))
    failed = next(e for t, e, _ in events if t.startswith("meshtastic.send.status/") and e["status"] == "failed")
    assert failed["error"] == "shutdown" and statuses(events, packet_id) == ["queued", "failed"]
    assert endpoints["process"].wait(timeout=15) == 0
