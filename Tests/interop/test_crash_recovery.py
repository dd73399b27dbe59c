"""Accepted sends survive a crash (`stateDirectory`): sends queued behind a radio that is
offline, the broker killed with SIGKILL, started again: each send reaches exactly one
terminal status under its original packet id and request id, the radio gets each unexpired
send once, and expired ones end `expired` without reaching it."""
import signal
import subprocess
import time

from conftest import BINARY, _start, command, control, slot_status, wait_until


def start_from(config):
    proc, found = _start(["run", "--config", str(config)], {"commands": r"commands: (\S+)", "events": r"events: (\S+)"})
    return proc, found


def statuses(ctx, endpoint, slot="radio"):
    """Every send.status the slot still holds, as (packetId, requestId, status, error), oldest first."""
    reply = command(ctx, endpoint, {"id": "replay", "cmd": "replay", "slot": slot, "sinceSeq": 0})
    assert reply["ok"], reply
    out = []
    for event in reply["result"]["events"]:
        if event["topic"].startswith("meshtastic.send.status"):
            body = event["envelope"]
            out.append((body["packetId"], body.get("requestId"), body["status"], body.get("error")))
    return out


def slot_state(ctx, endpoint):
    return slot_status(ctx, endpoint, "radio")


def test_sends_accepted_before_a_kill_go_out_once_after_restart(tmp_path, context, start_controlled_simulator):
    sim = start_controlled_simulator()
    state = tmp_path / "state"
    config = tmp_path / "meshbus.yaml"
    config.write_text(
        "events: [tcp://127.0.0.1:*]\ncommands: [tcp://127.0.0.1:*]\n"
        f"stateDirectory: {state}\n"
        "slots:\n"
        f"  - {{name: radio, tcp: '127.0.0.1:{sim['port']}', timing: {{baseBackoff: 200ms, maxBackoff: 1s}}}}\n"
    )
    proc, found = start_from(config)
    try:
        wait_until(lambda: slot_state(context, found["commands"])["ready"], "the slot to be ready before the radio goes offline")
        # The radio goes away long enough for the sends below to queue, the kill and the restart.
        control(context, sim["control"], {"fault": "offline", "seconds": 8})
        wait_until(lambda: not slot_state(context, found["commands"])["ready"], "the slot to notice the radio is offline")
        accepted = {}
        for index in range(3):
            reply = command(context, found["commands"], {
                "id": f"keep-{index}", "cmd": "sendText", "slot": "radio", "text": f"survivor {index}", "wantAck": True, "ttlSeconds": 600,
            })
            assert reply["ok"] and reply["result"]["status"] == "queued", reply
            accepted[reply["result"]["packetId"]] = f"keep-{index}"
        reply = command(context, found["commands"], {
            "id": "no-ack", "cmd": "sendText", "slot": "radio", "text": "survivor without ack", "ttlSeconds": 600,
        })
        assert reply["ok"], reply
        no_ack = reply["result"]["packetId"]
        short = {}
        for index in range(2):
            reply = command(context, found["commands"], {
                "id": f"short-{index}", "cmd": "sendText", "slot": "radio", "text": f"too late {index}", "ttlSeconds": 3,
            })
            assert reply["ok"], reply
            short[reply["result"]["packetId"]] = f"short-{index}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert (state / "radio.sends").stat().st_size > 0

    # Past the short sends' ttlSeconds, while the broker is down.
    time.sleep(3.5)
    proc, found = start_from(config)
    try:
        expected = {packet_id: (request_id, ["queued", "sent", "acked"]) for packet_id, request_id in accepted.items()}
        expected[no_ack] = ("no-ack", ["queued", "sent"])
        expected.update({packet_id: (request_id, ["expired"]) for packet_id, request_id in short.items()})

        def histories():
            seen = {}
            for packet_id, request_id, status, _ in statuses(context, found["commands"]):
                seen.setdefault(packet_id, (request_id, []))[1].append(status)
            return seen

        def settled():
            seen = histories()
            done = all(packet_id in seen and seen[packet_id][1][-1] == want[-1] for packet_id, (_, want) in expected.items())
            return seen if done else None

        # Each send's whole life after the restart, under its original ids: one terminal status.
        seen = wait_until(settled, "every recovered send to reach a terminal status after the restart", timeout=60)
        assert seen == expected

        received = control(context, sim["control"], {"loadStatus": True})["packetIds"]
        for packet_id in [*accepted, no_ack]:
            assert received.count(packet_id) == 1, f"the radio got packet {packet_id} {received.count(packet_id)} times: {received}"
        for packet_id in short:
            assert packet_id not in received
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0

    # Every send settled: the next start finds nothing to resume, and the journal is compacted.
    proc, found = start_from(config)
    try:
        assert statuses(context, found["commands"]) == []
        assert (state / "radio.sends").stat().st_size == len(b"MBSENDJ\x01")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_state_directory_that_is_a_file_stops_the_start_with_its_reason(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    config = tmp_path / "meshbus.yaml"
    config.write_text(
        "events: [tcp://127.0.0.1:*]\ncommands: [tcp://127.0.0.1:*]\n"
        f"stateDirectory: {blocker}\nslots:\n  - {{name: sim, simulator: {{nodes: 2}}}}\n"
    )
    result = subprocess.run([BINARY, "run", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"open {blocker}: Not a directory" in result.stdout + result.stderr
