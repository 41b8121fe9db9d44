"""Tests of the OpsWorks agent emulator. None needs root or BPF.

The counts of the emulator's ground truth are checked three ways: against
its own process list, against the exact numbers that the scenario fixes,
and against strace -f, which records every fork, exec and exit on its own.
"""

import collections
import datetime
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tracer.emulator import agentlog, chef, commands, spawn
from tracer.emulator.titles import TitleError, parse_argv_area, set_title
from tracer.emulator.truth import COUNT_NAMES, ROLES, Ledger

EMULATOR = [sys.executable, "-m", "tracer.emulator"]

# Long enough for every title used here.
PADDING = "-" * 128

# Generous limits for a busy machine. Reaching one fails the test, but no
# test asserts how long anything took.
START_TIMEOUT = 20.0
RUN_TIMEOUT = 60.0

STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(STRACE is None, reason="strace is not installed")


# --- titles ----------------------------------------------------------------


def make_stat_line(comm: str, arg_start: int, arg_end: int) -> bytes:
    """Return a /proc/PID/stat line with 52 fields and the given argv bounds."""
    fields = {48: arg_start, 49: arg_end}
    rest = " ".join(str(fields.get(number, number)) for number in range(4, 53))
    return f"4242 ({comm}) S {rest}\n".encode()


def test_parse_argv_area_odd_comm():
    stat = make_stat_line("a) (b c)", 0x7FFC0000, 0x7FFC0040)

    assert parse_argv_area(stat) == (0x7FFC0000, 0x7FFC0040)


def test_parse_argv_area_hidden_bounds():
    stat = make_stat_line("ruby", 0, 0)

    with pytest.raises(TitleError, match="invalid argv area"):
        parse_argv_area(stat)


def test_set_title_too_long():
    with pytest.raises(TitleError, match="padding argument"):
        set_title("x" * 1_000_000)


def test_set_title_nul_byte():
    with pytest.raises(TitleError, match="NUL"):
        set_title("opsworks-agent:\0master")


