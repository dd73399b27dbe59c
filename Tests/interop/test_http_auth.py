"""Bearer tokens on the HTTP listener (design.md §8): with security.tokens every request needs
one (header, or ?token= where a browser cannot set headers); `read` gets the page, events and
read-only commands, `send` also what reaches a radio. A listener beyond loopback is refused
without tokens (or insecure). Tests bind to 127.0.0.1; beyond-loopback binds are checked with
`meshbus check`, which binds nothing."""
import asyncio
import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import BINARY, check_config

READ = "read-token-0123456789abcdef"
SEND = "send-token-0123456789abcdef"


def request(url, body=None, token=None, method=None):
    """(status, headers, body bytes) of one request; a token goes in the Authorization header."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    if data:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers, response.read(64 * 1024) if "events" not in url else b""
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def code_of(body):
    return json.loads(body)["error"]["code"]


@pytest.fixture
def token_broker(start_broker, tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text(
        "slots:\n  - {name: sim, simulator: {nodes: 2}}\n  - {name: lent, webserial: {}}\n"
        f"security:\n  tokens:\n    read: [{READ}]\n    send: [{SEND}]\n"
    )
    return start_broker("--config", str(path), http=True)


def test_no_or_unknown_token_is_401_everywhere(token_broker):
    base = token_broker["http"]
    for path in ["/", "/metrics", "/events", "/ws", "/no/such/route"]:
        status, headers, body = request(base + path)
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="meshbus"', path
        assert code_of(body) == "unauthorized"
    assert request(base + "/status.js")[0] == 200, "the page's script holds no data; a browser loads it without the token"
    status, _, body = request(base + "/api/commands", {"cmd": "ping"})
    assert status == 401 and "needs a token" in json.loads(body)["error"]["message"]
    status, _, body = request(base + "/api/commands", {"cmd": "ping"}, token="not-a-known-token-at-all")
    assert status == 401 and json.loads(body)["error"]["message"] == "unknown token"
    assert request(base + "/api/commands", {"cmd": "ping"}, token=READ[:-1])[0] == 401, "a prefix of a token is not the token"


def test_read_reads_and_only_send_reaches_the_radio(token_broker):
    base = token_broker["http"]
    for token in (READ, SEND):
        status, _, body = request(base + "/api/commands", {"cmd": "status"}, token=token)
        assert status == 200 and json.loads(body)["result"]["slots"]["sim"]
        assert request(base + "/", token=token)[0] == 200
        assert request(base + "/metrics", token=token)[0] == 200
    send = {"cmd": "sendText", "slot": "sim", "text": "token test"}
    status, _, body = request(base + "/api/commands", send, token=READ)
    assert status == 403 and code_of(body) == "unauthorized"
    for cmd in ({"cmd": "reconnect", "slot": "sim"}, {"cmd": "disconnectForRestart", "slot": "sim"}):
        assert request(base + "/api/commands", cmd, token=READ)[0] == 403, cmd
    status, _, body = request(base + "/api/commands", send, token=SEND)
    assert status == 200 and json.loads(body)["result"]["status"] == "queued"
    # Lending a radio through the WebSerial page transmits on the mesh: send only.
    status, _, body = request(base + "/webserial/lent", token=READ)
    assert status == 403 and json.loads(body)["error"]["message"] == "lending a radio needs a send token"
    assert request(base + "/webserial/lent", token=SEND)[0] == 200

    async def relay(token):
        async with connect(base.replace("http://", "ws://") + f"/webserial/lent/relay?token={token}") as socket:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    await socket.recv()
        return closed.value.rcvd
    refused = asyncio.run(relay(READ))
    assert refused.code == 1008 and refused.reason == "unauthorized: lending a radio needs a send token"


def test_a_browser_shows_its_token_in_the_query(token_broker):
    base = token_broker["http"]
    assert request(f"{base}/?token={READ}")[0] == 200
    assert request(f"{base}/metrics?token={SEND}")[0] == 200
    assert request(f"{base}/events?prefix=meshtastic.connection&token={READ}")[0] == 200
    assert request(f"{base}/metrics?token=wrong-token-0123456789")[0] == 401
    ws = base.replace("http://", "ws://") + "/ws"

    async def run():
        # A refused upgrade could only be a bare 400: the socket opens and closes at once with
        # 1008 and the reason, which a browser's WebSocket can read.
        for url, reason in [(ws, "unauthorized: this listener needs a token"), (f"{ws}?token=wrong-token-0123456789", "unauthorized: unknown token")]:
            async with connect(url) as socket:
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(10):
                        await socket.recv()
            assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason.startswith(reason), closed.value
        async with connect(f"{ws}?token={READ}") as socket:
            await socket.send(json.dumps({"subscribe": ["meshtastic."]}))
            async with asyncio.timeout(10):
                assert json.loads(await socket.recv()) == {"subscribed": ["meshtastic."]}
    asyncio.run(run())


def test_an_http_listener_beyond_loopback_needs_tokens_or_insecure(tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text("http: 192.0.2.1:7712\nslots: []\n")
    assert check_config(path).stderr.strip() == (
        f"{path}:1: http: 192.0.2.1:7712 is reachable from other machines; use a loopback address, "
        "configure security.tokens, or set security.insecure: true")
    path.write_text(f"http: 192.0.2.1:7712\nslots: []\nsecurity: {{tokens: {{read: [{READ}]}}}}\n")
    result = check_config(path)
    assert result.returncode == 0 and "http tokens: 1 read, 0 send" in result.stdout
    refused = subprocess.run([BINARY, "run", "--http", "192.0.2.1:7712"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "reachable from other machines" in refused.stderr


def test_weak_tokens_and_bad_token_files_are_refused_by_line(tmp_path):
    path = tmp_path / "meshbus.yaml"
    path.write_text("slots: []\nsecurity:\n  tokens:\n    send: [short]\n")
    assert "security.tokens.send[0]: a token needs at least 16 characters" in check_config(path).stderr
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# who may do what\nread {READ}\n\nwrite {SEND}\nsend {SEND} extra\n")
    path.write_text("slots: []\nsecurity: {tokenFile: tokens}\n")
    problems = check_config(path).stderr
    assert f"{tokens.name} line 4: expected 'read TOKEN' or 'send TOKEN'" in problems
    assert f"{tokens.name} line 5: expected 'read TOKEN' or 'send TOKEN'" in problems
    tokens.write_text(f"read {READ}\nsend {SEND}\n")
    result = check_config(path)
    assert result.returncode == 0 and "http tokens: 1 read, 1 send" in result.stdout
    path.write_text(f"slots: []\nsecurity: {{tokenFile: tokens, tokens: {{read: [{READ}]}}}}\n")
    assert "give tokens or tokenFile, not both" in check_config(path).stderr


def test_keygen_prints_a_token_the_configuration_takes(tmp_path):
    printed = subprocess.run([BINARY, "keygen", "--token"], capture_output=True, text=True, timeout=30).stdout
    token = re.fullmatch(r"token: ([0-9a-f]{48})\n", printed).group(1)
    path = tmp_path / "meshbus.yaml"
    path.write_text(f"slots: []\nsecurity: {{tokens: {{send: [{token}]}}}}\n")
    assert check_config(path).returncode == 0
