"""Root tests: start-up with a busy agent, and the environments the tracer must survive."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livetracer import TITLE_PREFIX, LiveTracer, Workload, role_summary, settled, wait_until
from test_root_attribution import unique_role

pytestmark = pytest.mark.root

SPAWN_LOOP = 'while :; do /bin/true & echo $! >> "$1"; wait; done'


def test_startup_with_busy_agent(tmp_path):
    role = unique_role("startup")
    pids_file = tmp_path / "children"
    pids_file.touch()
    agent = subprocess.Popen([f"{TITLE_PREFIX} {role}", "-c", SPAWN_LOOP, "sh", str(pids_file)], executable="/bin/sh")
    wait_until(lambda: len(pids_file.read_text().split()) > 100, 30, "the agent's first 100 spawns")

    tracer = LiveTracer(tmp_path / "startup.msgpack")
    try:
        tracer.wait_ready()
        ready_spawns = len(pids_file.read_text().split())
        wait_until(lambda: len(pids_file.read_text().split()) > ready_spawns + 300, 60, "300 spawns after start-up")
    finally:
        agent.kill()
        agent.wait()
        time.sleep(0.5)
        code, _ = tracer.stop()
    assert code == 0

    records = tracer.read()
    root = [r for r in records if r.get("type") == "root" and r["pid"] == agent.pid]
    assert len(root) == 1
    assert root[0]["role"] == role
    assert root[0]["reason"] == "seed"

    children = [int(pid) for pid in pids_file.read_text().split()]
    forked = {r["pid"] for r in records if r.get("type") == "fork" and r["ppid"] == agent.pid and r["role"] == role}
    execed = {r["pid"] for r in records if r.get("type") == "exec" and r["role"] == role}
    first = next(index for index, pid in enumerate(children) if pid in forked)
    after_start = children[first:]

    missing_forks = [pid for pid in after_start if pid not in forked]
    missing_execs = [pid for pid in after_start[:-1] if pid not in execed]
    assert len(after_start) > 300
    assert missing_forks == []
    assert missing_execs == []
    assert first <= ready_spawns
    assert not [r for r in records if r.get("type") in ("fork", "exec", "exit") and r.get("role") != role]


def test_without_syscall_tracepoints(tmp_path):
    env = dict(os.environ, AGENT_TRACER_HIDE_TRACEPOINTS="syscalls")
    tracer = LiveTracer(tmp_path / "nosyscalls.msgpack", env=env)
    try:
        tracer.wait_ready()
        script = tmp_path / "no-shebang"
        script.write_text("echo no interpreter line\n")
        script.chmod(0o755)
        role = unique_role("nosyscalls")
        workload = Workload(role, "cases.py", "exec_kinds", script)
        workload.run(tracer)
        summary = role_summary(settled(tracer, workload.pid, role), role)
    finally:
        code, _ = tracer.stop()

    assert code == 0
    assert summary["process_forks"] == 4
    assert summary["execs"] == 2
    assert summary["failed_execs"] == 0
    assert sum(summary["syscalls"].values()) > 0
    warnings = [line for line in tracer.stderr_text().splitlines() if "CONFIG_FTRACE_SYSCALLS" in line]
    assert len(warnings) == 1
    header = tracer.read()[0]
    assert header["failed_execs"] is False


def test_missing_headers_fail_fast(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "BCC_KERNEL_SOURCE"}
    env.update(
        AGENT_TRACER_MODULES_ROOT=str(empty),
        AGENT_TRACER_HEADERS_ROOT=str(empty),
        AGENT_TRACER_KHEADERS=str(empty / "kheaders.tar.xz"),
    )
    output = tmp_path / "never.msgpack"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tracer", "trace", "--duration", "5", "-o", str(output)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 69
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: no kernel headers found")
    assert "linux-headers-" in lines[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert elapsed < 30


def test_not_root_gets_one_line(tmp_path):
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop privileges"
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "tracer", "trace", "--duration", "1"],
        capture_output=True, text=True, timeout=60,
        cwd="/", env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)),
    )
    assert result.returncode == 77, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: agent-tracer must run as root to load BPF programs; run it with sudo"
    ]


def test_doctor_all_ready():
    result = subprocess.run([sys.executable, "-m", "tracer", "doctor"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {line[:28].strip(): line[29:37].strip() for line in result.stdout.splitlines()}
    assert statuses["compile, load, attach"] == "ready"
    assert statuses["task:task_newtask"] == "ready"
    assert "MISSING" not in statuses.values()


def test_check_dry_run():
    result = subprocess.run([sys.executable, "-m", "tracer", "check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: BPF program compiled, loaded and attached")


def test_perf_buffer_fallback_counts_exactly(tmp_path):
    env = dict(os.environ, AGENT_TRACER_HIDE_TRACEPOINTS="ringbuf")
    tracer = LiveTracer(tmp_path / "perfbuf.msgpack", env=env)
    try:
        tracer.wait_ready()
        role = unique_role("perfbuf")
        workload = Workload(role, "cases.py", "fork_kinds")
        workload.run(tracer)
        summary = role_summary(settled(tracer, workload.pid, role), role)
    finally:
        code, _ = tracer.stop()

    assert code == 0
    assert summary["process_forks"] == 5
    assert summary["thread_creations"] == 4
    assert summary["execs"] == 2
    assert tracer.read()[0]["options"]["ring_buffer"] is False
    assert "using a perf buffer" in tracer.stderr_text()
