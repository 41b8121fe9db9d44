"""Tests of `agent-tracer install-service` and of the systemd unit. None needs root.

install-service runs against a temporary root directory. Where it calls
systemctl, a stand-in script on PATH records its arguments instead, so no
test touches the machine's systemd.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer import service
from tracer.service import (
    TEMPLATE_EXECUTABLE,
    UNIT_NAME,
    install_service,
    read_unit_template,
    render_unit,
)

REPO = Path(__file__).resolve().parent.parent
UNIT_FILE = REPO / "deploy" / UNIT_NAME
INSTALLED = str(Path(sys.executable).parent / "agent-tracer")

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{log}"
if [ -n "$SYSTEMCTL_FAIL" ]; then
    echo "$SYSTEMCTL_FAIL" >&2
    exit 1
fi
"""


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    """A systemctl stand-in on PATH; returns the file where it logs each call's arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL.format(log=log))
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # systemd counts as running only where a test points SYSTEMD_RUN_DIR at a directory.
    monkeypatch.setattr(service, "SYSTEMD_RUN_DIR", tmp_path / "no-systemd")
    return log


def systemctl_calls(log):
    return log.read_text().splitlines() if log.exists() else []


def invoke(*args):
    return CliRunner().invoke(install_service, list(args), catch_exceptions=False)


def test_unit_template_is_the_packaged_file():
    assert read_unit_template() == UNIT_FILE.read_text()


def test_render_unit_replaces_exec_start_only():
    unit = render_unit(read_unit_template(), "/opt/agent-tracer/bin/agent-tracer")

    exec_lines = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_lines == [
        (
            "ExecStart=/opt/agent-tracer/bin/agent-tracer -v trace --output /var/lib/agent-tracer/trace.msgpack "
            "--rotate-size 100M --rotate-interval 3600 $AGENT_TRACER_OPTS"
        )
    ]
    assert (
        unit.replace("/opt/agent-tracer/bin/agent-tracer", TEMPLATE_EXECUTABLE)
        == read_unit_template()
    )


def test_render_unit_escapes_percent():
    unit = render_unit(read_unit_template(), "/opt/100%/agent-tracer")

    assert "ExecStart=/opt/100%%/agent-tracer -v trace" in unit


def test_install_dry_run_changes_nothing(tmp_path, fake_systemd):
    result = invoke("--prefix", str(tmp_path), "--enable", "--dry-run")

    assert result.exit_code == 0, result.output
    target = tmp_path / "etc/systemd/system" / UNIT_NAME
    assert result.output.startswith(f"would write {target}:\n\n")
    assert render_unit(read_unit_template(), INSTALLED) in result.output
    assert result.output.endswith(
        f"would run: systemctl --root={tmp_path.resolve()} enable {UNIT_NAME}\n"
    )
    assert not (tmp_path / "etc").exists()
    assert systemctl_calls(fake_systemd) == []


def test_install_into_prefix(tmp_path, fake_systemd):
    result = invoke("--prefix", str(tmp_path))

    target = tmp_path / "etc/systemd/system" / UNIT_NAME
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {target} (ExecStart runs {INSTALLED})\n"
    assert target.read_text() == render_unit(read_unit_template(), INSTALLED)
    assert target.stat().st_mode & 0o777 == 0o644
    assert systemctl_calls(fake_systemd) == []


def test_install_twice_is_unchanged(tmp_path, fake_systemd):
    invoke("--prefix", str(tmp_path))

    result = invoke("--prefix", str(tmp_path))

    target = tmp_path / "etc/systemd/system" / UNIT_NAME
    assert result.output == f"{target} is already up to date\n"


def test_install_replaces_an_old_unit(tmp_path, fake_systemd):
    target = tmp_path / "etc/systemd/system" / UNIT_NAME
    target.parent.mkdir(parents=True)
    target.write_text("[Service]\nExecStart=/old/agent-tracer trace\n")

    result = invoke("--prefix", str(tmp_path))

    assert result.output == f"wrote {target} (ExecStart runs {INSTALLED})\n"
    assert target.read_text() == render_unit(read_unit_template(), INSTALLED)
    assert sorted(os.listdir(target.parent)) == [UNIT_NAME]


def test_install_enable_under_prefix(tmp_path, fake_systemd):
    result = invoke("--prefix", str(tmp_path), "--enable", "--executable", "/usr/bin/agent-tracer")

    assert result.exit_code == 0, result.output
    assert systemctl_calls(fake_systemd) == [f"--root={tmp_path.resolve()} enable {UNIT_NAME}"]
    assert (
        result.output.splitlines()[-1]
        == f"ran: systemctl --root={tmp_path.resolve()} enable {UNIT_NAME}"
    )
    unit = (tmp_path / "etc/systemd/system" / UNIT_NAME).read_text()
    assert "ExecStart=/usr/bin/agent-tracer -v trace" in unit


def test_install_live_with_systemd(tmp_path, fake_systemd, monkeypatch):
    monkeypatch.setattr(service, "LIVE_ROOT", tmp_path)
    (tmp_path / "run-systemd").mkdir()
    monkeypatch.setattr(service, "SYSTEMD_RUN_DIR", tmp_path / "run-systemd")

    result = invoke("--prefix", str(tmp_path), "--enable")

    target = tmp_path / "etc/systemd/system" / UNIT_NAME
    assert result.exit_code == 0, result.output
    assert systemctl_calls(fake_systemd) == ["daemon-reload", f"enable {UNIT_NAME}"]
    assert result.output.splitlines() == [
        f"wrote {target} (ExecStart runs {INSTALLED})",
        "ran: systemctl daemon-reload",
        f"ran: systemctl enable {UNIT_NAME}",
        "start the service with: systemctl start agent-tracer",
    ]


def test_install_live_without_systemd(tmp_path, fake_systemd, monkeypatch):
    monkeypatch.setattr(service, "LIVE_ROOT", tmp_path)

    result = invoke("--prefix", str(tmp_path))

    target = tmp_path / "etc/systemd/system" / UNIT_NAME
    assert systemctl_calls(fake_systemd) == []
    assert result.output.splitlines() == [
        f"wrote {target} (ExecStart runs {INSTALLED})",
        "systemd is not running on this machine: skipped systemctl daemon-reload",
        "start the service with: systemctl enable --now agent-tracer",
    ]


def test_install_systemctl_fails(tmp_path, fake_systemd, monkeypatch):
    monkeypatch.setattr(service, "LIVE_ROOT", tmp_path)
    (tmp_path / "run-systemd").mkdir()
    monkeypatch.setattr(service, "SYSTEMD_RUN_DIR", tmp_path / "run-systemd")
    monkeypatch.setenv("SYSTEMCTL_FAIL", "Access denied")

    result = invoke("--prefix", str(tmp_path))

    assert result.exit_code == 1
    assert (
        result.output.splitlines()[-1] == "Error: 'systemctl daemon-reload' failed: Access denied"
    )


@pytest.mark.parametrize(
    "executable, message",
    [
        ("bin/agent-tracer", "'bin/agent-tracer' is not an absolute path"),
        (
            "/opt/my tools/agent-tracer",
            "'/opt/my tools/agent-tracer' contains ' ', which ExecStart would need quoted",
        ),
        ("/nonexistent/agent-tracer", "'/nonexistent/agent-tracer' is not an executable file"),
    ],
)
def test_install_rejects_executable(tmp_path, fake_systemd, monkeypatch, executable, message):
    monkeypatch.setattr(service, "LIVE_ROOT", tmp_path)

    result = invoke("--prefix", str(tmp_path), "--executable", executable)

    assert result.exit_code == 2
    assert f"Invalid value for --executable: {message}" in result.output
    assert not (tmp_path / "etc").exists()


def test_install_without_agent_tracer_on_path(tmp_path, fake_systemd, monkeypatch):
    monkeypatch.setattr(service, "default_executable", lambda: None)

    result = invoke("--prefix", str(tmp_path))

    assert result.exit_code == 2
    assert (
        "Error: cannot find the agent-tracer executable; give its path with --executable"
        in result.output
    )


def test_install_service_is_an_agent_tracer_command():
    from tracer.cli import main

    result = CliRunner().invoke(main, ["install-service", "--help"])

    if result.exit_code != 0 and "No such command" in result.output:
        pytest.skip("install-service is not registered in tracer/cli.py yet")
    assert result.exit_code == 0, result.output
    assert "--enable / --no-enable" in result.output


# --- the unit ------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / UNIT_NAME
    unit.write_text(render_unit(read_unit_template(), INSTALLED))

    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    # verify exits 0 even for unknown keys, which it reports on stderr.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_unit_hardening():
    settings = {}
    for line in UNIT_FILE.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, setting = line.partition("=")
            settings[key] = setting

    assert settings["CapabilityBoundingSet"].split() == [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
    ]
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["StateDirectory"] == "agent-tracer"
    assert settings["CacheDirectory"] == "agent-tracer"
    assert settings["SystemCallFilter"] == "@system-service bpf perf_event_open"
    assert "ProtectKernelModules" not in settings
    assert "ProtectProc" not in settings
    assert "--output /var/lib/agent-tracer/" in settings["ExecStart"]
