"""Root tests: attribution and exact counts on the real kernel."""

import itertools
import os
import subprocess
import sys
import time

import pytest

from livetracer import Workload, role_summary, settled
from tracer.syscalls import number

pytestmark = pytest.mark.root

_names = itertools.count()


def unique_role(stem):
    # The pid keeps two test sessions on one machine apart.
    return f"{stem}_{os.getpid()}_{next(_names)}"


def run_case(tracer, stem, case, *args):
    role = unique_role(stem)
    workload = Workload(role, "cases.py", case, *args)
    output = workload.run(tracer)
    records = settled(tracer, workload.pid, role)
    return role, workload, output, role_summary(records, role), records


def test_getppid_counted_exactly(live_tracer):
    _, _, _, summary, _ = run_case(live_tracer, "getppid", "getppid", 5000)
    assert summary["syscalls"].get(number("getppid", "x86_64")) == 5000


def test_threads_are_not_forks(live_tracer):
    _, _, _, summary, _ = run_case(live_tracer, "threads", "threads", 3)
    assert summary["thread_creations"] == 3
    assert summary["process_forks"] == 0
    assert summary["execs"] == 0


def test_fork_kinds(any_tracer):
    _, workload, output, summary, _ = run_case(any_tracer, "forkkinds", "fork_kinds")
    assert summary["process_forks"] == 5
    assert summary["thread_creations"] == 4
    assert summary["execs"] == 2
    thread_fork = [r for r in summary["fork_records"] if r["pid"] == output["thread_fork"]]
    assert len(thread_fork) == 1
    assert thread_fork[0]["tid"] == output["thread_tid"]
    assert thread_fork[0]["ppid"] == workload.pid


def test_shell_loop(any_tracer):
    _, _, _, summary, records = run_case(any_tracer, "shell", "shell_loop")
    assert summary["process_forks"] == 6
    assert summary["execs"] == 6
    for record in records:
        if record.get("type") in ("fork", "exec", "exit"):
            assert record["pid"] > 0


def test_path_search_counts_one_exec(live_tracer, tmp_path):
    script = tmp_path / "no-shebang"
    script.write_text("echo this file has no #! line\n")
    script.chmod(0o755)
    _, _, output, summary, _ = run_case(live_tracer, "execkinds", "exec_kinds", script)

    assert summary["process_forks"] == 4
    assert summary["execs"] == 2
    assert summary["failed_execs"] == 4
    errnos = sorted(record["errno"] for record in summary["failed_records"])
    assert errnos == [2, 2, 2, 8]

    by_pid = {record["pid"]: record for record in summary["exec_records"]}
    assert by_pid[output["path_search"]]["filename"] == "/usr/bin/true"
    assert by_pid[output["execveat"]]["filename"] == f"/dev/fd/{output['fd']}"
    assert by_pid[output["execveat"]]["comm"] == "true"


def test_outside_process_in_no_role(live_tracer):
    started_ns = time.monotonic_ns()
    outsider = subprocess.Popen([sys.executable, "-c", "import os\nfor _ in range(5):\n    os.waitpid(os.posix_spawn('/bin/true', ['/bin/true'], {}), 0)\n"])
    outsider.wait()
    _, _, _, _, records = run_case(live_tracer, "after_outsider", "idle")
    later = [r for r in records if r.get("ts", 0) > started_ns]
    assert not [r for r in later if r.get("pid") == outsider.pid or r.get("ppid") == outsider.pid]
