"""WebSerial slots (design.md §9) with a scripted page: a `websockets` client relays raw bytes
between /webserial/<slot>/relay and the project's simulator over TCP, as the page relays them
to a serial port. MeshBus runs its own handshake, probes and outbox through it."""
import asyncio
import json
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import collect, command, slot_status, subscriber, wait_until


class Relay:
    """A stand-in for the page: relays bytes both ways until stopped or closed by MeshBus."""

    def __init__(self, url, sim_port):
        self.url, self.sim_port = url, sim_port
        self.closed = None  # (code, reason) once MeshBus closed it
        self.to_radio = bytearray()  # every byte MeshBus sent to the "port"

    async def __aenter__(self):
        self.socket = await connect(self.url, max_size=None)
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.sim_port)
        self.tasks = [asyncio.create_task(self._to_radio()), asyncio.create_task(self._to_meshbus())]
        return self

    async def _to_radio(self):
        try:
            async for message in self.socket:
                self.to_radio += message
                self.writer.write(message)
                await self.writer.drain()
        except ConnectionClosed:
            pass
        if self.socket.close_code is not None:
            self.closed = (self.socket.close_code, self.socket.close_reason)
        self.writer.close()

    async def _to_meshbus(self):
        while data := await self.reader.read(4096):
            await self.socket.send(data)

    async def send_text(self, text):
        await self.socket.send(text)

    async def __aexit__(self, *exc):
        await self.socket.close()
        for task in self.tasks:
            task.cancel()
        self.writer.close()


