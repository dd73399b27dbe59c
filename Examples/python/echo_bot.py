#!/usr/bin/env python3
"""A MeshBus echo bot: answers every text that says `ping` with `pong` to its sender, and
prints each answer's send lifecycle (queued, sent, acked or nak/expired/failed).

    python3 echo_bot.py --events tcp://127.0.0.1:7710 --commands tcp://127.0.0.1:7711
"""
import argparse
import json
import sys

import zmq


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="tcp://127.0.0.1:7710")
    parser.add_argument("--commands", default="tcp://127.0.0.1:7711")
    parser.add_argument("--answers", type=int, default=0, help="stop once this many answers are settled (0: run forever)")
    args = parser.parse_args()

    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.connect(args.events)
    sub.subscribe(b"meshtastic.receive/")  # then filtered to texts below; a topic per port is
    sub.subscribe(b"meshtastic.send.status/")  # `meshtastic.receive/<slot>/TEXT_MESSAGE_APP`
    commands = context.socket(zmq.DEALER)  # DEALER: requests need not wait for each other
    commands.connect(args.commands)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(commands, zmq.POLLIN)

    settled = 0
    hearing = False
    print("echo bot started", flush=True)
    while args.answers == 0 or settled < args.answers:
        for socket, _ in poller.poll():
            if socket is commands:
                _, reply = commands.recv_multipart()
                reply = json.loads(reply)
                if not reply["ok"]:  # accepted sends report on meshtastic.send.status
                    print(f"send refused: {reply['error']['code']}: {reply['error']['message']}", flush=True)
                continue
            topic, envelope = socket.recv_multipart()[:2]
            topic, envelope = topic.decode(), json.loads(envelope)
            if not hearing:
                # A subscription takes a moment to reach the publisher; the first event proves it has.
                hearing = True
                print("echo bot hearing the mesh", flush=True)
            if topic.startswith("meshtastic.send.status/"):
                packet_id = envelope["packetId"]
                if (envelope.get("requestId") or "").startswith("pong-"):  # null for sends without an id
                    error = f" ({envelope['error']})" if "error" in envelope else ""
                    print(f"pong {packet_id} {envelope['status']}{error}", flush=True)
                    if envelope["status"] in ("acked", "nak", "expired", "failed"):
                        settled += 1
                continue
            packet = envelope["packet"]
            text = packet.get("decoded", {}).get("text")
            if text is None or text.strip().lower() != "ping":
                continue
            print(f"ping from {packet['fromId']} on {envelope['slot']}", flush=True)
            request = {"id": f"pong-{packet['id']}", "cmd": "sendText", "slot": envelope["slot"], "text": "pong",
                       "to": packet["fromId"], "replyId": packet["id"], "channel": packet.get("channel", 0), "wantAck": True}
            commands.send_multipart([b"", json.dumps(request).encode()])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
