"""The events over a WebSocket at /ws (design.md §8): subscribe and unsubscribe by prefix,
resume after a cursor with no repeat, clear errors for bad messages, and no upgrade for a
page of another origin. The client is the `websockets` package from PyPI."""
import asyncio
import json
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


def ws_url(broker):
    return broker["http"].replace("http://", "ws://") + "/ws"


async def receive_until(ws, predicate, what, timeout=20):
    """Messages until `predicate(message)` holds; returns them all."""
    got = []
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            got.append(message)
            if predicate(message):
                return got


@pytest.fixture
def http_broker(start_broker):
    return start_broker(http=True)


def test_subscribe_and_unsubscribe_by_prefix(http_broker):
    async def run():
        async with connect(ws_url(http_broker)) as ws:
            await ws.send(json.dumps({"subscribe": ["meshtastic.receive/sim"]}))
            first = await receive_until(ws, lambda m: "subscribed" in m, "the subscribe answer")
            assert first[-1] == {"subscribed": ["meshtastic.receive/sim"]}
            events = await receive_until(ws, lambda m: "topic" in m, "a packet")
            packet = events[-1]
            assert packet["topic"].startswith("meshtastic.receive/sim/")
            assert packet["envelope"]["topic"] == "meshtastic.receive" and "raw" in packet
            await ws.send(json.dumps({"unsubscribe": ["meshtastic.receive/sim"]}))
            answer = await receive_until(ws, lambda m: "subscribed" in m, "the unsubscribe answer")
            assert answer[-1] == {"subscribed": []}
    asyncio.run(run())


def test_a_resume_after_a_cursor_repeats_nothing_and_skips_nothing(http_broker):
    async def run():
        async with connect(ws_url(http_broker)) as ws:
            await ws.send(json.dumps({"subscribe": [""]}))
            got = await receive_until(ws, lambda m: "envelope" in m and m["envelope"]["seq"] >= 5, "five events")
            cursor_seq = [m for m in got if "envelope" in m][-1]["envelope"]["seq"]
        await asyncio.sleep(1)
        async with connect(ws_url(http_broker)) as ws:
            await ws.send(json.dumps({"subscribe": [""], "after": f"sim:{cursor_seq}"}))
            resumed = await receive_until(ws, lambda m: "envelope" in m and m["envelope"]["seq"] >= cursor_seq + 8, "eight more events")
            seqs = [m["envelope"]["seq"] for m in resumed if "envelope" in m]
            assert seqs == list(range(cursor_seq + 1, cursor_seq + 1 + len(seqs))), seqs
    asyncio.run(run())


def test_bad_messages_get_an_error_and_the_socket_stays(http_broker):
    async def run():
        async with connect(ws_url(http_broker)) as ws:
            for bad in ["not json", json.dumps([1]), json.dumps({"subscribe": "x"}), json.dumps({"subscribe": [1]})]:
                await ws.send(bad)
                answer = await receive_until(ws, lambda m: "error" in m, f"an error for {bad!r}")
                assert answer[-1]["error"]["code"] == "bad_request"
            too_many = [f"meshtastic.receive/slot{i}" for i in range(65)]
            await ws.send(json.dumps({"subscribe": too_many}))
            answer = await receive_until(ws, lambda m: "error" in m, "an error for 65 prefixes")
            assert answer[-1]["error"]["message"] == "at most 64 prefixes per socket"
            await ws.send(json.dumps({"subscribe": ["meshtastic.connection"]}))
            answer = await receive_until(ws, lambda m: "subscribed" in m, "the subscribe answer")
            assert answer[-1] == {"subscribed": ["meshtastic.connection"]}
            await ws.send(json.dumps({"subscribe": ["meshtastic.log"], "after": "sim:1"}))
            answer = await receive_until(ws, lambda m: "error" in m, "an error for after on a subscribed socket")
            assert answer[-1]["error"]["message"] == "after only with a socket's first subscribe"
    asyncio.run(run())


def test_after_seq_zero_replays_the_slot_from_its_first_event(http_broker):
    async def run():
        async with connect(ws_url(http_broker)) as ws:
            await ws.send(json.dumps({"subscribe": ["meshtastic.connection.state/sim"], "after": "sim:0"}))
            got = await receive_until(ws, lambda m: "subscribed" in m, "the subscribe answer after the replay")
            states = [m["envelope"] for m in got if "envelope" in m]
            assert states and states[0]["seq"] == 1 and states[0]["state"] == "connecting", states[:1]
            assert [e["seq"] for e in states] == sorted({e["seq"] for e in states}), "in order, none twice"
    asyncio.run(run())


def test_a_page_of_another_origin_gets_no_upgrade(http_broker):
    async def run():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(http_broker), origin="http://evil.example"):
                pass
        assert refused.value.response.status_code in (400, 403)
        async with connect(ws_url(http_broker), origin=http_broker["http"]) as ws:
            await ws.send(json.dumps({"subscribe": []}))
            assert (await receive_until(ws, lambda m: "subscribed" in m, "the answer"))[-1] == {"subscribed": []}
    asyncio.run(run())
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(http_broker["http"] + "/ws", timeout=10)
    assert plain.value.code == 403
