"""The live status page (design.md §8) in a real headless Chromium (Debian's `chromium`,
driven over the DevTools protocol): it shows the slot ready and the simulator's nodes, turns
red on a link drop and back, sends a text that reaches the simulator and shows it acked, and
recovers by itself after the daemon restarts. A screenshot is left under
$MESHBUS_ARTIFACTS (default .build/test-artifacts/)."""
import json
import os

import pytest

import chromium
from conftest import ROOT, _stop, command, control, free_port

ARTIFACTS = os.environ.get("MESHBUS_ARTIFACTS", os.path.join(ROOT, ".build", "test-artifacts"))


def slot_js(attribute):
    return f'document.querySelector(\'section[data-slot="radio"]\')?.dataset.{attribute}'


@pytest.fixture
def browser():
    assert chromium.available(), "the browser tests need Debian's chromium (scripts/test installs it)"
    with chromium.Chromium() as page:
        yield page
        exceptions = [line for line in page.console if line.startswith("exception")]
        assert not exceptions, f"the page threw: {exceptions}"


def test_the_page_follows_the_radio_sends_and_survives_a_restart(start_broker, start_controlled_simulator, context, browser):
    sim = start_controlled_simulator()
    address = f"127.0.0.1:{free_port()}"
    first = start_broker("--tcp", f"radio=127.0.0.1:{sim['port']}", http=address)
    browser.navigate(f"http://{address}/")

    browser.wait_for(f"{slot_js('state')} === 'ready'", "the slot shown as ready")
    assert browser.evaluate(slot_js("health")) == "up"
    ping = command(context, first["commands"], {"cmd": "ping"})["result"]
    assert browser.evaluate("document.getElementById('broker').textContent") == ping["broker"]
    nodes = command(context, first["commands"], {"cmd": "nodes", "slot": "radio"})["result"]["nodes"]
    shown = browser.wait_for(
        f"(() => {{ const ids = [...document.querySelectorAll('section[data-slot=\"radio\"] tr[data-node]')].map(r => r.dataset.node);"
        f" return ids.length === {len(nodes)} && ids; }})()",
        f"the {len(nodes)} nodes of the simulator in the table",
    )
    assert sorted(shown) == sorted(nodes), "the table lists the broker's node DB"

    # A link drop: red, then green again, and the timeline keeps the red stretch.
    control(context, sim["control"], {"fault": "drop"})
    browser.wait_for(f"{slot_js('health')} === 'down'", "the slot turned red after the drop")
    browser.wait_for(f"{slot_js('state')} === 'ready'", "the slot back to ready after the drop", timeout=30)
    assert browser.evaluate(slot_js("health")) == "up"
    assert browser.evaluate("document.querySelectorAll('section[data-slot=\"radio\"] .timeline .down').length") >= 1
    browser.wait_for("document.querySelector('section[data-slot=\"radio\"] .reconnects').textContent === '1'", "the reconnect counted")

    # A text typed into the send box: the simulator gets it, the page shows the lifecycle to acked.
    text = "hello from the status page"
    browser.type_into("#send-text", text)
    browser.click("#send-form button")
    row = f"[...document.querySelectorAll('#sends tr[data-packet-id]')].find(r => r.children[3].textContent === {json.dumps(text)})"
    browser.wait_for(f"{row}?.dataset.status === 'acked'", "the send shown as acked")
    assert browser.evaluate(f"{row}.children[4].textContent") == "queued → sent → acked"
    assert text in control(context, sim["control"], {"fault": "clear"})["texts"], "the text reached the simulator"
    browser.wait_for(
        "[...document.querySelectorAll('#events tr')].some(r => r.dataset.topic === 'meshtastic.send.status' && r.textContent.includes('acked'))",
        "the acked status among the last events",
    )
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = browser.screenshot(os.path.join(ARTIFACTS, "status-page.png"))
    print(f"status page screenshot: {shot}")
    assert os.path.getsize(shot) > 10_000

    # The daemon restarts on the same address: the page notices, then reads the new broker.
    _stop(first["process"])
    browser.wait_for("document.getElementById('feed').dataset.feed === 'reconnecting'", "the page noticing the daemon gone")
    second = start_broker("--tcp", f"radio=127.0.0.1:{sim['port']}", http=address)
    fresh = command(context, second["commands"], {"cmd": "ping"})["result"]["broker"]
    assert fresh != ping["broker"]
    browser.wait_for(f"document.getElementById('broker').textContent === {json.dumps(fresh)}", "the page showing the new broker id", timeout=30)
    browser.wait_for(f"{slot_js('state')} === 'ready'", "the slot ready under the new broker", timeout=30)
    browser.wait_for("document.getElementById('feed').dataset.feed === 'live'", "the page's feed live again")
    assert browser.evaluate("document.querySelectorAll('section[data-slot]').length") == 1, "the old view was replaced, not doubled"


def test_with_tokens_the_page_works_by_its_query_token_and_a_read_token_cannot_send(start_broker, tmp_path, browser):
    read, send = "page-read-0123456789abcdef", "page-send-0123456789abcdef"
    path = tmp_path / "meshbus.yaml"
    path.write_text(f"slots:\n  - {{name: radio, simulator: {{nodes: 3}}}}\nsecurity: {{tokens: {{read: [{read}], send: [{send}]}}}}\n")
    broker = start_broker("--config", str(path), http=True)
    browser.navigate(f"{broker['http']}/?token={read}")
    browser.wait_for(f"{slot_js('state')} === 'ready'", "the slot ready on a page with a read token")
    browser.wait_for("document.getElementById('feed').dataset.feed === 'live'", "the event feed live with the query token")
    browser.type_into("#send-text", "not allowed")
    browser.click("#send-form button")
    browser.wait_for("document.getElementById('send-error').textContent.startsWith('unauthorized')", "the send refused for the read role")
    assert browser.evaluate("document.querySelectorAll('#sends tr[data-packet-id]').length") == 0
    browser.navigate(f"{broker['http']}/?token={send}")
    browser.wait_for(f"{slot_js('state')} === 'ready'", "the slot ready on a page with a send token")
    browser.type_into("#send-text", "allowed")
    browser.click("#send-form button")
    browser.wait_for("document.querySelector('#sends tr[data-packet-id]')?.dataset.status === 'sent'", "the send written to the radio with the send token")