def run_python(code: str) -> subprocess.Popen:
    """Start a Python child that runs ``code`` with a padded command line."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), PADDING],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read()


def read_comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as comm:
        return comm.read().rstrip("\n")


def assert_title(pid: int, title: str) -> None:
    """Assert that /proc/PID/cmdline is exactly ``title`` followed only by NULs."""
    cmdline = read_cmdline(pid)
    assert cmdline.startswith(title.encode() + b"\0")
    assert cmdline[len(title) :].strip(b"\0") == b""


def test_set_title_cmdline_and_comm():
    title = "opsworks-agent: keep_alive of master 15330"
    child = run_python(
        f"""
        import sys
        from tracer.emulator.titles import set_title
        print(open("/proc/self/comm").read().strip(), flush=True)
        set_title({title!r})
        print("titled", flush=True)
        sys.stdin.read()
        """
    )
    try:
        comm_before = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "titled"

        assert_title(child.pid, title)
        assert read_comm(child.pid) == comm_before
        assert not comm_before.startswith("opsworks")
    finally:
        child.communicate("")
    assert child.returncode == 0


def test_set_title_worker_after_fork():
    master_title = "opsworks-agent: master 15330"
    worker_title = "opsworks-agent: statistics of master 15330"
    child = run_python(
        f"""
        import os, sys
        from tracer.emulator.titles import set_title
        set_title({master_title!r})
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_write)
            os.read(go_read, 1)
            set_title({worker_title!r})
            print("worker titled", flush=True)
            os.read(go_read, 1)
            os._exit(0)
        print(pid, flush=True)
        sys.stdin.readline()
        os.write(go_write, b"t")
        sys.stdin.readline()
        os.close(go_write)
        os.waitpid(pid, 0)
        """
    )
    try:
        worker = int(child.stdout.readline())

        # Forked but not yet retitled: the worker shows the master's title.
        assert_title(worker, master_title)

        child.stdin.write("retitle\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "worker titled"
        assert_title(worker, worker_title)
        assert_title(child.pid, master_title)
        assert read_comm(worker) == read_comm(child.pid)
    finally:
        child.communicate("end\n")
    assert child.returncode == 0


# --- spawning and counting ---------------------------------------------------


def test_spawn_counts_path_misses():
    ledger = Ledger("process_command")
    record = spawn.start_program(ledger, ["uname", "-r"], parent_argv=["test"], search_path=True)
    exit_status = spawn.wait_program(ledger, record)

    candidates = spawn.exec_candidates("uname", search_path=True)
    first_found = next(index for index, path in enumerate(candidates) if os.access(path, os.X_OK))
    assert exit_status == 0
    assert record.failed_execs == first_found
    assert record.execs == 1
    assert record.argv == ["uname", "-r"]
    assert ledger.counts == {
        "process_forks": 1,
        "thread_creations": 0,
        "execs": 1,
        "failed_execs": first_found,
        "exits": 1,
    }


def test_spawn_program_not_found():
    ledger = Ledger("process_command")
    name = "opsworks-emulator-test-no-such-program"
    record = spawn.start_program(ledger, [name], parent_argv=["parent title"], search_path=True)
    exit_status = spawn.wait_program(ledger, record)

    assert exit_status == spawn.EXIT_NOT_EXECUTED
    assert record.failed_execs == len(spawn.AGENT_PATH.split(":"))
    assert record.execs == 0
    assert record.argv == ["parent title"]
    assert ledger.counts["execs"] == 0
    assert ledger.counts["exits"] == 1


def test_run_function_failure_status():
    ledger = Ledger("keep_alive")

    def fail() -> None:
        raise RuntimeError("check failed")

    record = spawn.run_function(ledger, fail, parent_argv=["title"])

    assert record.exit_status == 1
    assert record.execs == 0
    assert ledger.counts["process_forks"] == 1
    assert ledger.counts["exits"] == 1


def parse_strace(log_path: str) -> tuple[dict[int, int], set[int], list[tuple[int, str]]]:
    """Parse ``strace -f`` output into (parent of each task, thread ids, events).

    Events are (pid, kind) with kind fork, thread, exec, failed_exec or exit.
    """
    line_pattern = re.compile(r"^(\d+) +(.*)$")
    resumed_pattern = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
    call_pattern = re.compile(r"^(\w+)\((.*)\)\s+= (-?\d+|\?)", re.S)
    unfinished = " <unfinished ...>"
    pending: dict[int, str] = {}
    parents: dict[int, int] = {}
    threads: set[int] = set()
    events: list[tuple[int, str]] = []

    with open(log_path) as log:
        for raw in log:
            match = line_pattern.match(raw.rstrip("\n"))
            if match is None:
                continue
            pid, text = int(match.group(1)), match.group(2)
            if text.startswith("+++"):
                events.append((pid, "exit"))
                continue
            if text.startswith("---"):
                continue
            if text.endswith(unfinished):
                pending[pid] = text[: -len(unfinished)]
                continue
            resumed = resumed_pattern.match(text)
            if resumed is not None:
                text = pending.pop(pid) + resumed.group(2)

            call = call_pattern.match(text)
            assert call is not None, f"unparsed strace line: {raw!r}"
            name, arguments, result = call.groups()
            if name in ("clone", "clone3", "fork", "vfork"):
                # "= ?": the caller ended inside the call, so strace never
                # saw its result.
                if result == "?":
                    continue
                child = int(result)
                assert child > 0, f"failed {name} in strace line: {raw!r}"
                parents[child] = pid
                if "CLONE_THREAD" in arguments:
                    threads.add(child)
                    events.append((pid, "thread"))
                else:
                    events.append((pid, "fork"))
            elif name in ("execve", "execveat"):
                events.append((pid, "exec" if result == "0" else "failed_exec"))
    return parents, threads, events


def count_strace_events(
    events: list[tuple[int, str]], threads: set[int], task_filter
) -> dict[str, int]:
    """Count the events of the tasks that ``task_filter`` accepts, as the truth counts them."""
    names = {
        "fork": "process_forks",
        "thread": "thread_creations",
        "exec": "execs",
        "failed_exec": "failed_execs",
        "exit": "exits",
    }
    counts = dict.fromkeys(COUNT_NAMES, 0)
    for pid, kind in events:
        if not task_filter(pid):
            continue
        if kind == "exit" and pid in threads:
            continue
        counts[names[kind]] += 1
    return counts


@needs_strace
def test_shell_children_match_strace(tmp_path):
    shell = commands.find_shell()
    work_dir = str(tmp_path / "work dir")
    os.mkdir(work_dir)
    scripts = [*commands.guard_scripts(shell, work_dir), *commands.action_scripts(shell, work_dir)]

    for command in scripts:
        log_path = str(tmp_path / "strace.log")
        result = subprocess.run(
            [STRACE, "-f", "-q", "-e", "trace=fork,vfork,clone,clone3,execve,execveat",
             "-e", "signal=none", "-o", log_path, *command.argv],
            env=spawn.child_environment(),
            capture_output=True,
        )
        assert result.returncode == 0, command.argv[-1]
        _, threads, events = parse_strace(log_path)

        measured = count_strace_events(events, threads, lambda pid: True)
        stated_execs = sum(1 for child in command.children if child.argv is not None)
        # The shell itself: one exec and one exit, no fork (strace started it).
        assert measured == {
            "process_forks": len(command.children),
            "thread_creations": 0,
            "execs": 1 + stated_execs,
            "failed_execs": 0,
            "exits": 1 + len(command.children),
        }, command.argv[-1]


# --- Chef plan and agent log ---------------------------------------------------


def test_chef_plan_same_seed_same_plan():
    probes = list(commands.PACKAGE_MANAGER_PROBES)
    first = chef.plan_run("7/chef/a", "/bin/sh", "/tmp/work", probes)
    again = chef.plan_run("7/chef/a", "/bin/sh", "/tmp/work", probes)
    other = chef.plan_run("8/chef/a", "/bin/sh", "/tmp/work", probes)

    assert first == again
    assert first != other


def test_chef_plan_shape():
    plan = chef.plan_run("1/chef/x", "/bin/sh", "/tmp/work", list(commands.PACKAGE_MANAGER_PROBES))
    steps = [step for step in plan.steps if step.command is not None]
    forks = len(steps) + sum(len(step.command.children) for step in steps)

    assert chef.MIN_RUN_SECONDS <= plan.run_seconds <= chef.MAX_RUN_SECONDS
    assert forks >= 300
    assert sum(1 for step in plan.steps if step.command is None) == 1
    assert [step.at for step in plan.steps] == sorted(step.at for step in plan.steps)
    assert all(0 < step.at < plan.run_seconds for step in plan.steps)


def test_agent_log_lines():
    sent = datetime.datetime(2024, 3, 1, 10, 15, 2, tzinfo=datetime.timezone.utc)
    when = datetime.datetime(2024, 3, 1, 10, 15, 5, tzinfo=datetime.timezone.utc)
    command_id = "ea4d430e-d0ab-477e-aaaa-7034ff6c4844"
    local = when.astimezone().strftime("%Y-%m-%d %H:%M:%S")

    assert agentlog.format_line(when, 4242, agentlog.processing_message()) == (
        f"[{local}]  INFO [opsworks-agent(4242)]: process_command: Processing command\n"
    )
    assert agentlog.decoded_message(command_id, "configure", sent) == (
        f"Decoded RNA for command {command_id}: configure sent at 2024-03-01 10:15:02 UTC"
    )
    assert agentlog.chef_finished_message(0, 94.076461029) == (
        "Chef: Finished running chef solo with exitcode 0. (94.076461029 sec)"
    )
    assert agentlog.processed_message(command_id, "configure", sent, 0, 83.373945245) == (
        f'process_command: [success] Command "{command_id}" for "configure" sent at '
        "2024-03-01 10:15:02 UTC processed with exitcode 0. (83.373945245 sec)"
    )


# --- whole runs --------------------------------------------------------------


def start_emulator(tmp_path, *options: str) -> tuple[subprocess.Popen, dict]:
    """Start the emulator and return it with the contents of its ready file."""
    ready_file = tmp_path / "ready.json"
    process = subprocess.Popen(
        [*EMULATOR, "--ready-file", str(ready_file), "--truth", str(tmp_path / "truth.json"),
         "--agent-log", str(tmp_path / "agent.log"), *options],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not ready_file.exists():
        if process.poll() is not None:
            stderr = process.stderr.read()
            pytest.fail(f"emulator exited with status {process.returncode}: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no ready file after {START_TIMEOUT} s")
        time.sleep(0.02)
    return process, json.loads(ready_file.read_text())


def finish_emulator(process: subprocess.Popen) -> str:
    """Wait for the emulator to exit and return its standard error."""
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"emulator still running after {RUN_TIMEOUT} s: {stderr}")
    assert process.returncode == 0, stderr
    return stderr


def assert_truth_consistent(truth: dict) -> None:
    """Assert that each role's counts add up from its process list."""
    assert set(truth["roles"]) == set(ROLES)
    for role in ROLES:
        processes = [process for process in truth["processes"] if process["role"] == role]
        counts = truth["roles"][role]
        assert counts["process_forks"] == len(processes), role
        assert counts["execs"] == sum(process["execs"] for process in processes), role
        assert counts["failed_execs"] == sum(process["failed_execs"] for process in processes), role
        assert counts["thread_creations"] == sum(
            process["thread_creations"] for process in processes
        ), role
        # Every process in the list exited, and so did the worker or the master.
        assert counts["exits"] == len(processes) + 1, role


