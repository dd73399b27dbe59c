"""Key-for-key: MeshBus's JSON for FromRadio bytes against what the official Python
`meshtastic` package delivers for the same bytes (its `meshtastic.receive` packet dict, or
MessageToDict for other messages). Differences MeshBus makes on purpose are listed in
EXCEPTIONS below, each asserted to be exactly as documented."""
import base64
import json
import os
import subprocess

import pytest

import meshtastic
from google.protobuf.json_format import MessageToDict
from meshtastic.mesh_interface import MeshInterface
from meshtastic.protobuf import mesh_pb2
from pubsub import pub

from conftest import BINARY

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = [
    tuple(line.rstrip("\n").split("\t"))
    for line in open(os.path.join(HERE, "corpus", "fromradio.txt"))
    if line.strip() and not line.startswith("#")
]


def normalized(value):
    """The Python dict as JSON would carry it: no `raw` protobuf objects, bytes as base64."""
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items() if k != "raw"}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


class ReferenceClient:
    """The official library's packet handling, fed directly, with a node DB that knows every
    sender (as it would after a real handshake)."""

    def __init__(self):
        meshtastic.publishingThread.queueWork = lambda work: work()
        self.received = []
        pub.subscribe(self.on_receive, "meshtastic.receive")
        self.interface = MeshInterface(noProto=True)

    def on_receive(self, packet, interface):
        self.received.append(packet)

    def packet_dict(self, packet, known=True):
        """The dict the library publishes; `known`: sender and receiver are in its node DB."""
        numbers = [getattr(packet, "from"), packet.to] if known else []
        self.interface.nodesByNum = {n: {"num": n, "user": {"id": "!%08x" % n}} for n in numbers}
        self.interface.nodes = {"!%08x" % n: node for n, node in self.interface.nodesByNum.items()}
        self.received.clear()
        self.interface._handlePacketFromRadio(packet)
        return normalized(self.received[0]) if self.received else None


@pytest.fixture(scope="module")
def reference():
    client = ReferenceClient()
    yield client
    pub.unsubscribe(client.on_receive, "meshtastic.receive")
    client.interface.close()


@pytest.fixture(scope="module")
def meshbus_json():
    """MeshBus's JSON for every corpus entry, from one `meshbus decode` run."""
    lines = "".join(f"{data}\n" for _, data in CORPUS)
    out = subprocess.run([BINARY, "decode"], input=lines, capture_output=True, text=True, check=True).stdout
    decoded = [json.loads(line) for line in out.splitlines()]
    assert len(decoded) == len(CORPUS)
    return {name: value for (name, _), value in zip(CORPUS, decoded)}


def python_json(reference, data, known=True):
    message = mesh_pb2.FromRadio()
    message.ParseFromString(bytes.fromhex(data))
    if message.HasField("packet"):
        packet = reference.packet_dict(message.packet, known)
        return None if packet is None else {"packet": packet}
    return {"fromRadio": MessageToDict(message)}


# Where MeshBus differs from the official client on purpose. Each is asserted below exactly
# as described here (and listed in the README's topic section).
EXCEPTIONS = {
    # The library drops a packet whose `from` is 0 ("Device returned a packet we sent");
    # MeshBus publishes it (from 0), so a consumer sees everything the radio said.
    "text_zero_from_to": "published by MeshBus, dropped by the library",
    # The library's Position decoder raises on a corrupt payload and the packet is lost;
    # MeshBus publishes it with `decoded.payload` and no `position`.
    "text_with_malformed_inner_payload_on_position_port": "published without the sub-message, lost in the library",
}


def differences(ours, theirs, path=""):
    """Every path where the two JSON values differ, with both sides."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(set(ours) | set(theirs)):
            if key not in ours:
                found.append(f"{path}.{key}: missing (official: {theirs[key]!r})")
            elif key not in theirs:
                found.append(f"{path}.{key}: extra {ours[key]!r}")
            else:
                found += differences(ours[key], theirs[key], f"{path}.{key}")
        return found
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(ours, theirs)) for d in differences(a, b, f"{path}[{i}]")]
    if ours != theirs or type(ours) is not type(theirs):
        return [f"{path}: {ours!r} (official: {theirs!r})"]
    return []


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name,data", [e for e in CORPUS if e[0] not in EXCEPTIONS], ids=[n for n, _ in CORPUS if n not in EXCEPTIONS])
def test_json_matches_the_official_client_key_for_key(name, data, reference, meshbus_json):
    expected = python_json(reference, data)
    assert differences(meshbus_json[name], expected) == []


def test_packet_from_zero_is_published_where_the_library_drops_it(reference, meshbus_json):
    data = dict(CORPUS)["text_zero_from_to"]
    assert python_json(reference, data) is None
    packet = meshbus_json["text_zero_from_to"]["packet"]
    assert packet["from"] == 0 and packet["to"] == 0 and packet["decoded"]["text"] == "zeros"


def test_corrupt_sub_message_keeps_the_packet_without_it(reference, meshbus_json):
    data = dict(CORPUS)["text_with_malformed_inner_payload_on_position_port"]
    with pytest.raises(Exception):
        python_json(reference, data)
    decoded = meshbus_json["text_with_malformed_inner_payload_on_position_port"]["packet"]["decoded"]
    assert decoded["portnum"] == "POSITION_APP" and decoded["payload"] == "////" and "position" not in decoded


def test_ids_of_nodes_outside_the_node_db_are_still_given(reference, meshbus_json):
    # The library looks fromId/toId up in its node DB and gives None for a node it has not
    # heard of yet; MeshBus always gives `!%08x` (design.md §3), so ids never go missing.
    data = dict(CORPUS)["text_high_node_numbers"]
    theirs = python_json(reference, data, known=False)["packet"]
    ours = meshbus_json["text_high_node_numbers"]["packet"]
    assert theirs["fromId"] is None and theirs["toId"] is None
    assert ours["fromId"] == "!fffffffe" and ours["toId"] == "!80000000"
    assert differences(ours, {**theirs, "fromId": "!fffffffe", "toId": "!80000000"}) == []
