"""HTTP clients (design.md §8): the ROUTER's commands as POST /api/commands, each error code
mapped to its HTTP status, bad requests refused clearly, the daemon unharmed; /metrics on the
same listener. Plain urllib from the standard library, as a shell script's curl would."""
import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import command, free_port


def post(base, body, content_type="application/json", method="POST"):
    """(status, parsed JSON reply or None) for one request."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/commands", data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, (json.loads(text) if text else None)


@pytest.fixture
def http_broker(start_broker):
    return start_broker(http=True)


def test_commands_over_http_answer_as_on_the_router(http_broker, context):
    base = http_broker["http"]
    status, reply = post(base, {"id": "h1", "cmd": "ping"})
    assert status == 200 and reply["ok"] and reply["id"] == "h1"
    zmq_ping = command(context, http_broker["commands"], {"cmd": "ping"})
    assert reply["result"]["broker"] == zmq_ping["result"]["broker"], "one broker behind both"
    status, reply = post(base, {"cmd": "status"})
    assert status == 200 and set(reply["result"]["slots"]) == {"sim"}
    status, reply = post(base, {"id": 7, "cmd": "sendText", "slot": "sim", "text": "over http"})
    assert status == 200 and reply["result"]["status"] == "queued" and reply["id"] == 7


@pytest.mark.parametrize("body, status, code", [
    ({"cmd": "status", "slot": "rof"}, 404, "unknown_slot"),
    ({"cmd": "launch"}, 404, "unknown_command"),
    ({"cmd": "sendText", "slot": "sim"}, 400, "bad_request"),
    ({"cmd": "sendText", "slot": "sim", "text": "x" * 300}, 400, "text_too_long"),
    ({"cmd": "replay", "slot": "sim", "sinceSeq": 0, "limit": 1}, 200, None),
    (b"{not json", 400, "bad_request"),
    (b"\xff\xfe\x00", 400, "bad_request"),
    (b"[1, 2]", 400, "bad_request"),
])
def test_every_error_code_has_its_http_status(http_broker, body, status, code):
    got, reply = post(http_broker["http"], body)
    assert got == status, reply
    if code:
        assert reply["ok"] is False and reply["error"]["code"] == code


def test_not_ready_is_409_and_queue_full_429(start_broker):
    # A slot whose radio is never reachable: never ready, and its outbox of 2 fills.
    broker = start_broker("--tcp", f"dead=127.0.0.1:{free_port()}", "--outbox-capacity", "2", http=True)
    base = broker["http"]
    status, reply = post(base, {"cmd": "sendText", "slot": "dead", "text": "x", "requireReady": True})
    assert status == 409 and reply["error"]["code"] == "not_ready"
    for _ in range(2):
        assert post(base, {"cmd": "sendText", "slot": "dead", "text": "x"})[0] == 200
    status, reply = post(base, {"cmd": "sendText", "slot": "dead", "text": "x"})
    assert status == 429 and reply["error"]["code"] == "queue_full"


def test_bad_http_requests_are_refused_clearly_and_harm_nothing(http_broker):
    base = http_broker["http"]
    assert post(base, {"cmd": "ping"}, content_type="text/plain")[0] == 415
    assert post(base, {"cmd": "ping"}, content_type=None)[0] == 415
    assert post(base, b"{" + b" " * 70_000 + b"}")[0] == 413
    request = urllib.request.Request(f"{base}/api/commands", method="GET")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "POST"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/no/such/route", timeout=10)
    assert missing.value.code == 404
    assert post(base, {"cmd": "ping"})[0] == 200, "the daemon still answers"


def test_a_request_for_another_host_name_is_refused_on_loopback(http_broker):
    # DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1 is
    # same-origin with itself, so its requests name evil.example; without tokens on loopback,
    # only loopback names are answered.
    import http.client
    host, port = http_broker["http"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", "/api/commands", body=json.dumps({"cmd": "ping"}),
                       headers={"Host": f"evil.example:{port}", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 403 and json.loads(response.read())["error"]["code"] == "unauthorized"
    connection.close()
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", "/api/commands", body=json.dumps({"cmd": "ping"}), headers={"Host": name, "Content-Type": "application/json"})
        assert connection.getresponse().status == 200, name
        connection.close()


def test_metrics_are_served_on_the_same_listener(http_broker):
    with urllib.request.urlopen(f"{http_broker['http']}/metrics", timeout=10) as response:
        page = response.read().decode()
    assert response.status == 200
    assert 'meshbus_slot_ready{slot="sim"}' in page


def test_a_replay_older_than_the_ring_is_410(start_broker):
    broker = start_broker("--replay-capacity", "5", http=True)
    base = broker["http"]
    # The handshake alone publishes more than five events (states, nodes, established).
    status, reply = post(base, {"cmd": "snapshot", "slot": "sim"})
    assert status == 200
    deadline = time.monotonic() + 20
    while post(base, {"cmd": "status", "slot": "sim"})[1]["result"]["slots"]["sim"]["lastSeq"] <= 6:
        assert time.monotonic() < deadline, "the slot published more than six events"
        time.sleep(0.1)
    status, reply = post(base, {"cmd": "replay", "slot": "sim", "sinceSeq": 0})
    assert status == 410 and reply["error"]["code"] == "gap_too_old"