def test_emulator_run_with_gate(tmp_path):
    seed = 3
    process, ready = start_emulator(
        tmp_path, "--speed", "200", "--duration", "120", "--configure-at", "30", "--seed", str(seed)
    )
    master = ready["master"]

    assert set(ready) == set(ROLES)
    assert_title(master, f"opsworks-agent: master {master}")
    for role in ("keep_alive", "statistics", "process_command"):
        assert_title(ready[role], f"opsworks-agent: {role} of master {master}")
        assert read_comm(ready[role]) == read_comm(master)
        assert psutil.Process(ready[role]).ppid() == master
    assert not read_comm(master).startswith("opsworks")

    # Held at the gate: at speed 200, keep_alive would fork within 0.15 s.
    time.sleep(0.5)
    assert sorted(child.pid for child in psutil.Process(master).children(recursive=True)) == sorted(
        ready[role] for role in ("keep_alive", "statistics", "process_command")
    )
    assert not (tmp_path / "agent.log").exists() or (tmp_path / "agent.log").read_text() == ""
    assert not (tmp_path / "truth.json").exists()

    os.kill(master, signal.SIGUSR1)
    finish_emulator(process)
    truth = json.loads((tmp_path / "truth.json").read_text())
    roles = truth["roles"]

    assert_truth_consistent(truth)
    assert truth["agents"] == ready
    assert truth["stopped_early"] is False
    assert truth["speed"] == 200
    assert truth["duration"] == 120
    assert roles["master"] == dict.fromkeys(COUNT_NAMES, 0) | {"exits": 1}
    # 120 emulated seconds hold 4 keep_alive rounds of 10 children (odd
    # ones exec), and 6 statistics rounds cycling through exec, exec, fork.
    assert roles["keep_alive"] == {
        "process_forks": 40, "thread_creations": 0, "execs": 20, "failed_execs": 0, "exits": 41
    }
    assert roles["statistics"] == {
        "process_forks": 6, "thread_creations": 0, "execs": 4, "failed_execs": 0, "exits": 7
    }
    assert roles["process_command"]["process_forks"] >= 300
    assert roles["process_command"]["thread_creations"] == chef.SYNC_THREADS
    assert roles["process_command"]["failed_execs"] > 0

    assert all(process["start_ns"] is None or process["start_ns"] >= truth["gate_ns"]
               for process in truth["processes"])
    chef_records = [process for process in truth["processes"] if process["title"]]
    assert len(chef_records) == 1
    assert chef_records[0]["title"].startswith("chef-solo -j ")
    assert chef_records[0]["parent"] == ready["process_command"]
    assert chef_records[0]["thread_creations"] == chef.SYNC_THREADS

    assert len(truth["commands"]) == 1
    command = truth["commands"][0]
    assert command["type"] == "configure"
    assert command["exit_code"] == 0
    assert command["chef_pid"] == chef_records[0]["pid"]
    assert truth["gate_ns"] < command["start_ns"] < command["end_ns"] < truth["end_ns"]

    log_lines = (tmp_path / "agent.log").read_text().splitlines()
    prefix = (
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]  INFO "
        rf"\[opsworks-agent\({ready['process_command']}\)\]: "
    )
    sent = r"sent at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    uuid = re.escape(command["id"])
    expected = [
        rf"{prefix}Decoded RNA for command {uuid}: configure {sent}$",
        rf"{prefix}process_command: Processing command$",
        rf"{prefix}Chef: Finished running chef solo with exitcode 0\. \(\d+\.\d{{9}} sec\)$",
        rf'{prefix}process_command: \[success\] Command "{uuid}" for "configure" {sent} '
        rf"processed with exitcode 0\. \(\d+\.\d{{9}} sec\)$",
    ]
    command_lines = [line for line in log_lines if "Polling" not in line]
    assert len(command_lines) == len(expected)
    for pattern, line in zip(expected, command_lines):
        assert re.match(pattern, line), line
    polls = [line for line in log_lines if "Polling" in line]
    assert len(polls) == 4
    assert all(re.match(prefix, line) for line in polls)


