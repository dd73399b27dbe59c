"""The MQTT bridge over TLS to a mosquitto with a TLS listener, with certificates this test makes
with openssl: a CA, the broker's certificate for localhost, a client certificate, and a second
CA that signed nothing the broker shows."""
import subprocess

import pytest

from conftest import free_port
from test_mqtt_bridge import PREFIX, SLOT, Bridge, Mosquitto, Recorder, connected_line, lost_line, node_states


def openssl(directory, *args):
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def issue(directory, name, ca, subject, extensions):
    openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    (directory / f"{name}.ext").write_text(extensions)
    openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture
def certificates(tmp_path):
    directory = tmp_path / "pki"
    directory.mkdir()
    for ca in ("ca", "other-ca"):
        openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=MeshBus test {ca}")
    # A name only: SwiftNIO's TLS also accepts a certificate whose IP address entry matches the
    # address connected to, whatever server name is expected.
    issue(directory, "broker", "ca", "/CN=localhost", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    issue(directory, "bridge", "ca", "/CN=meshbus-bridge", "extendedKeyUsage=clientAuth\n")
    return directory


@pytest.fixture
def tls_mosquitto(tmp_path, certificates):
    """mosquitto with a plain listener (for the test's own subscriber) and a TLS listener that
    requires a client certificate signed by the CA."""
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    tls_port = free_port()
    broker = Mosquitto(directory, extra=(
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {certificates / 'ca.crt'}\n"
        f"certfile {certificates / 'broker.crt'}\n"
        f"keyfile {certificates / 'broker.key'}\n"
        "require_certificate true\n"))
    broker.tls_port = tls_port
    broker.start()
    yield broker
    broker.stop()


def bridge_args(endpoints, broker, certificates, *tls):
    return ["--events", endpoints["events"], "--commands", endpoints["commands"], "--mqtt", f"localhost:{broker.tls_port}",
            "--keep-alive", "2s", *tls]


def test_tls_with_the_right_ca_and_a_client_certificate_connects_and_survives_a_restart(
        tmp_path, start_broker, tls_mosquitto, certificates):
    endpoints = start_broker()
    recorder = Recorder(tls_mosquitto.port, (f"{PREFIX}/#",))
    bridge = Bridge(bridge_args(endpoints, tls_mosquitto, certificates, "--ca-file", str(certificates / "ca.crt"),
                                "--cert-file", str(certificates / "bridge.crt"), "--key-file", str(certificates / "bridge.key")),
                    tmp_path / "bridge.stderr")
    try:
        bridge.wait_line(rf"mqtt bridge connected to localhost:{tls_mosquitto.tls_port}")
        recorder.wait_for(lambda ms: len(node_states(ms)) >= 1, what="node states published over TLS")
        recorder.close()
        tls_mosquitto.stop()
        lost, _ = bridge.wait_line(rf"mqtt bridge lost localhost:{tls_mosquitto.tls_port}: .+")
        tls_mosquitto.start()
        bridge.wait_line(rf"mqtt bridge connected to localhost:{tls_mosquitto.tls_port}", start=lost + 1)
        recorder = Recorder(tls_mosquitto.port, (f"{PREFIX}/#",))
        recorder.wait_for(lambda ms: any(m.topic == f"{PREFIX}/status" and m.payload == b"online" for m in ms), what="online again after the restart")
    finally:
        recorder.close()
        assert bridge.stop() == 0, bridge.stderr()


@pytest.mark.parametrize("what, tls, expected", [
    ("a CA that did not sign the broker's certificate", ["--ca-file", "other-ca.crt", "--cert-file", "bridge.crt", "--key-file", "bridge.key"],
     "TLS: the broker's certificate is not trusted (check the CA file and the server name)"),
    ("a server name the certificate does not carry", ["--ca-file", "ca.crt", "--cert-file", "bridge.crt", "--key-file", "bridge.key",
                                                      "--server-name", "mqtt.elsewhere.test"],
     "TLS: the broker's certificate does not carry the expected server name"),
    ("no client certificate where the broker requires one", ["--ca-file", "ca.crt"], "TLS"),
])
def test_tls_refusals_are_reported_in_words(tmp_path, start_broker, tls_mosquitto, certificates, what, tls, expected):
    endpoints = start_broker()
    args = [str(certificates / a) if a.endswith((".crt", ".key")) else a for a in tls]
    bridge = Bridge(bridge_args(endpoints, tls_mosquitto, certificates, *args), tmp_path / "bridge.stderr")
    try:
        _, match = bridge.wait_line(rf"mqtt bridge lost localhost:{tls_mosquitto.tls_port}: (.+)")
        assert expected in match.group(1), (what, match.group(1))
        assert not [line for line in bridge.lines if line.startswith("mqtt bridge connected")], what
    finally:
        assert bridge.stop() == 0, bridge.stderr()


def test_a_ca_file_that_cannot_be_read_stops_the_bridge_at_start(tmp_path, start_broker, tls_mosquitto, certificates):
    endpoints = start_broker()
    result = subprocess.run(Bridge.command(bridge_args(endpoints, tls_mosquitto, certificates, "--ca-file", str(tmp_path / "missing.crt"))),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "cannot read the CA file" in result.stderr
