"""The real meshbus broker, driven by pyzmq clients."""
import base64
import json
import re
import time

import zmq
from meshtastic.protobuf import mesh_pb2

from conftest import free_port, requester, subscriber

ENVELOPE_KEYS = {"schema", "broker", "slot", "topic", "seq", "time"}


def receive_until(sub, predicate, timeout=20.0):
    """Receives events until predicate(topic, envelope, frames) is true; returns that event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = sub.recv_multipart()
        topic = frames[0].decode()
        envelope = json.loads(frames[1])
        if predicate(topic, envelope, frames):
            return topic, envelope, frames
    raise AssertionError("no matching event in time")


def test_subscriber_sees_established_then_receive_events_with_every_envelope_field(start_broker, start_simulator, context):
    # The slot's radio (a separate `meshbus sim` process) is not there yet: the link retries.
    # Once this subscriber demonstrably receives, the radio appears, so the established event
    # cannot have happened before the subscription.
    port = free_port()
    endpoints = start_broker("--tcp", f"radio=127.0.0.1:{port}")
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    receive_until(sub, lambda t, e, f: t == "meshtastic.connection.state/radio")
    start_simulator(port)
    _, established, _ = receive_until(sub, lambda t, e, f: t == "meshtastic.connection.established/radio")
    assert established["attempt"] >= 2 and established["nodeCount"] == 6
    assert established["firmware"].endswith(".sim") and established["myNodeNum"] > 0
    topic, envelope, frames = receive_until(sub, lambda t, e, f: t.startswith("meshtastic.receive/radio/") and not e["backlog"])
    assert ENVELOPE_KEYS <= envelope.keys()
    assert envelope["schema"] == 1
    assert envelope["broker"] == established["broker"] and re.fullmatch(r"[0-9a-f]{16}", envelope["broker"])
    assert envelope["slot"] == "radio" and envelope["topic"] == "meshtastic.receive"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["time"])
    assert envelope["seq"] > established["seq"]
    packet = envelope["packet"]
    assert topic == f"meshtastic.receive/radio/{packet['decoded']['portnum']}"
    assert packet["fromId"] == "!%08x" % packet["from"]
    assert packet["toId"] == "^all"
    # Frame 3 is the raw MeshPacket and says the same as the JSON.
    raw = mesh_pb2.MeshPacket()
    raw.ParseFromString(frames[2])
    assert raw.id == packet["id"]
    assert base64.b64decode(packet["decoded"]["payload"]) == raw.decoded.payload
    # Every event of the slot takes the next seq: nothing skipped, nothing repeated.
    _, following, _ = receive_until(sub, lambda t, e, f: True)
    assert following["seq"] == envelope["seq"] + 1
    sub.close()


def test_send_text_replies_ok_then_sent_event_carries_the_packet_id(broker, context):
    sub = subscriber(context, broker["events"], b"meshtastic.sent/sim")
    time.sleep(0.2)  # let the SUB connect before the event it waits for is published
    req = requester(context, broker["commands"])
    req.send_json({"id": "a1", "cmd": "sendText", "slot": "sim", "text": "hello mesh", "wantAck": True})
    reply = req.recv_json()
    assert reply["id"] == "a1" and reply["ok"] is True
    packet_id = reply["result"]["packetId"]
    assert reply["result"]["status"] == "queued" and 0 < packet_id < 2**32
    _, envelope, frames = receive_until(sub, lambda t, e, f: e["packet"]["id"] == packet_id)
    assert envelope["requestId"] == "a1"
    assert envelope["packet"]["decoded"]["text"] == "hello mesh"
    assert envelope["packet"]["wantAck"] is True
    raw = mesh_pb2.MeshPacket()
    raw.ParseFromString(frames[2])
    assert raw.id == packet_id
    sub.close()
    req.close()


def test_ack_from_the_radio_arrives_as_routing_packet_for_the_sent_id(broker, context):
    sub = subscriber(context, broker["events"], b"meshtastic.receive/sim/ROUTING_APP")
    time.sleep(0.2)
    req = requester(context, broker["commands"])
    req.send_json({"cmd": "sendText", "slot": "sim", "text": "ack me", "wantAck": True})
    packet_id = req.recv_json()["result"]["packetId"]
    _, envelope, _ = receive_until(sub, lambda t, e, f: e["packet"]["decoded"].get("requestId") == packet_id)
    assert envelope["packet"]["decoded"]["routing"]["errorReason"] == "NONE"
    req.close()
    sub.close()


def test_garbage_gets_bad_request_and_the_next_client_is_served(broker, context):
    bad = requester(context, broker["commands"])
    bad.send(b"\x00\xff not json")
    reply = bad.recv_json()
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    good = requester(context, broker["commands"])
    good.send_json({"id": 5, "cmd": "ping"})
    pong = good.recv_json()
    assert pong["ok"] is True and pong["id"] == 5
    assert re.fullmatch(r"[0-9a-f]{16}", pong["result"]["broker"])
    bad.close()
    good.close()


def test_each_refusal_has_its_code_and_names_the_field_or_slot(broker, context):
    req = requester(context, broker["commands"])
    cases = [
        ({"cmd": "sendText", "slot": "rof", "text": "x"}, "unknown_slot", "rof"),
        ({"cmd": "fly"}, "unknown_command", "fly"),
        ({"cmd": "sendText", "slot": "sim"}, "bad_request", "text"),
        ({"cmd": "sendText", "slot": "sim", "text": "é" * 117}, "text_too_long", "234"),
        ({"cmd": "sendText", "slot": "sim", "text": "x", "channel": "0"}, "bad_request", "channel"),
    ]
    for request, code, named in cases:
        req.send_json(request)
        reply = req.recv_json()
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        assert named in reply["error"]["message"], reply
    req.close()


def test_dealer_client_gets_its_reply_without_a_delimiter(broker, context):
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVTIMEO, 10000)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(broker["commands"])
    dealer.send(json.dumps({"id": "d", "cmd": "status"}).encode())
    reply = json.loads(dealer.recv())
    assert reply["ok"] is True and reply["result"]["slots"]["sim"]["transport"] == "simulator"
    dealer.close()