def test_emulator_sigterm_stops_chef(tmp_path):
    process, ready = start_emulator(
        tmp_path, "--speed", "20", "--duration", "600", "--configure-at", "5"
    )
    os.kill(ready["master"], signal.SIGUSR1)

    log_path = tmp_path / "agent.log"
    deadline = time.monotonic() + START_TIMEOUT
    while not log_path.exists() or "Processing command" not in log_path.read_text():
        assert time.monotonic() < deadline, "configure command never started"
        time.sleep(0.02)
    os.kill(ready["master"], signal.SIGTERM)
    finish_emulator(process)
    truth = json.loads((tmp_path / "truth.json").read_text())

    assert_truth_consistent(truth)
    assert truth["stopped_early"] is True
    assert len(truth["commands"]) == 1
    assert truth["commands"][0]["exit_code"] == chef.EXIT_STOPPED
    log_text = (tmp_path / "agent.log").read_text()
    assert f"exitcode {chef.EXIT_STOPPED}." in log_text
    assert "[failed]" in log_text


def test_emulator_sigterm_before_gate(tmp_path):
    process, ready = start_emulator(tmp_path)
    os.kill(ready["master"], signal.SIGTERM)
    finish_emulator(process)
    truth = json.loads((tmp_path / "truth.json").read_text())

    assert truth["gate_ns"] is None
    assert truth["stopped_early"] is True
    assert truth["processes"] == []
    for role in ROLES:
        assert truth["roles"][role] == dict.fromkeys(COUNT_NAMES, 0), role


