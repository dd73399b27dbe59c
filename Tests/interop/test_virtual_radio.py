"""The virtual radio port: official Python `meshtastic` clients share one (simulated) radio
through MeshBus at the same time, each as if it were the radio's only client."""
import socket
import struct
import threading
import time

import pytest
from meshtastic.protobuf import mesh_pb2
from meshtastic.tcp_interface import TCPInterface
from pubsub import pub

from conftest import collect, command, control, free_port, slot_status, subscriber
from test_operations import all_ready, config_text, scrape, slots_status, value, wait_until, write


class Listener:
    """Records what the official clients publish on pypubsub, per interface."""

    def __init__(self):
        self.lock = threading.Lock()
        self.packets = []  # (interface, packet dict)
        self.notifications = []  # (interface, ClientNotification)
        pub.subscribe(self.on_receive, "meshtastic.receive")
        pub.subscribe(self.on_notification, "meshtastic.clientNotification")

    def on_receive(self, packet, interface):
        with self.lock:
            self.packets.append((interface, packet))

    def on_notification(self, notification, interface):
        with self.lock:
            self.notifications.append((interface, notification))

    def close(self):
        pub.unsubscribe(self.on_receive, "meshtastic.receive")
        pub.unsubscribe(self.on_notification, "meshtastic.clientNotification")

    def of(self, interface, port):
        with self.lock:
            return [p for i, p in self.packets if i is interface and p.get("decoded", {}).get("portnum") == port]

    def wait(self, condition, timeout=20.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def listener():
    recorder = Listener()
    yield recorder
    recorder.close()


@pytest.fixture
def shared_radio(start_broker, start_controlled_simulator):
    """A broker whose slot `radio` is a controlled simulator, with a virtual radio port."""
    sim = start_controlled_simulator()
    endpoints = start_broker("--tcp", f"radio=127.0.0.1:{sim['port']}", "--virtual-radio", "radio=127.0.0.1:0", "--metrics", "127.0.0.1:0",
                             metrics=True, virtual_radio=True)
    return endpoints, sim


def connect(endpoints):
    return TCPInterface(hostname="127.0.0.1", portNumber=int(endpoints["virtual_radio"]))


def status(context, endpoints):
    return slot_status(context, endpoints["commands"], "radio")


def test_two_official_clients_share_one_radio(shared_radio, context, listener):
    endpoints, sim = shared_radio
    sub = subscriber(context, endpoints["events"], b"meshtastic.sent/radio")
    first, second = connect(endpoints), connect(endpoints)
    try:
        # Both completed their own handshake and list the same nodes: the radio's.
        broker_nodes = command(context, endpoints["commands"], {"cmd": "nodes", "slot": "radio"})["result"]["nodes"]
        assert sorted(first.nodes) == sorted(second.nodes) == sorted(broker_nodes)
        assert len(first.nodes) == 6
        assert first.myInfo.my_node_num == second.myInfo.my_node_num != 0
        assert len(first.localNode.channels) == len(second.localNode.channels) == 8
        assert status(context, endpoints)["virtualClients"] == 2
        page = scrape(endpoints["metrics"])
        assert value(page, "meshbus_virtual_clients", slot="radio") == 2

        # A text the radio hears reaches both.
        control(context, sim["control"], {"emit": "text"})
        listener.wait(lambda: listener.of(first, "TEXT_MESSAGE_APP") and listener.of(second, "TEXT_MESSAGE_APP"), what="text at both")
        assert listener.of(first, "TEXT_MESSAGE_APP")[0]["id"] == listener.of(second, "TEXT_MESSAGE_APP")[0]["id"]

        # Each sends a text; each gets the ACK for its own packet and none for the other's.
        sent_first = first.sendText("hello from the first client", wantAck=True)
        sent_second = second.sendText("hello from the second client", wantAck=True)

        def acks(interface):
            return [p["decoded"]["requestId"] for p in listener.of(interface, "ROUTING_APP")
                    if p["decoded"]["routing"].get("errorReason", "NONE") == "NONE"]

        listener.wait(lambda: acks(first) and acks(second), what="both ACKs")
        assert acks(first) == [sent_first.id]
        assert acks(second) == [sent_second.id]

        # The broker's subscribers see both sends as the slot's, with the client named.
        events = collect(sub, lambda evs: len(evs) == 2)
        sent = {env["packet"]["id"]: env for _, env, _ in events}
        assert set(sent) == {sent_first.id, sent_second.id}
        texts = {env["packet"]["decoded"]["text"] for env in sent.values()}
        assert texts == {"hello from the first client", "hello from the second client"}
        assert all(env["requestId"].startswith("virtualRadio:127.0.0.1:") for env in sent.values())
        assert status(context, endpoints)["virtualRadio"]["packets"] == 2
    finally:
        first.close()
        second.close()


def frame(message):
    payload = message.SerializeToString()
    return b"\x94\xc3" + struct.pack(">H", len(payload)) + payload


def test_a_client_sending_garbage_or_never_reading_does_not_hold_back_others(shared_radio, context, listener):
    endpoints, sim = shared_radio
    sub = subscriber(context, endpoints["events"], b"meshtastic.receive/radio/TEXT_MESSAGE_APP")
    good = connect(endpoints)
    stalled = socket.socket()
    noisy = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", int(endpoints["virtual_radio"])))
        stalled.sendall(frame(mesh_pb2.ToRadio(want_config_id=4711)))  # then never reads
        noisy.connect(("127.0.0.1", int(endpoints["virtual_radio"])))
        noisy.sendall(bytes(range(256)) * 4 + b"\x94\xc3\x00\x03\x0a\xff\xff" + b"line noise\n")
        wait_until(lambda: status(context, endpoints)["virtualRadio"]["undecodable"] >= 1, what="garbage counted")

        emitted = [control(context, sim["control"], {"emit": "text"}) for _ in range(60)]
        assert len(emitted) == 60
        events = collect(sub, lambda evs: len(evs) == 60)
        published = [env["packet"]["id"] for _, env, _ in events]
        seqs = [env["seq"] for _, env, _ in events]
        listener.wait(lambda: len(listener.of(good, "TEXT_MESSAGE_APP")) == 60, what="60 texts at the good client")
        heard = [p["id"] for p in listener.of(good, "TEXT_MESSAGE_APP")]
        assert heard == published, "the good client heard every text, in the order the broker published them"
        assert seqs == sorted(seqs) and len(set(published)) == 60
        result = status(context, endpoints)
        assert result["virtualClients"] == 3
        assert result["ready"] is True
    finally:
        good.close()
        stalled.close()
        noisy.close()


def test_admin_requests_that_change_the_radio_are_refused_by_default(shared_radio, context, listener):
    endpoints, _ = shared_radio
    client = connect(endpoints)
    try:
        owner_before = client.getMyUser()["longName"]
        request = client.localNode.setOwner(long_name="Intruder", short_name="INT")
        listener.wait(lambda: listener.of(client, "ROUTING_APP") and listener.notifications, what="refusal")
        nak = listener.of(client, "ROUTING_APP")[0]
        assert nak["decoded"]["requestId"] == request.id
        assert nak["decoded"]["routing"]["errorReason"] == "NOT_AUTHORIZED"
        interface, notification = listener.notifications[0]
        assert interface is client and notification.reply_id == request.id
        assert "set_owner" in notification.message and "allowAdmin" in notification.message
        print("refused admin request, as the client sees it:", nak["decoded"], repr(notification.message))

        # The radio never saw it: a fresh client still reads the old owner.
        again = connect(endpoints)
        try:
            assert again.getMyUser()["longName"] == owner_before
        finally:
            again.close()
        assert status(context, endpoints)["virtualRadio"]["adminRefused"] == 1
        assert value(scrape(endpoints["metrics"]), "meshbus_virtual_admin_refused_total", slot="radio") == 1
    finally:
        client.close()


def test_clients_are_closed_when_the_radio_link_drops_and_reconnect(shared_radio, context, listener):
    endpoints, sim = shared_radio
    client = connect(endpoints)
    try:
        sub = subscriber(context, endpoints["events"], b"meshtastic.connection.established/radio")
        control(context, sim["control"], {"fault": "drop"})
        collect(sub, lambda evs: len(evs) == 1)  # the broker's link is back
        # The official client reconnects by itself (after ~1 s) and is served again.
        wait_until(lambda: status(context, endpoints)["virtualRadio"]["handshakes"] >= 2, what="client's second handshake")
        assert status(context, endpoints)["virtualRadio"]["connections"] == 2
        control(context, sim["control"], {"emit": "text"})
        listener.wait(lambda: listener.of(client, "TEXT_MESSAGE_APP"), what="text after reconnect")
    finally:
        client.close()


def test_a_reload_moves_a_virtual_radio_port_from_one_slot_to_another(start_broker, context, tmp_path):
    # The port moves to the slot listed first, so it must close at `second` before `first` opens it.
    port = free_port()
    path = tmp_path / "meshbus.yaml"
    write(path, config_text(["{name: first, simulator: {nodes: 2, seed: 1}}",
                             f"{{name: second, simulator: {{nodes: 3, seed: 2}}, virtualRadio: 127.0.0.1:{port}}}"]))
    endpoints = start_broker("--config", str(path))
    wait_until(lambda: all_ready(context, endpoints["commands"], ["first", "second"]), what="both slots ready")
    client = TCPInterface(hostname="127.0.0.1", portNumber=port)
    assert len(client.nodes) == 4
    client.close()

    write(path, config_text([f"{{name: first, simulator: {{nodes: 2, seed: 1}}, virtualRadio: 127.0.0.1:{port}}}",
                             "{name: second, simulator: {nodes: 3, seed: 2}}"]))
    wait_until(lambda: slots_status(context, endpoints["commands"])["first"]["virtualRadio"] is not None, what="port moved")
    statuses = slots_status(context, endpoints["commands"])
    assert statuses["second"]["virtualRadio"] is None
    assert statuses["first"]["reconnects"] == 0 and statuses["second"]["reconnects"] == 0, "links left alone"
    client = TCPInterface(hostname="127.0.0.1", portNumber=port)
    try:
        assert len(client.nodes) == 3, "the port now serves the first slot's radio"
    finally:
        client.close()