def config(tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text("slots:\n  - {name: laptop, webserial: {}}\n")
    return str(path)


def link(context, endpoints):
    return slot_status(context, endpoints["commands"], "laptop")


async def events_until(sub, predicate, what, timeout=30):
    """(topic, envelope) pairs from a pyzmq SUB until predicate holds, without blocking the loop."""
    try:
        return await asyncio.to_thread(lambda: [(t, e) for t, e, _ in collect(sub, predicate, timeout)])
    except AssertionError as error:
        raise AssertionError(f"waited {timeout} s for {what}: {error}") from None


async def until(check, what, timeout=10):
    """Polls `check` every 50 ms until it is truthy; fails naming `what` it waited for."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}")


# ToRadio{disconnect: true} in its serial frame: the goodbye MeshBus writes before it closes.
GOODBYE = bytes.fromhex("94c300022001")


def of(events, prefix):
    return [e for t, e in events if t.startswith(prefix)]


def test_a_relayed_radio_handshakes_sends_queued_texts_and_is_lost_when_the_browser_leaves(
        start_broker, start_controlled_simulator, context, tmp_path):
    sim = start_controlled_simulator()
    endpoints = start_broker("--config", config(tmp_path), http=True)
    url = endpoints["http"].replace("http://", "ws://") + "/webserial/laptop/relay"
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    # The slot starts `connecting`; with no browser, its first attempt ends in `idle` at once.
    before = wait_until(lambda: (status := link(context, endpoints))["state"] == "idle" and status, "the slot idle without a browser")
    assert before["transport"] == "webserial"
    assert before["lastError"] == "webserial://laptop: no browser holds the radio"
    queued = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "laptop", "text": "waited for a browser", "wantAck": True})
    assert queued["ok"] and queued["result"]["status"] == "queued"
    packet_id = queued["result"]["packetId"]

    async def run():
        async with Relay(url, sim["port"]):
            events = await events_until(sub, lambda ev: any(
                t.startswith("meshtastic.send.status/laptop") and e["packetId"] == packet_id and e["status"] == "acked" for t, e, _ in ev),
                "the queued send acked through the relay")
            assert of(events, "meshtastic.connection.established/laptop"), "ready only after the handshake"
            assert any(e["packet"]["decoded"].get("text") == "waited for a browser" for e in of(events, "meshtastic.sent/laptop"))
            assert link(context, endpoints)["ready"] and link(context, endpoints)["lastError"] is None
        events = await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.lost/laptop") for t, _, _ in ev), "the loss")
        assert [e["reason"] for e in of(events, "meshtastic.connection.lost/laptop")] == ["browser_closed"]
        # A new page: ready again at once, no backoff to wait out.
        async with Relay(url, sim["port"]):
            await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.established/laptop") for t, _, _ in ev), "ready again")
    asyncio.run(run())
    assert "waited for a browser" in command(context, sim["control"], {"fault": "clear"})["texts"]


def test_a_second_browser_takes_over_and_a_lost_port_is_reported(start_broker, start_controlled_simulator, context, tmp_path):
    sim = start_controlled_simulator()
    endpoints = start_broker("--config", config(tmp_path), http=True)
    url = endpoints["http"].replace("http://", "ws://") + "/webserial/laptop/relay"
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")

    async def run():
        async with Relay(url, sim["port"]) as first:
            await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.established/") for t, _, _ in ev), "ready through the first")
            async with Relay(url, sim["port"]) as second:
                events = await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.established/") for t, _, _ in ev), "ready through the second")
                assert [e["reason"] for e in of(events, "meshtastic.connection.lost/")] == ["taken_over"]
                await until(lambda: first.closed, "the first page closed")
                assert first.closed == (4001, "taken_over"), "the first page is told it was taken over"
                await second.send_text(json.dumps({"portLost": True}))
                events = await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.lost/") for t, _, _ in ev), "the lost port")
                assert [e["reason"] for e in of(events, "meshtastic.connection.lost/")] == ["port_lost"]
        # The cooldown after the loss, then the idle wait for a browser.
        await until(lambda: link(context, endpoints)["state"] == "idle", "the slot idle without a browser")
        assert link(context, endpoints)["lastError"] == "webserial://laptop: no browser holds the radio"
    asyncio.run(run())


def test_disconnect_for_restart_lets_go_of_the_page_until_reconnect(
        start_broker, start_controlled_simulator, context, tmp_path):
    sim = start_controlled_simulator()
    endpoints = start_broker("--config", config(tmp_path), http=True)
    url = endpoints["http"].replace("http://", "ws://") + "/webserial/laptop/relay"
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")

    async def run():
        async with Relay(url, sim["port"]) as lent:
            await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.established/") for t, _, _ in ev), "ready")
            reply = command(context, endpoints["commands"], {"cmd": "disconnectForRestart", "slot": "laptop", "settleSeconds": 0.2})
            assert reply["ok"], reply
            await until(lambda: lent.closed, "the page told to let go of its port")
            assert lent.closed == (4002, "disconnected_for_restart")
            assert lent.to_radio.endswith(GOODBYE), "the radio heard the goodbye before the page let go"
        async with Relay(url, sim["port"]) as early:
            await until(lambda: early.closed, "a page refused while the slot is held")
            assert early.closed == (4002, "disconnected_for_restart") and not early.to_radio
        assert link(context, endpoints)["state"] == "disconnectedForRestart"
        assert command(context, endpoints["commands"], {"cmd": "reconnect", "slot": "laptop"})["ok"]
        await until(lambda: link(context, endpoints)["state"] != "disconnectedForRestart", "the hold released")
        async with Relay(url, sim["port"]) as back:
            events = await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.established/") for t, _, _ in ev), "ready after reconnect")
            assert not back.closed
        assert [e["reason"] for e in of(events, "meshtastic.connection.lost/")] == ["manual"]
    asyncio.run(run())


def test_only_webserial_slots_take_a_relay(start_broker, context):
    endpoints = start_broker(http=True)
    url = endpoints["http"].replace("http://", "ws://") + "/webserial/sim/relay"

    async def run():
        async with connect(url) as socket:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "unknown_slot: no webserial slot named 'sim'"
    asyncio.run(run())


def test_the_lending_page_is_served_for_webserial_slots_only(start_broker, tmp_path):
    endpoints = start_broker("--config", config(tmp_path), http=True)
    with urllib.request.urlopen(endpoints["http"] + "/webserial/laptop", timeout=10) as response:
        page = response.read().decode()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
    assert "/webserial.js" in page
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(endpoints["http"] + "/webserial/roof", timeout=10)
    assert missing.value.code == 404 and json.loads(missing.value.read())["error"]["code"] == "unknown_slot"


# A fake Web Serial API, injected before the page loads: the chosen "port" is a WebSocket to
# the test's bridge, which pipes it to the simulator over TCP, as a USB cable would.
FAKE_SERIAL = """
(() => {
  const bridge = 'BRIDGE';
  class FakePort extends EventTarget {
    constructor() { super(); this.readable = null; this.writable = null; }
    async open(options) {
      window.portOpens = (window.portOpens || 0) + 1;
      if (options.baudRate !== 115200) throw new Error('unexpected baud rate ' + options.baudRate);
      const socket = new WebSocket(bridge);
      socket.binaryType = 'arraybuffer';
      await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
      this.socket = socket;
      this.readable = new ReadableStream({ start: (controller) => {
        socket.onmessage = (m) => controller.enqueue(new Uint8Array(m.data));
        socket.onclose = () => { this.readable = null; try { controller.error(new Error('device lost')); } catch (e) {} };
      } });
      this.writable = new WritableStream({ write: (chunk) => socket.send(chunk) });
    }
    async setSignals(signals) { window.signalsSet = signals; }
    async close() { window.portCloses = (window.portCloses || 0) + 1; this.socket?.close(); }
  }
  const port = new FakePort();
  const serial = new EventTarget();
  serial.requestPort = async () => { window.portRequests = (window.portRequests || 0) + 1; return port; };
  serial.getPorts = async () => [port];
  Object.defineProperty(navigator, 'serial', { value: serial });
})();
"""


class Bridge:
    """A WebSocket server on loopback that pipes each connection to the simulator's TCP port."""

    def __init__(self, sim_port):
        import socket
        import threading
        from websockets.sync.server import serve

        def handler(ws):
            tcp = socket.create_connection(("127.0.0.1", sim_port))

            def radio_to_page():
                try:
                    while data := tcp.recv(4096):
                        ws.send(data)
                except OSError:
                    pass
            threading.Thread(target=radio_to_page, daemon=True).start()
            try:
                for message in ws:
                    tcp.sendall(message)
            except ConnectionClosed:
                pass  # the page went without a close frame, as a closed tab may
            finally:
                tcp.close()

        self.server = serve(handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_a_real_chromium_lends_its_port_through_the_page(start_broker, start_controlled_simulator, context, tmp_path):
    import time

    import chromium
    assert chromium.available(), "the browser tests need Debian's chromium (scripts/test installs it)"
    sim = start_controlled_simulator()
    endpoints = start_broker("--config", config(tmp_path), http=True)
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    bridge = Bridge(sim["port"])
    try:
        with chromium.Chromium() as page:
            page.send("Page.setBypassCSP", {"enabled": True})  # the fake port reaches the bridge on another port
            page.add_script_on_new_document(FAKE_SERIAL.replace("BRIDGE", bridge.url))
            page.navigate(endpoints["http"] + "/webserial/laptop")
            page.wait_for("document.getElementById('slot').textContent === 'laptop'", "the page naming its slot")
            chosen = time.monotonic()
            page.click("#choose-port")
            events = [(t, e) for t, e, _ in collect(sub, lambda ev: any(t.startswith("meshtastic.connection.established/laptop") for t, _, _ in ev))]
            print(f"port chosen → connection.established: {(time.monotonic() - chosen) * 1000:.0f} ms")
            assert page.evaluate("window.signalsSet") == {"dataTerminalReady": False, "requestToSend": False}
            page.wait_for("document.getElementById('lend').dataset.state === 'ready'", "the page showing the slot ready")
            command(context, sim["control"], {"emit": "text", "text": "heard through a browser"})
            collect(sub, lambda ev: any(t.startswith("meshtastic.receive/laptop/TEXT_MESSAGE_APP") and e["packet"]["decoded"]["text"] == "heard through a browser" for t, e, _ in ev))
            sent = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "laptop", "text": "sent through a browser", "wantAck": True})
            packet_id = sent["result"]["packetId"]
            collect(sub, lambda ev: any(t.startswith("meshtastic.send.status/laptop") and e["packetId"] == packet_id and e["status"] == "acked" for t, e, _ in ev))
            assert "sent through a browser" in command(context, sim["control"], {"fault": "clear"})["texts"]
            # disconnectForRestart: the page closes its port and waits; reconnect: it reopens
            # the port it was granted, with no second prompt.
            command(context, endpoints["commands"], {"cmd": "disconnectForRestart", "slot": "laptop", "settleSeconds": 0.2})
            page.wait_for("window.portCloses === 1", "the page closing its port for the restart")
            assert page.evaluate("document.getElementById('feed').textContent") == "waiting for MeshBus to reconnect"
            command(context, endpoints["commands"], {"cmd": "reconnect", "slot": "laptop"})
            events = collect(sub, lambda ev: any(t.startswith("meshtastic.connection.established/laptop") for t, _, _ in ev))
            assert [e["reason"] for t, e, _ in events if t.startswith("meshtastic.connection.lost/")] == ["manual"]
            assert page.evaluate("[window.portRequests, window.portOpens]") == [1, 2]
            page.navigate("about:blank")  # the tab leaves
            events = collect(sub, lambda ev: any(t.startswith("meshtastic.connection.lost/laptop") for t, _, _ in ev))
            assert [e["reason"] for t, e, _ in events if t.startswith("meshtastic.connection.lost/")] == ["browser_closed"]
    finally:
        bridge.close()


