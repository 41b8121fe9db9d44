"""Root tests: how `trace` stops (signals, SIGKILL) and how it refuses to start.

The BPF programs and maps of one tracer are identified by the ids in its
/proc/PID/fdinfo, so that other tracers on the machine do not matter, and
bpftool shows whether they are still loaded.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from livetracer import LiveTracer, Workload, role_summary, settled
from test_root_attribution import unique_role

from tracer.stream import read_stream

pytestmark = pytest.mark.root

REPO = Path(__file__).parent.parent

# The programs bpf/tracer.c loads on x86_64 kernels with raw tracepoints:
# sys_enter also stashes exec attempts, and only the syscalls exit
# tracepoints see their outcome.
TRACER_PROGRAMS = {
    "sys_enter",
    "tracepoint__task__task_newtask",
    "tracepoint__sched__sched_process_exec",
    "tracepoint__sched__sched_process_exit",
    "tracepoint__sched__sched_switch",
    "tracepoint__syscalls__sys_exit_execve",
    "tracepoint__syscalls__sys_exit_execveat",
}

# Generous bound on how long a stop may take: a loaded machine can be slow,
# and this only catches a tracer that hangs.
STOP_SECONDS = 10


@functools.cache
def bpftool():
    """Return the path of bpftool, installing Debian's package when it is missing.

    AGENT_TRACER_OFFLINE=1 turns the installation off, as in scripts/test.sh.
    """
    path = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
    offline = os.environ.get("AGENT_TRACER_OFFLINE") == "1"
    if path is None and not offline and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "bpftool"],
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            capture_output=True, check=False,
        )
        path = shutil.which("bpftool", path="/usr/sbin:/sbin:/usr/bin")
    assert path, "bpftool is needed to list loaded BPF programs; install the bpftool package"
    return path


def bpftool_json(*args):
    """Run `bpftool --json ARGS` and return its parsed output."""
    result = subprocess.run(
        [bpftool(), "--json", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"bpftool {' '.join(args)} failed: {result.stderr}"
    return json.loads(result.stdout or "[]")


def loaded_programs():
    """Return id -> name of every BPF program loaded in the kernel."""
    return {entry["id"]: entry.get("name", "") for entry in bpftool_json("prog", "show")}


def loaded_maps():
    """Return id -> name of every BPF map in the kernel."""
    return {entry["id"]: entry.get("name", "") for entry in bpftool_json("map", "show")}


def held_bpf_ids(pid, kind):
    """Return the ids of the BPF programs (kind "prog") or maps ("map") that process pid has open."""
    ids = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except FileNotFoundError:
            continue
        if target != f"anon_inode:bpf-{kind}":
            continue
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key == f"{kind}_id":
                ids.add(int(value))
    return ids


def wait_unloaded(ids, listing, timeout=STOP_SECONDS):
    """Wait until none of ids is in listing(); return the ids still there at the timeout.

    The kernel frees programs and maps after an RCU grace period, so they can
    outlive the process that held them by a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = sorted(ids & set(listing()))
        if not remaining or time.monotonic() > deadline:
            return remaining
        time.sleep(0.1)


def run_tracer_command(args, env=None, wrapper=(), **options):
    """Run `agent-tracer ARGS` to its end, optionally behind a wrapper command; return the result.

    options go to subprocess.run (umask, for one).
    """
    command = [*wrapper, sys.executable, "-m", "tracer", *args]
    environment = dict(env or os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd="/", timeout=120, check=False, **options
    )


def kill_tree(process):
    """Kill a Popen'd process and every descendant it has, then reap it.

    A process that has already been reaped is left alone, because its pid
    may belong to another process by now.
    """
    if process.poll() is not None:
        return
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for child in descendants:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.kill()
    process.wait()
    psutil.wait_procs(descendants, timeout=10)


