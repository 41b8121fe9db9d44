"""Root tests: the cases that break other tracers, each with its exact value."""

import os
import subprocess
import time

import pytest

from livetracer import TITLE_PREFIX, Workload, role_summary, scaled, settled
from test_root_attribution import run_case, unique_role
from tracer.syscalls import number

pytestmark = pytest.mark.root

WORKLOADS = os.path.join(os.path.dirname(__file__), "workloads")


def test_thread_exit_and_exec_from_thread(any_tracer):
    role = unique_role("threadexec")
    workload = Workload(role, "cases.py", "thread_exec")
    workload.run(any_tracer)
    summary = role_summary(settled(any_tracer, workload.pid, role), role)

    assert summary["thread_creations"] == 5
    assert summary["process_forks"] == 3
    assert summary["execs"] == 4
    assert summary["syscalls"].get(number("getpid", "x86_64"), 0) >= 300
    assert summary["exit_pids"].count(workload.pid) == 1
    shells = [r for r in summary["exec_records"] if r["pid"] == workload.pid]
    assert [r["filename"] for r in shells] == ["/bin/sh"]


def test_main_thread_exit_keeps_role(any_tracer):
    live_tracer = any_tracer
    role = unique_role("mainexit")
    workload = Workload(role, "cases.py", "main_thread_exit", 1.0)
    live_tracer.wait_for_record(
        lambda r: r.get("type") == "root" and r.get("pid") == workload.pid and r.get("role") == role
    )
    workload.process.stdin.write("go\n")
    workload.process.stdin.close()
    workload.process.stdout.readline()

    time.sleep(0.5)
    # Filter on the role too: the pid may belong to an earlier process of the session.
    early = [
        r for r in live_tracer.read()
        if r.get("type") == "exit" and r.get("pid") == workload.pid and r.get("role") == role
    ]
    assert early == [], "the process was reported dead while its worker thread ran"

    workload.process.wait(timeout=30)
    summary = role_summary(settled(live_tracer, workload.pid, role), role)
    assert summary["exit_pids"] == [workload.pid]
    assert summary["syscalls"].get(number("getppid", "x86_64")) == 1


def test_unknown_syscall_numbers(live_tracer):
    _, _, _, summary, _ = run_case(live_tracer, "unknown", "unknown_syscalls")
    assert summary["syscalls"].get(-1) == 10
    assert summary["syscalls"].get(1000) == 10
    assert summary["syscalls"].get(0x40000000 + 39) == 10
    assert summary["syscalls"].get(number("clone3", "x86_64")) == 3
    assert summary["thread_creations"] == 3


@pytest.fixture(scope="module")
def ia32_program(tmp_path_factory):
    target = tmp_path_factory.mktemp("ia32") / "ia32_getpid"
    source = os.path.join(WORKLOADS, "ia32_getpid.c")
    built = subprocess.run(
        ["gcc", "-m32", "-nostdlib", "-static", "-fno-pie", "-no-pie", "-O1", "-o", str(target), source],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a 32-bit program: {built.stderr.strip()}")
    return target


def test_ia32_syscalls(live_tracer, ia32_program):
    role = unique_role("ia32")
    process = subprocess.Popen([f"{TITLE_PREFIX} {role}"], executable=str(ia32_program), stdin=subprocess.PIPE)
    live_tracer.wait_for_record(lambda r: r.get("type") == "root" and r.get("pid") == process.pid and r.get("role") == role)
    process.communicate(b"g", timeout=30)
    assert process.returncode == 0
    summary = role_summary(settled(live_tracer, process.pid, role), role)

    assert summary["syscalls_compat"].get(number("getpid", "i386")) == 100
    assert summary["syscalls"].get(number("writev", "x86_64"), 0) == 0
    assert summary["execs"] == 1
    assert summary["exec_records"][0]["filename"] == "/bin/true"


@pytest.mark.parametrize("spawns", [3, 200])
def test_retitled_child_moves_role(live_tracer, spawns):
    child_role = unique_role("keepalive")
    role, _, output, _, records = run_case(live_tracer, "master", "retitle", f"{TITLE_PREFIX} {child_role}", spawns)
    child = role_summary(records, child_role)
    parent = role_summary(records, role)

    assert child["process_forks"] == spawns
    assert child["execs"] == spawns
    roots = [r for r in records if r.get("type") == "root" and r["pid"] == output["child"]]
    assert [root["role"] for root in roots] == [child_role]
    # The fork event's title normally finds the retitle first; on a slow
    # machine the /proc rescan may see it before the child forks.
    assert roots[0]["reason"] in ("retitle", "rescan")
    assert parent["process_forks"] == 1
    assert parent["execs"] == 0


def test_back_to_back_spawns(live_tracer):
    _, _, _, summary, records = run_case(live_tracer, "spawn200", "spawn", 200)
    assert summary["process_forks"] == 200
    assert summary["execs"] == 200
    assert summary["exits"] == 201


def test_spawn_storm_exact(live_tracer):
    workers = 2 * os.cpu_count()
    rounds = scaled(5000)
    role, _, _, summary, records = run_case(live_tracer, "storm", "storm", workers, rounds)
    lost = sum(r.get("lost", {}).get("events", 0) for r in records if r.get("type") == "bucket")

    assert lost == 0
    assert summary["execs"] == workers * rounds
    assert summary["process_forks"] == workers * rounds + workers
