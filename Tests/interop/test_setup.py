"""scripts/setup, which the README's two commands (scripts/run, scripts/test) run first: the
Debian packages it decides to install for a given machine, probed through a PATH of stubs."""
import os
import subprocess

import pytest

from conftest import ROOT

SETUP = os.path.join(ROOT, "scripts", "setup")


PACKAGING = ["dpkg-shlibdeps", "lintian", "strip", "readelf"]


def machine(tmp_path, *present, zmq=False, venv=False):
    """A PATH holding only stubs for the `present` commands; pkg-config knows libzmq if `zmq`,
    python3 can make a venv if `venv`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {name: "exit 0" for name in present}
    if "pkg-config" in present:
        scripts["pkg-config"] = "exit 0" if zmq else "exit 1"
    if "python3" in present:
        scripts["python3"] = "exit 0" if venv else "exit 1"
    for name, body in scripts.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    return str(bin_dir)


def decide(path, purpose):
    result = subprocess.run(["/bin/bash", SETUP, purpose, "--dry-run"], env={"PATH": path, "MESHBUS_SETUP_SBIN": "/nonexistent"},
                            capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout.strip(), result.stderr.strip()


@pytest.mark.parametrize("purpose, present, zmq, expected", [
    ("run", ["swift"], False, "would install: pkg-config libzmq3-dev"),
    ("run", ["swift", "pkg-config"], False, "would install: libzmq3-dev"),
    ("run", ["swift", "pkg-config"], True, "nothing to install"),
    ("package", ["swift", "pkg-config", "strip"], True, "would install: dpkg-dev lintian binutils"),
    ("package", ["swift", "pkg-config", "dpkg-shlibdeps", "lintian", "strip", "readelf"], True, "nothing to install"),
    ("test", ["swift"], False,
     "would install: pkg-config libzmq3-dev dpkg-dev lintian binutils golang-go mosquitto chromium dbus-daemon openssl python3-venv"),
    ("test", ["swift", "pkg-config", *PACKAGING, "go", "mosquitto", "chromium", "dbus-daemon", "openssl", "python3"], True, "nothing to install"),
])
def test_setup_installs_only_what_the_command_needs_and_is_missing(tmp_path, purpose, present, zmq, expected):
    code, out, err = decide(machine(tmp_path, *present, zmq=zmq, venv=True), purpose)
    assert (code, out) == (0, expected), err


def test_a_python_without_venv_needs_python3_venv(tmp_path):
    path = machine(tmp_path, "swift", "pkg-config", *PACKAGING, "go", "mosquitto", "chromium", "dbus-daemon", "openssl", "python3", zmq=True, venv=False)
    assert decide(path, "test")[1] == "would install: python3-venv"


def test_without_swift_setup_says_where_to_get_it(tmp_path):
    code, out, err = decide(machine(tmp_path, "pkg-config", zmq=True), "run")
    assert code == 1 and "Swift 6 is not installed" in err


def test_an_unknown_purpose_is_refused(tmp_path):
    code, _, err = decide(machine(tmp_path, "swift"), "deploy")
    assert code == 2 and "usage: scripts/setup run|package|test" in err