def stderr_lines(result):
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_writes_trailer(tmp_path, sig):
    tracer = LiveTracer(tmp_path / "stop.msgpack")
    try:
        tracer.wait_ready()
        programs = held_bpf_ids(tracer.process.pid, "prog")
        names = loaded_programs()
        tracer_names = {names.get(program) for program in programs}
        role = unique_role("stop")
        workload = Workload(role, "cases.py", "spawn", 5)
        workload.run(tracer)
        settled(tracer, workload.pid)
    finally:
        started = time.monotonic()
        code, out = tracer.stop(sig)
        elapsed = time.monotonic() - started
    print(f"\n{sig.name}: tracer exited with {code} after {elapsed:.2f} s")

    reader = read_stream(tracer.path)
    records = list(reader)
    report = json.loads(out)

    assert tracer_names == TRACER_PROGRAMS
    assert code == 0, tracer.stderr_text()
    assert reader.trailer is not None
    assert reader.trailer["reason"] == "signal"
    assert reader.truncated is False
    assert reader.problem is None
    assert role_summary(records, role)["process_forks"] == 5
    assert report["roles"][role]["process_forks"] == 5
    assert "Traceback" not in tracer.stderr_text()
    assert elapsed < STOP_SECONDS
    assert wait_unloaded(programs, loaded_programs) == []


def test_sigkill_leaves_readable_stream(tmp_path):
    tracer = LiveTracer(tmp_path / "killed.msgpack")
    role = unique_role("killed")
    storm = None
    try:
        tracer.wait_ready()
        programs = held_bpf_ids(tracer.process.pid, "prog")
        maps = held_bpf_ids(tracer.process.pid, "map")
        names = loaded_programs()
        tracer_names = {names.get(program) for program in programs}
        map_names = {loaded_maps().get(bpf_map) for bpf_map in maps}

        # Kill the tracer while a spawn storm keeps it writing, so that the
        # kill can land in the middle of a write.
        storm = Workload(role, "cases.py", "storm", 2, 100000)
        tracer.wait_for_record(
            lambda r: r.get("type") == "root" and r.get("pid") == storm.pid, what=f"root {storm.pid}"
        )
        storm.process.stdin.write("go\n")
        storm.process.stdin.flush()
        tracer.wait_for_record(
            lambda r: r.get("type") == "exec" and r.get("role") == role, what="the storm's first exec"
        )
        tracer.process.kill()
        code, _ = tracer.stop()
    finally:
        if tracer.process.poll() is None:
            tracer.process.kill()
            tracer.stop()
        if storm is not None:
            kill_tree(storm.process)

    reader = read_stream(tracer.path)
    records = list(reader)
    execs = [r for r in records if r["type"] == "exec" and r["role"] == role]
    table = run_tracer_command(["report", str(tracer.path)])
    report = run_tracer_command(["report", "--format", "json", str(tracer.path)])

    assert tracer_names == TRACER_PROGRAMS
    assert "role_of_tgid" in map_names
    assert code == -signal.SIGKILL
    assert reader.truncated is True
    assert reader.trailer is None
    assert reader.problem is None
    assert len(execs) > 0
    assert table.returncode == 0, table.stderr
    assert "is truncated" in table.stderr
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["truncated"] is True
    assert wait_unloaded(programs, loaded_programs) == []
    assert wait_unloaded(maps, loaded_maps) == []


@pytest.mark.parametrize(
    "drop",
    [
        ["--inh-caps", "-sys_admin,-bpf,-perfmon", "--bounding-set", "-sys_admin,-bpf,-perfmon"],
        ["--inh-caps", "-all", "--bounding-set", "-all"],
    ],
    ids=["bpf_capabilities", "all_capabilities"],
)
def test_root_without_capabilities(tmp_path, drop):
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop capabilities"
    output = tmp_path / "never.msgpack"
    result = run_tracer_command(
        ["trace", "--duration", "1", "-o", str(output)], wrapper=[setpriv, *drop]
    )

    assert result.returncode == 77, result.stderr
    assert len(stderr_lines(result)) == 1, result.stderr
    assert stderr_lines(result)[0].startswith("Error: this process lacks CAP_SYS_ADMIN (or CAP_BPF with CAP_PERFMON)")
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_missing_tracepoint(tmp_path):
    output = tmp_path / "never.msgpack"
    env = dict(os.environ, AGENT_TRACER_HIDE_TRACEPOINTS="task")
    result = run_tracer_command(["trace", "--duration", "1", "-o", str(output)], env=env)

    assert result.returncode == 69, result.stderr
    assert len(stderr_lines(result)) == 1, result.stderr
    assert stderr_lines(result)[0].startswith("Error: the kernel has no tracepoint task:task_newtask")
    assert "Traceback" not in result.stderr
    assert not output.exists()
