"""The official Python meshtastic client against `meshbus sim`, over TCP and over a
pseudo-terminal: proof that the simulator speaks the real protocol, handshake to ACK."""
import threading

import pytest
from meshtastic.serial_interface import SerialInterface
from meshtastic.tcp_interface import TCPInterface
from pubsub import pub

from conftest import control


@pytest.fixture(params=["tcp", "serial"])
def official_client(request, start_controlled_simulator, tmp_path):
    """(interface, simulator) with the official client connected over TCP or a pty."""
    if request.param == "tcp":
        sim = start_controlled_simulator()
        connect = lambda: TCPInterface(hostname="127.0.0.1", portNumber=int(sim["port"]))
    else:
        path = str(tmp_path / "ttyMESH")
        sim = start_controlled_simulator(serial=path)
        connect = lambda: SerialInterface(devPath=path)
    return connect, sim


def test_official_client_completes_handshake_and_reads_node_info_nodes_and_channels(official_client):
    connect, _ = official_client
    iface = connect()
    try:
        assert iface.myInfo is not None and iface.myInfo.my_node_num != 0
        assert iface.metadata.firmware_version.endswith(".sim")
        nodes = iface.nodes
        assert len(nodes) == 6  # five virtual nodes and the local one
        for node_id, node in nodes.items():
            assert node["user"]["id"] == node_id
            assert node["user"]["longName"]
        assert iface.getMyNodeInfo()["num"] == iface.myInfo.my_node_num
        channels = iface.localNode.channels
        assert len(channels) == 8 and channels[0].role == 1  # PRIMARY
        assert iface.localNode.localConfig.lora.region != 0
    finally:
        iface.close()


def test_official_client_gets_the_ack_for_its_text_and_receives_an_emitted_text(official_client, context):
    connect, sim = official_client
    texts = []
    acked = threading.Event()
    heard = threading.Event()
    sent_ids = []

    def on_receive(packet, interface):
        decoded = packet.get("decoded", {})
        if decoded.get("portnum") == "ROUTING_APP":
            if decoded.get("requestId") in sent_ids and decoded["routing"].get("errorReason", "NONE") == "NONE":
                acked.set()
        elif decoded.get("portnum") == "TEXT_MESSAGE_APP":
            texts.append(packet)
            heard.set()

    pub.subscribe(on_receive, "meshtastic.receive")
    iface = connect()
    try:
        sent = iface.sendText("hello from python", wantAck=True)
        sent_ids.append(sent.id)
        assert acked.wait(15), "no ACK for the sent text"
        control(context, sim["control"], {"emit": "text"})
        assert heard.wait(15), "the emitted text did not arrive"
        packet = texts[0]
        # The dict a real radio's text gives: ids resolved from the node DB, text decoded.
        assert packet["fromId"] in iface.nodes and packet["toId"] == "^all"
        assert packet["decoded"]["text"] and isinstance(packet["decoded"]["payload"], bytes)
        assert packet["rxTime"] > 0 and packet["id"] > 0
    finally:
        pub.unsubscribe(on_receive, "meshtastic.receive")
        iface.close()
