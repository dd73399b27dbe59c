"""The connection manager seen from outside: pyzmq clients watch a real radio link
(`meshbus sim` over TCP or a pseudo-terminal) fail and recover, at design.md's default timings."""
from conftest import collect, command, control, free_port, slot_status, subscriber

STATE_FIELDS = {"state", "previous", "strikes", "attempt", "retryInSeconds"}


def link_events(sub, until, timeout=30.0):
    """Collects (topic, envelope) pairs until `until(events)` holds."""
    return [(t, e) for t, e, _ in collect(sub, lambda ev: until([(t, e) for t, e, _ in ev]), timeout)]


def count(prefix):
    return lambda events: sum(1 for t, _ in events if t.startswith(prefix))


def established(n):
    return lambda events: count("meshtastic.connection.established/")(events) >= n


def states(events):
    return [e["state"] for t, e in events if t.startswith("meshtastic.connection.state/")]


def of(events, topic):
    return [e for t, e in events if t == topic]


def status(ctx, endpoint):
    return slot_status(ctx, endpoint, "radio")


def watched_radio(start_broker, start_controlled_simulator, context, serial=None):
    """A broker whose radio appears only once a subscriber demonstrably listens; returns
    (endpoints, simulator, subscriber, events up to the first establishment)."""
    if serial:
        endpoints = start_broker("--serial", f"radio={serial}")
    else:
        port = free_port()
        endpoints = start_broker("--tcp", f"radio=127.0.0.1:{port}")
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    # The subscriber may join after the first state change: whatever it saw before the radio
    # appeared counts too (the serial test looks for the poll state among them).
    before = link_events(sub, count("meshtastic.connection.state/radio"))
    sim = start_controlled_simulator(serial=serial) if serial else start_controlled_simulator(port=port)
    events = before + link_events(sub, established(1))
    return endpoints, sim, sub, events


def test_dropped_radio_is_lost_once_then_established_again(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub, _ = watched_radio(start_broker, start_controlled_simulator, context)
    before = status(context, endpoints["commands"])
    assert before["ready"] and before["strikes"] == 0 and before["transport"] == "tcp"

    control(context, sim["control"], {"fault": "drop"})
    events = link_events(sub, established(1))
    assert [e["reason"] for e in of(events, "meshtastic.connection.lost/radio")] == ["transport_closed"]
    assert states(events) == ["backoff", "connecting", "configuring", "ready"]
    for topic, envelope in events:
        if topic.startswith("meshtastic.connection.state/"):
            assert STATE_FIELDS <= envelope.keys(), envelope
    backoff = next(e for e in of(events, "meshtastic.connection.state/radio") if e["state"] == "backoff")
    # A link that dies within 30 s of becoming ready counts as one more failed attempt (the
    # refused ones before the radio appeared count too): at least the 3 s cooldown, at most 15 s + 1 s.
    assert backoff["previous"] == "ready" and 3.0 <= backoff["retryInSeconds"] <= 16.0, backoff
    assert of(events, "meshtastic.connection.established/radio")[0]["attempt"] == before["attempt"] + 1

    after = status(context, endpoints["commands"])
    assert after["ready"] and after["attempt"] == before["attempt"] + 1 and after["reconnects"] == before["reconnects"] + 1
    assert isinstance(after["lastProbeOkAgoSeconds"], float) and after["lastProbeOkAgoSeconds"] >= 0
    assert after["retryInSeconds"] is None


def test_disconnect_for_restart_holds_the_radio_until_reconnect(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub, _ = watched_radio(start_broker, start_controlled_simulator, context)
    reply = command(context, endpoints["commands"], {"id": 1, "cmd": "disconnectForRestart", "slot": "radio", "settleSeconds": 0.2})
    assert reply["ok"], reply
    events = link_events(sub, count("meshtastic.connection.lost/radio"))
    assert states(events)[-1] == "disconnectedForRestart"
    assert [e["reason"] for e in of(events, "meshtastic.connection.lost/radio")] == ["manual"]
    assert status(context, endpoints["commands"])["state"] == "disconnectedForRestart"

    assert command(context, endpoints["commands"], {"cmd": "reconnect", "slot": "radio"})["ok"]
    events = link_events(sub, established(1))
    assert states(events) == ["connecting", "configuring", "ready"]

    missing = command(context, endpoints["commands"], {"cmd": "reconnect", "slot": "nope"})
    assert missing["error"]["code"] == "unknown_slot"
    bad = command(context, endpoints["commands"], {"cmd": "disconnectForRestart", "slot": "radio", "settleSeconds": "soon"})
    assert bad["error"]["code"] == "bad_request" and "settleSeconds" in bad["error"]["message"]


def test_serial_radio_on_a_pseudo_terminal_logs_vanishes_and_comes_back(start_broker, start_controlled_simulator, context, tmp_path):
    path = str(tmp_path / "ttyMESH0")
    endpoints, sim, sub, events = watched_radio(start_broker, start_controlled_simulator, context, serial=path)
    # Before the device existed, the manager polled at disconnectedPollInterval (5 s).
    assert any(e.get("retryInSeconds") == 5.0 for e in of(events, "meshtastic.connection.state/radio")), states(events)
    assert status(context, endpoints["commands"])["transport"] == "serial"
    # The firmware's debug console shares the serial line with the frames.
    assert any("Client wants config" in e["line"] for e in of(events, "meshtastic.log/radio")), [t for t, _ in events]

    control(context, sim["control"], {"fault": "offline", "seconds": 1})
    events = link_events(sub, established(1))
    assert [e["reason"] for e in of(events, "meshtastic.connection.lost/radio")] == ["transport_closed"]
    assert states(events)[-3:] == ["connecting", "configuring", "ready"]


def test_status_says_in_words_why_a_link_is_not_up(start_broker, start_controlled_simulator, context, tmp_path):
    port = free_port()
    path = str(tmp_path / "ttyABSENT")
    endpoints = start_broker("--tcp", f"radio=127.0.0.1:{port}", "--serial", f"cable={path}")
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.state/")
    link_events(sub, lambda events: count("meshtastic.connection.state/radio")(events) >= 2 and count("meshtastic.connection.state/cable")(events) >= 2)
    slots = command(context, endpoints["commands"], {"cmd": "status"})["result"]["slots"]
    assert slots["radio"]["lastError"] == f"tcp://127.0.0.1:{port}: Connection refused", slots["radio"]
    assert slots["cable"]["lastError"] == f"serial://{path}: device absent", slots["cable"]
    start_controlled_simulator(port=port)
    link_events(sub, lambda events: any(e["state"] == "ready" for t, e in events if t.endswith("/radio")))
    assert status(context, endpoints["commands"])["lastError"] is None, "cleared once ready"


def test_sigterm_closes_the_radio_cleanly_and_publishes_the_loss(start_broker, start_controlled_simulator, context):
    endpoints, sim, sub, _ = watched_radio(start_broker, start_controlled_simulator, context)
    endpoints["process"].terminate()
    events = link_events(sub, count("meshtastic.connection.lost/radio"))
    assert [e["reason"] for e in of(events, "meshtastic.connection.lost/radio")] == ["shutdown"]
    assert endpoints["process"].wait(timeout=15) == 0
