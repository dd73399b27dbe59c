"""Server-Sent Events at /events (design.md §8): the same envelopes as the PUB socket, a
cursor per stream that resumes through the replay ring with no gap and no repeat, a gap
event where the ring no longer reaches, and a reader that stops reading cut off while the
others (SSE and ZeroMQ) get every event."""
import http.client
import json
import socket
import time
import urllib.parse

from conftest import collect, command, control, subscriber


class EventStream:
    """A plain SSE reader over http.client: yields (event, id, data) per message."""

    def __init__(self, base, prefixes=(), last_event_id=None, query_id=False):
        url = urllib.parse.urlparse(base)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        query = urllib.parse.urlencode([("prefix", p) for p in prefixes] + ([("lastEventId", last_event_id)] if query_id else []))
        headers = {} if last_event_id is None or query_id else {"Last-Event-ID": last_event_id}
        self.connection.request("GET", "/events" + (f"?{query}" if query else ""), headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type").startswith("text/event-stream")

    def next(self):
        fields = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if fields:
                    return fields.get("event"), fields.get("id"), fields.get("data")
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value

    def take(self, count, what):
        got = []
        deadline = time.monotonic() + 30
        while len(got) < count:
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {len(got)}"
            message = self.next()
            assert message is not None, f"the stream ended while waiting for {what}"
            got.append(message)
        return got

    def close(self):
        self.connection.close()


def test_sse_events_are_the_pub_sockets_envelopes(start_broker, context):
    broker = start_broker(http=True)
    sub = subscriber(context, broker["events"], b"meshtastic.receive/sim")
    stream = EventStream(broker["http"], prefixes=["meshtastic.receive/sim"])
    sse = stream.take(5, "five packets over SSE")
    stream.close()
    wanted = {json.loads(data)["seq"]: (event, data) for event, _, data in sse}
    zmq_events = collect(sub, lambda events: {e[1]["seq"] for e in events} >= set(wanted))
    by_seq = {envelope["seq"]: (topic, frames[1]) for topic, envelope, frames in zmq_events}
    for seq, (event, data) in wanted.items():
        topic, envelope = by_seq[seq]
        assert event == topic, "the SSE event name is the full topic frame"
        assert data.encode() == envelope, "the same envelope, byte for byte"
    ids = [ident for _, ident, _ in sse]
    assert all(ident.startswith("sim:") for ident in ids)


def test_last_event_id_resumes_with_no_gap_and_no_repeat(start_broker):
    broker = start_broker(http=True)
    first = EventStream(broker["http"])
    seen = first.take(5, "five events")
    first.close()
    cursor = seen[-1][1]
    last_seq = int(cursor.split(":")[1])
    time.sleep(1)  # more events happen while no one listens (sim traffic, 4 a second)
    for query in (False, True):
        again = EventStream(broker["http"], last_event_id=cursor, query_id=query)
        resumed = again.take(8, "the events since the cursor")
        again.close()
        seqs = [json.loads(data)["seq"] for _, _, data in resumed if data and "seq" in json.loads(data)]
        assert seqs == list(range(last_seq + 1, last_seq + 1 + len(seqs))), f"contiguous from {last_seq + 1}: {seqs}"


def test_a_resume_older_than_the_ring_starts_with_a_gap(start_broker, context):
    broker = start_broker("--replay-capacity", "5", http=True)
    deadline = time.monotonic() + 20
    while command(context, broker["commands"], {"cmd": "status", "slot": "sim"})["result"]["slots"]["sim"]["lastSeq"] <= 6:
        assert time.monotonic() < deadline, "timed out waiting for the slot to publish more than the ring holds"
        time.sleep(0.1)
    stream = EventStream(broker["http"], last_event_id="sim:0")
    event, _, data = stream.take(1, "the gap event")[0]
    stream.close()
    assert event == "gap"
    assert json.loads(data) == {"slot": "sim", "afterSeq": 0, "reason": "gap_too_old"}


def test_a_cursor_from_an_earlier_run_gets_a_gap_then_every_live_event(start_broker, context):
    # An EventSource sends its last id again after the daemon restarted: that seq is the old
    # run's, beyond this broker's. It must not hide this run's events up to it.
    broker = start_broker(http=True)
    stream = EventStream(broker["http"], prefixes=["meshtastic.receive/sim"], last_event_id="sim:1000000")
    event, _, data = stream.take(1, "the gap event")[0]
    assert event == "gap"
    assert json.loads(data) == {"slot": "sim", "afterSeq": 1000000, "reason": "broker_restarted"}
    event, event_id, data = stream.take(1, "a live packet after the gap")[0]
    stream.close()
    assert event.startswith("meshtastic.receive/sim/") and json.loads(data)["seq"] < 1000000
    assert event_id == f"sim:{json.loads(data)['seq']}", "the cursor starts over for the slot"


def test_a_cursor_at_the_top_of_the_seq_range_is_an_earlier_run_not_a_crash(start_broker, context):
    # Any client can send any Last-Event-ID; 2**64 - 1 once made `seq + 1` overflow in the
    # replay ring and stopped the daemon.
    broker = start_broker(http=True)
    stream = EventStream(broker["http"], prefixes=["meshtastic.receive/sim"], last_event_id=f"sim:{2**64 - 1}")
    event, _, data = stream.take(1, "the gap event")[0]
    stream.close()
    assert event == "gap"
    assert json.loads(data) == {"slot": "sim", "afterSeq": 2**64 - 1, "reason": "broker_restarted"}
    assert command(context, broker["commands"], {"cmd": "ping"})["ok"], "the broker still answers"


def test_a_reader_that_stops_reading_is_cut_off_and_nobody_else_loses_anything(start_controlled_simulator, start_broker, context):
    simulator = start_controlled_simulator()
    broker = start_broker("--tcp", f"radio=127.0.0.1:{simulator['port']}", http=True)
    url = urllib.parse.urlparse(broker["http"])
    # A reader that asks for the stream and then reads nothing, with a small window.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((url.hostname, url.port))
    stalled.sendall(f"GET /events?prefix=meshtastic.receive/radio HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
    reader = EventStream(broker["http"], prefixes=["meshtastic.receive/radio"])
    sub = subscriber(context, broker["events"], b"meshtastic.receive/radio")
    time.sleep(0.5)  # the SUB joins a moment after it connects
    # More than the stalled socket's kernel buffers hold, so its stream falls behind.
    count = 20000
    assert control(context, simulator["control"], {"load": count, "rate": 1500})["ok"]
    received = reader.take(count, f"all {count} packets on the reading SSE stream")
    loads = [json.loads(data) for _, _, data in received]
    assert len({envelope["seq"] for envelope in loads}) == count
    zmq_events = collect(sub, lambda events: len(events) >= count, timeout=60)
    assert len(zmq_events) == count
    # The stalled reader was dropped: reading what the buffers held reaches the end of the
    # connection (a timeout here means it was never closed).
    stalled.settimeout(20)
    while stalled.recv(65536):
        pass
    stalled.close()
    reader.close()
    assert command(context, broker["commands"], {"cmd": "ping"})["ok"], "the daemon is unharmed"