@needs_strace
def test_emulator_counts_match_strace(tmp_path):
    log_path = str(tmp_path / "strace.log")
    truth_path = tmp_path / "truth.json"
    ready_path = tmp_path / "ready.json"
    result = subprocess.run(
        [STRACE, "-f", "-q", "--seccomp-bpf", "-e", "trace=fork,vfork,clone,clone3,execve,execveat",
         "-e", "signal=none", "-o", log_path, *EMULATOR, "--no-gate", "--speed", "200",
         "--duration", "60", "--configure-at", "10", "--seed", "11",
         "--ready-file", str(ready_path), "--truth", str(truth_path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    truth = json.loads(truth_path.read_text())
    agents = json.loads(ready_path.read_text())
    parents, threads, events = parse_strace(log_path)

    roots = {pid: role for role, pid in agents.items()}

    def role_of(pid: int) -> str:
        while pid not in roots:
            pid = parents[pid]
        return roots[pid]

    # Before the gate, the master made only its three worker forks and the
    # exec that strace started it with. After the gate it only exits.
    master = agents["master"]
    master_events = collections.Counter(kind for pid, kind in events if pid == master)
    assert master_events == {"fork": 3, "exec": 1, "exit": 1}
    assert truth["roles"]["master"] == dict.fromkeys(COUNT_NAMES, 0) | {"exits": 1}

    for role in ("keep_alive", "statistics", "process_command"):
        measured = count_strace_events(events, threads, lambda pid: role_of(pid) == role)
        assert measured == truth["roles"][role], role


def test_bad_options_one_line(tmp_path):
    cases = [
        (["--speed", "0"], "invalid --speed 0"),
        (["--speed", "fast"], "invalid float value"),
        (["--duration", "-1"], "invalid --duration -1"),
        (["--configure-at", "700"], "--configure-at 700 is not before the end"),
        (["--truth", str(tmp_path / "missing" / "truth.json")], "not found"),
        (["--agent-log", str(tmp_path)], "is a directory"),
        (["--unknown"], "unrecognized arguments"),
    ]
    for options, message in cases:
        result = subprocess.run([*EMULATOR, *options], capture_output=True, text=True)

        assert result.returncode == 2, options
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("python -m tracer.emulator: error: "), result.stderr
        assert message in result.stderr, result.stderr


def test_periodic_times_rounds():
    from tracer.emulator.workers import periodic_times

    for seed in range(20):
        times = periodic_times(random.Random(seed), 30.0, 600.0)

        assert len(times) == 20
        assert times[0] < 30.0
        assert times[-1] < 600.0
