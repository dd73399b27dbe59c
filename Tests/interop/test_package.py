"""The Debian package scripts/package builds (MESHBUS_DEB; scripts/test builds it): what it
holds and depends on, its binary unpacked with `dpkg-deb -x` running the shipped config and a
radio served by its own simulator, and the maintainer scripts' decisions through stub commands."""
import os
import re
import subprocess

import pytest

from conftest import ROOT, _stop, check_config, collect, command, free_port, subscriber, wait_until

DEB = os.environ.get("MESHBUS_DEB")
pytestmark = pytest.mark.skipif(not DEB, reason="no package given: scripts/test runs this file after scripts/package --debug, with MESHBUS_DEB set")


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb", *args], check=True, capture_output=True, text=True, timeout=120).stdout


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    """The package's files, as `dpkg-deb -x` lays them out."""
    root = tmp_path_factory.mktemp("unpacked")
    dpkg_deb("-x", DEB, str(root))
    return root


def field(name):
    return dpkg_deb("-f", DEB, name).strip()


def test_the_package_depends_on_debian_libraries_only(unpacked):
    depends = [d.strip().split(" ")[0] for d in field("Depends").split(",")]
    assert field("Package") == "meshbus"
    assert {"adduser", "libc6", "libzmq5"} <= set(depends), depends
    assert not [d for d in depends if "swift" in d or "icu" in d], depends
    version = subprocess.run([str(unpacked / "usr/bin/meshbus"), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    assert os.path.basename(DEB) == f"meshbus_{version}_{field('Architecture')}.deb"
    assert field("Version") == version


def test_the_binary_carries_its_swift_runtime(unpacked):
    dynamic = subprocess.run(["readelf", "-d", str(unpacked / "usr/bin/meshbus")], check=True, capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", dynamic)
    assert "libzmq.so.5" in needed
    assert not [lib for lib in needed if "swift" in lib or "Foundation" in lib or "dispatch" in lib], needed
    # SwiftPM links every executable with a RUNPATH of $ORIGIN; nothing may point into a toolchain.
    assert re.findall(r"R(?:UN)?PATH\)\s+Library r(?:un)?path: \[(.*)\]", dynamic) in ([], ["$ORIGIN"]), dynamic


def test_the_package_holds_units_config_docs_and_a_conffile(unpacked):
    listing = dpkg_deb("-c", DEB)
    for path in ("./usr/bin/meshbus", "./usr/lib/systemd/system/meshbus.service", "./usr/lib/systemd/system/meshbus-mqtt.service",
                 "./etc/meshbus/meshbus.yaml", "./usr/share/doc/meshbus/copyright", "./usr/share/doc/meshbus/changelog.gz",
                 "./usr/share/doc/meshbus/NOTICE.gz", "./usr/share/man/man1/meshbus.1.gz"):
        assert re.search(rf"root/root .* {re.escape(path)}$", listing, re.M), path
    assert dpkg_deb("-I", DEB, "conffiles").split() == ["/etc/meshbus/meshbus.yaml"]
    for unit, command_line in (("meshbus.service", "/usr/bin/meshbus run --config /etc/meshbus/meshbus.yaml"),
                               ("meshbus-mqtt.service", "/usr/bin/meshbus mqtt --config /etc/meshbus/meshbus.yaml")):
        text = (unpacked / "usr/lib/systemd/system" / unit).read_text()
        assert f"ExecStart={command_line}\n" in text and "User=meshbus\n" in text
    assert "StateDirectory=meshbus\n" in (unpacked / "usr/lib/systemd/system/meshbus.service").read_text()


def test_the_shipped_config_checks_clean(unpacked):
    result = check_config(unpacked / "etc/meshbus/meshbus.yaml", binary=unpacked / "usr/bin/meshbus")
    assert result.returncode == 0, result.stdout + result.stderr


def start_unpacked(unpacked, *args, until):
    """The unpacked binary; returns (process, the lines it printed up to one starting with `until`)."""
    proc = subprocess.Popen([str(unpacked / "usr/bin/meshbus"), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith(until):
            return proc, lines
    proc.kill()
    raise AssertionError(f"meshbus {args} exited before printing '{until}': {lines}")


def test_the_unpacked_binary_runs_the_shipped_config_then_serves_a_radio_added_to_it(unpacked, context, tmp_path):
    config = tmp_path / "meshbus.yaml"
    shipped_text = (unpacked / "etc/meshbus/meshbus.yaml").read_text()
    assert "\nstateDirectory: /var/lib/meshbus\n" in shipped_text
    config.write_text(shipped_text.replace("stateDirectory: /var/lib/meshbus", f"stateDirectory: {tmp_path / 'state'}"))
    sim, sim_lines = start_unpacked(unpacked, "sim", "--port", "0", "--nodes", "3", "--traffic", "600", until="simulator listening")
    broker = None
    try:
        sim_port = re.search(r"simulator listening on [\d.]+:(\d+)", "\n".join(sim_lines)).group(1)
        events, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        broker, lines = start_unpacked(unpacked, "run", "--config", str(config), "--events", events, "--commands", commands,
                                       "--metrics", "127.0.0.1:0", "--http", "127.0.0.1:0", until="slots:")
        assert lines[-1] == f"slots: none yet; add radios under slots: in {config} (it is watched, no restart needed)"
        assert command(context, commands, {"cmd": "status"})["result"]["slots"] == {}

        sub = subscriber(context, events, b"meshtastic.")
        shipped = config.read_text()
        edited = tmp_path / "edited.yaml"
        edited.write_text(shipped.replace("slots: []\n", f"slots:\n  - {{name: radio, tcp: 127.0.0.1:{sim_port}}}\n"))
        os.replace(edited, config)
        wait_until(lambda: command(context, commands, {"cmd": "status"})["result"]["slots"].get("radio", {}).get("ready"),
                   what="slot radio added by the reload and ready")
        # The slot's own history says it connected (the subscriber may have joined after that event).
        held = command(context, commands, {"cmd": "replay", "slot": "radio", "sinceSeq": 0})["result"]["events"]
        assert any(event["topic"] == "meshtastic.connection.established/radio" for event in held)
        reply = command(context, commands, {"cmd": "sendText", "slot": "radio", "text": "from the package", "wantAck": True})
        assert reply["ok"], reply
        packet_id = reply["result"]["packetId"]
        statuses = collect(sub, lambda seen: any(e.get("packetId") == packet_id and e.get("status") == "acked" for t, e, _ in seen
                                                  if t == "meshtastic.send.status/radio"))
        assert [e["status"] for t, e, _ in statuses if t == "meshtastic.send.status/radio" and e.get("packetId") == packet_id][-1] == "acked"
        sub.close()
    finally:
        for proc in (broker, sim):
            if proc:
                _stop(proc)
    assert broker.returncode == 0


# The maintainer scripts, run with a PATH of stubs that log their arguments.

def run_script(tmp_path, script, *args, bluetooth=False, overridden=False, enabled=False):
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "calls"
    for name in ("adduser", "getent", "dpkg-statoverride", "deb-systemd-helper", "deb-systemd-invoke", "systemctl", "rm"):
        body = f'echo "{name} $*" >> {log}\n'
        if name == "dpkg-statoverride":
            body += f'[ "$1" = --list ] && exit {0 if overridden else 1}\n'
        if name == "deb-systemd-helper":
            body += f'[ "$2" = was-enabled ] && exit {0 if enabled else 1}\n'
        if name == "getent":
            body += f"exit {0 if bluetooth else 2}\n"
        (stubs / name).write_text(f"#!/bin/sh\n{body}exit 0\n")
        (stubs / name).chmod(0o755)
    subprocess.run(["/bin/sh", os.path.join(ROOT, "deploy/debian", script), *args], env={"PATH": str(stubs)},
                   check=True, timeout=30)
    return log.read_text().splitlines() if log.exists() else []


def test_postinst_on_first_install_makes_the_user_and_locks_the_config_directory(tmp_path):
    calls = run_script(tmp_path, "postinst", "configure")
    assert calls[:2] == ["adduser --system --group --no-create-home --home /nonexistent --quiet meshbus",
                         "adduser --quiet meshbus dialout"]
    assert "adduser --quiet meshbus bluetooth" not in calls
    assert "dpkg-statoverride --update --add root meshbus 0750 /etc/meshbus" in calls
    assert "deb-systemd-helper update-state meshbus.service" in calls
    assert "deb-systemd-helper enable meshbus.service" not in calls
    assert not [c for c in calls if "enable meshbus-mqtt" in c], "the bridge waits for its mqtt section"


def test_postinst_joins_bluetooth_when_bluez_made_the_group_and_keeps_an_admins_override(tmp_path):
    calls = run_script(tmp_path, "postinst", "configure", "0.1.0", bluetooth=True, overridden=True, enabled=True)
    assert "adduser --quiet meshbus bluetooth" in calls
    assert not [c for c in calls if c.startswith("dpkg-statoverride --update")]
    assert "deb-systemd-helper enable meshbus.service" in calls


def test_postrm_purge_forgets_units_the_override_and_the_journal_but_keeps_the_user(tmp_path):
    calls = run_script(tmp_path, "postrm", "purge", overridden=True)
    assert "dpkg-statoverride --remove /etc/meshbus" in calls
    assert "rm -rf /var/lib/meshbus" in calls
    assert "rm -rf /var/lib/meshbus" not in run_script(tmp_path / "remove", "postrm", "remove")
    assert not [c for c in calls if c.startswith(("deluser", "userdel"))]
