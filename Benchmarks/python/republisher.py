#!/usr/bin/env python3
"""Baseline A: the republisher users write today, with the official `meshtastic` library.

A `TCPInterface` holds the radio (here the load simulator), a pypubsub listener on
`meshtastic.receive` turns each packet into JSON and a pyzmq PUB socket publishes it, with a
topic like MeshBus's. Nothing in it is tuned; that is the point of the comparison.

    republisher.py --radio 127.0.0.1:4403 --events tcp://127.0.0.1:7720
"""
import argparse
import json
import sys
import threading

import zmq
from meshtastic.tcp_interface import TCPInterface
from pubsub import pub


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--radio", required=True, help="host:port of the radio's TCP API")
    parser.add_argument("--events", required=True, help="PUB endpoint to bind")
    args = parser.parse_args()
    host, port = args.radio.rsplit(":", 1)

    publisher = zmq.Context().socket(zmq.PUB)
    publisher.setsockopt(zmq.SNDHWM, 100_000)
    publisher.bind(args.events)
    lock = threading.Lock()  # the library calls back from its reader thread

    def on_receive(packet, interface):
        # What the library hands over carries protobuf objects and bytes; like most user
        # code, drop `raw` and let json stringify whatever else it cannot encode.
        body = {key: value for key, value in packet.items() if key != "raw"}
        portnum = packet.get("decoded", {}).get("portnum", "UNKNOWN")
        message = json.dumps({"topic": "meshtastic.receive", "slot": "sim", "packet": body}, default=str).encode()
        with lock:
            publisher.send_multipart([f"meshtastic.receive/sim/{portnum}".encode(), message])

    pub.subscribe(on_receive, "meshtastic.receive")
    interface = TCPInterface(hostname=host, portNumber=int(port))
    print("republishing", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    interface.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
