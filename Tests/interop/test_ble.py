"""BLE slots (design.md §7) against the project's fake BlueZ (fake_bluez.py) on a private
dbus-daemon, backed by the radio simulator: MeshBus speaks D-Bus to it as to BlueZ."""
import time


from conftest import check_config, collect, command, slot_status, subscriber, wait_until

# Short timings so that losses and strikes show within seconds.
FAST = ("timing: {healthCheckInterval: 1s, probeTimeout: 1s, maxStrikes: 2, reconnectCooldown: 0.2s,"
        " baseBackoff: 0.2s, maxBackoff: 1s, disconnectedPollInterval: 0.5s}")


def config(tmp_path, ble, timing=FAST):
    path = tmp_path / "meshbus.yaml"
    path.write_text(f"slots:\n  - name: window\n    ble: {ble}\n    {timing}\n")
    return str(path)


def link(context, endpoints):
    return slot_status(context, endpoints["commands"], "window")


def established(events):
    return [e for t, e, _ in events if t.startswith("meshtastic.connection.established/window")]


def losses(events):
    return [e["reason"] for t, e, _ in events if t.startswith("meshtastic.connection.lost/window")]


def test_a_known_radio_handshakes_hears_and_sends_with_ack(fake_bluez, start_broker, context, tmp_path):
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=fake_bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.")
    collect(sub, lambda ev: established(ev))
    status = link(context, endpoints)
    assert status["transport"] == "ble" and status["ready"] and status["lastError"] is None
    nodes = command(context, endpoints["commands"], {"cmd": "nodes", "slot": "window"})["result"]
    assert len(nodes["nodes"]) == 6, "the simulator's five nodes and its own"
    snapshot = command(context, endpoints["commands"], {"cmd": "snapshot", "slot": "window"})["result"]
    assert len(snapshot["nodes"]) == 6 and snapshot["myInfo"]["myNodeNum"]
    # Heard while the link idles: only a FromNum notification makes MeshBus read it.
    notified = fake_bluez.stats("AA:BB:CC:DD:EE:01")["notifications"]
    command(context, fake_bluez.sim["control"], {"emit": "text", "text": "heard over BLE"})
    collect(sub, lambda ev: any(t.startswith("meshtastic.receive/window/TEXT_MESSAGE_APP") and e["packet"]["decoded"]["text"] == "heard over BLE" for t, e, _ in ev))
    assert fake_bluez.stats("AA:BB:CC:DD:EE:01")["notifications"] > notified
    sent = command(context, endpoints["commands"], {"cmd": "sendText", "slot": "window", "text": "sent over BLE", "wantAck": True})
    packet_id = sent["result"]["packetId"]
    collect(sub, lambda ev: any(t.startswith("meshtastic.send.status/window") and e["packetId"] == packet_id and e["status"] == "acked" for t, e, _ in ev))
    assert "sent over BLE" in command(context, fake_bluez.sim["control"], {"fault": "clear"})["texts"]
    stats = fake_bluez.stats("AA:BB:CC:DD:EE:01")
    assert stats["writes_dropped"] == 0, "no ToRadio repeated the one before it"
    ops = fake_bluez.ops("AA:BB:CC:DD:EE:01")
    assert ("start_notify", "FromNum") in [op[:2] for op in ops]


def test_a_radio_found_by_name_through_a_discovery_filtered_on_the_meshtastic_service(
        start_fake_bluez, start_controlled_simulator, start_broker, context, tmp_path):
    from fake_bluez import MESH_SERVICE, Peripheral
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(known=False), sim_port=int(sim["port"]))
    endpoints = start_broker("--config", config(tmp_path, "Meshtastic_ee01"), env=bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    filters = bluez.discovery_filters()
    assert filters and filters[0]["Transport"] == "le" and filters[0]["UUIDs"] == [MESH_SERVICE]
    wait_until(lambda: not bluez.discovering(), "the discovery stopped once the radio was found")


def test_a_dropped_link_is_lost_as_transport_closed_and_ready_again_by_itself(fake_bluez, start_broker, context, tmp_path):
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=fake_bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    dropped = time.monotonic()
    fake_bluez.drop_link("AA:BB:CC:DD:EE:01")
    events = collect(sub, losses)
    detected = time.monotonic()
    events += collect(sub, established)
    print(f"BLE link drop: lost after {(detected - dropped) * 1000:.0f} ms, ready again {(time.monotonic() - detected) * 1000:.0f} ms later ({FAST})")
    assert losses(events) == ["transport_closed"]
    assert fake_bluez.stats("AA:BB:CC:DD:EE:01")["connect_calls"] == 2, "connected again through BlueZ"


def test_a_dropped_link_without_the_gatt_cache_recovers_too(start_fake_bluez, start_controlled_simulator, start_broker, context, tmp_path):
    from fake_bluez import Peripheral
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(gatt_cache=False), sim_port=int(sim["port"]))
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    bluez.drop_link("AA:BB:CC:DD:EE:01")
    assert losses(collect(sub, established)) == ["transport_closed"]


