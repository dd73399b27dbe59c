"""The official Python meshtastic client against `meshbus sim`: proof the simulator speaks the real protocol."""
import threading

from meshtastic.tcp_interface import TCPInterface
from pubsub import pub


def test_official_tcp_interface_completes_handshake_and_lists_virtual_nodes(simulator):
    iface = TCPInterface(hostname="127.0.0.1", portNumber=simulator, connectNow=True)
    try:
        assert iface.myInfo is not None and iface.myInfo.my_node_num != 0
        assert iface.metadata.firmware_version.endswith(".sim")
        nodes = iface.nodes
        assert len(nodes) == 6  # five virtual nodes and the local one
        for node_id, node in nodes.items():
            assert node["user"]["id"] == node_id
            assert node["user"]["longName"]
        assert iface.localNode.localConfig.lora.region != 0
    finally:
        iface.close()


def test_official_client_receives_traffic_and_gets_ack_for_its_send(simulator):
    received = threading.Event()
    acked = threading.Event()
    sent_ids = []

    def on_receive(packet, interface):
        decoded = packet.get("decoded", {})
        if decoded.get("portnum") == "ROUTING_APP":
            if decoded.get("requestId") in sent_ids and decoded["routing"].get("errorReason", "NONE") == "NONE":
                acked.set()
        else:
            received.set()

    pub.subscribe(on_receive, "meshtastic.receive")
    iface = TCPInterface(hostname="127.0.0.1", portNumber=simulator)
    try:
        sent = iface.sendText("hello from python", wantAck=True)
        sent_ids.append(sent.id)
        assert received.wait(15), "no packet from the virtual mesh"
        assert acked.wait(15), "no ACK for the sent text"
    finally:
        pub.unsubscribe(on_receive, "meshtastic.receive")
        iface.close()