def test_garbage_from_a_page_is_counted_and_an_oversize_message_ends_only_that_relay(
        start_broker, start_controlled_simulator, context, tmp_path):
    sim = start_controlled_simulator()
    path = tmp_path / "meshbus.yaml"
    path.write_text("slots:\n  - {name: laptop, webserial: {}}\n  - {name: other, simulator: {nodes: 2}}\n")
    endpoints = start_broker("--config", str(path), http=True)
    url = endpoints["http"].replace("http://", "ws://") + "/webserial/laptop/relay"
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")

    async def run():
        async with Relay(url, sim["port"]) as relay:
            await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.established/laptop") for t, _, _ in ev), "ready")
            # A frame that is protobuf on the surface but no FromRadio (its packet ends mid-varint).
            await relay.socket.send(b"\x94\xc3\x00\x04\x12\x02\x08\x80")
            await until(lambda: link(context, endpoints)["undecodableFrames"] >= 1, "the garbage frame counted")
            assert link(context, endpoints)["undecodableFrames"] >= 1 and link(context, endpoints)["ready"]
            await relay.socket.send(b"\x00" * (70 * 1024))  # over the relay's 64 KiB message limit
            events = await events_until(sub, lambda ev: any(t.startswith("meshtastic.connection.lost/laptop") for t, _, _ in ev), "the relay ended")
            assert [e["reason"] for e in of(events, "meshtastic.connection.lost/laptop")] == ["browser_closed"]
    asyncio.run(run())
    other = command(context, endpoints["commands"], {"cmd": "status", "slot": "other"})["result"]["slots"]["other"]
    assert other["ready"] and other["reconnects"] == 0, "the other slot never noticed"