def test_a_device_that_vanishes_is_polled_as_absent_and_reconnected_when_it_returns(fake_bluez, start_broker, context, tmp_path):
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=fake_bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    # Out of range and forgotten by BlueZ: a discovery no longer finds it.
    fake_bluez.set_in_range("AA:BB:CC:DD:EE:01", False)
    fake_bluez.remove_device("AA:BB:CC:DD:EE:01")
    collect(sub, losses)
    # A device BlueZ no longer knows is looked for by a discovery (10 s) before it counts as absent.
    wait_until(lambda: link(context, endpoints)["lastError"] == "ble://AA:BB:CC:DD:EE:01: device absent", "the slot reporting the device absent", timeout=30)
    fake_bluez.set_in_range("AA:BB:CC:DD:EE:01", True)  # advertising again: the next discovery finds it
    collect(sub, established)
    assert link(context, endpoints)["ready"]


def test_a_stalled_peripheral_is_lost_to_probe_strikes(fake_bluez, start_broker, context, tmp_path):
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=fake_bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    stalled = time.monotonic()
    fake_bluez.stall("AA:BB:CC:DD:EE:01", kind="link")
    events = collect(sub, losses)
    detected = time.monotonic()
    assert losses(events) == ["probe_strikes"]
    fake_bluez.stall("AA:BB:CC:DD:EE:01", on=False)
    collect(sub, established)
    print(f"BLE stall: lost after {(detected - stalled) * 1000:.0f} ms, ready again {(time.monotonic() - detected) * 1000:.0f} ms later ({FAST})")


def test_a_radio_that_demands_pairing_without_a_pin_says_so_and_keeps_retrying(
        start_fake_bluez, start_controlled_simulator, start_broker, context, tmp_path):
    from fake_bluez import Peripheral
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(pin=123456), sim_port=int(sim["port"]))
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=bluez.env)
    wait_until(lambda: link(context, endpoints)["lastError"] == "ble://AA:BB:CC:DD:EE:01: pairing required: set pin", "the pairing error in status")
    wait_until(lambda: bluez.stats("AA:BB:CC:DD:EE:01")["connect_calls"] >= 3, "three attempts")
    status = link(context, endpoints)
    assert not status["ready"] and status["state"] in ("backoff", "connecting")
    stats = bluez.stats("AA:BB:CC:DD:EE:01")
    assert stats["disconnect_calls"] >= stats["connect_calls"] - 1, "each failed attempt disconnected"


def test_the_right_pin_pairs_through_meshbus_agent_and_the_slot_is_ready(
        start_fake_bluez, start_controlled_simulator, start_broker, context, tmp_path):
    from fake_bluez import Peripheral
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(pin=123456), sim_port=int(sim["port"]))
    endpoints = start_broker("--config", config(tmp_path, "{device: AA:BB:CC:DD:EE:01, pin: 123456}"), env=bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    stats = bluez.stats("AA:BB:CC:DD:EE:01")
    assert stats["paired_now"] and stats["passkeys"] == [123456]
    assert [agent["capability"] for agent in bluez.agents()["registered"]] == ["KeyboardOnly"]


def test_a_wrong_pin_is_a_clear_error(start_fake_bluez, start_controlled_simulator, start_broker, context, tmp_path):
    from fake_bluez import Peripheral
    sim = start_controlled_simulator()
    bluez = start_fake_bluez(Peripheral(pin=123456), sim_port=int(sim["port"]))
    endpoints = start_broker("--config", config(tmp_path, "{device: AA:BB:CC:DD:EE:01, pin: 654321}"), env=bluez.env)
    wait_until(lambda: link(context, endpoints)["lastError"] == "ble://AA:BB:CC:DD:EE:01: pairing failed: wrong pin?", "the wrong-pin error in status")
    assert not bluez.stats("AA:BB:CC:DD:EE:01")["paired_now"]


def test_stopping_the_broker_disconnects_the_radio(fake_bluez, start_broker, context, tmp_path):
    endpoints = start_broker("--config", config(tmp_path, "AA:BB:CC:DD:EE:01"), env=fake_bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    broker = endpoints["process"]
    broker.terminate()
    assert broker.wait(timeout=15) == 0
    wait_until(lambda: not fake_bluez.stats("AA:BB:CC:DD:EE:01")["connected"], "BlueZ's link closed after the broker stopped")


def test_the_ble_flag_makes_a_slot_without_a_file(fake_bluez, start_broker, context):
    endpoints = start_broker("--ble", "window=Meshtastic_ee01", env=fake_bluez.env)
    sub = subscriber(context, endpoints["events"], b"meshtastic.connection.")
    collect(sub, established)
    assert link(context, endpoints)["transport"] == "ble"


def test_check_describes_ble_slots_and_refuses_a_bad_pin(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("slots:\n  - {name: shed, ble: {device: Meshtastic_ee02, pin: 123456}}\n  - {name: window, ble: AA:BB:CC:DD:EE:01}\n")
    result = check_config(good)
    assert result.returncode == 0, result.stderr
    assert "ble Meshtastic_ee02 on hci0, pairs with the configured pin" in result.stdout
    assert "ble AA:BB:CC:DD:EE:01 on hci0, no pin (paired beforehand, or none needed)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("slots:\n  - name: shed\n    ble: {device: Meshtastic_ee02, pin: 1234567}\n")
    result = check_config(bad)
    assert result.returncode == 1
    assert "bad.yaml:3: slots[0].ble.pin: must be from 0 to 999999, got 1234567" in result.stderr
