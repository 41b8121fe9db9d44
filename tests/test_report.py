"""Unit tests of `agent-tracer report` on hand-made streams (no root needed)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import tracemalloc

import click
import msgpack
import pytest
from clirunner import separate_stderr_runner
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.report import build_report, render_report
from tracer.report.command import report_command
from tracer.report.csv_format import format_csv
from tracer.report.json_format import format_json
from tracer.report.table import format_table
from tracer.stream import StreamError, StreamWriter

START = 5_000_000_000_000
SECOND = 1_000_000_000
# The test headers carry no CPU count, so reports assume this machine's.
CPUS = os.cpu_count()
ROLES = ("master", "keep_alive", "statistics", "process_command")
LONG_HELPER = (
    "/opt/aws/opsworks/current/vendor/bundle/ruby/3.1.0/gems/chef-15.0.0/bin/"
    "chef-helper-with-a-name-long-enough-to-be-shortened"
)


def at(seconds: float) -> int:
    return START + round(seconds * SECOND)


def header(host: str, arch: str = "x86_64", compat_arch: str | None = "i386") -> dict:
    return {
        "type": "header",
        "schema": 1,
        "tool": "agent-tracer",
        "version": "0.1.0",
        "host": host,
        "kernel": "6.18.0-1-amd64",
        "arch": arch,
        "compat_arch": compat_arch,
        "clock": {"monotonic_ns": START, "realtime_ns": 1_733_000_000 * SECOND},
        "start": START,
        "interval": 30.0,
        "preset": "opsworks",
        "roles": [{"name": name, "rule": f"opsworks-agent: {name}"} for name in ROLES],
        "syscalls": True,
        "failed_execs": True,
        "options": {"interval": 30.0},
    }


def root(seconds: float, pid: int, role: str) -> dict:
    title = f"opsworks-agent: {role} of master 15330"
    return {
        "type": "root",
        "ts": at(seconds),
        "pid": pid,
        "role": role,
        "cmdline": title,
        "reason": "seed",
    }


def fork(seconds: float, role: str, pid: int, ppid: int) -> dict:
    return {"type": "fork", "ts": at(seconds), "pid": pid, "ppid": ppid, "tid": ppid, "role": role}


def thread(seconds: float, role: str, pid: int, tid: int) -> dict:
    return {"type": "thread", "ts": at(seconds), "pid": pid, "tid": tid, "role": role}


def exec_(seconds: float, role: str, pid: int, filename: str) -> dict:
    name = filename.rsplit("/", 1)[-1]
    return {
        "type": "exec",
        "ts": at(seconds),
        "pid": pid,
        "old_tid": pid,
        "filename": filename,
        "argv": [name],
        "comm": name[:15],
        "role": role,
    }


def exec_failed(seconds: float, role: str, pid: int, filename: str) -> dict:
    return {
        "type": "exec_failed",
        "ts": at(seconds),
        "pid": pid,
        "tid": pid,
        "filename": filename,
        "argv": [filename.rsplit("/", 1)[-1]],
        "errno": 2,
        "role": role,
    }


def exit_(seconds: float, role: str, pid: int) -> dict:
    return {"type": "exit", "ts": at(seconds), "pid": pid, "role": role}


def bucket(index: int, roles: dict, lost: dict | None = None) -> dict:
    return {
        "type": "bucket",
        "start": at(30 * index),
        "end": at(30 * (index + 1)),
        "roles": roles,
        "lost": lost if lost is not None else {},
    }


def trailer(seconds: float, lost: dict | None = None) -> dict:
    return {
        "type": "trailer",
        "ts": at(seconds),
        "end": at(seconds),
        "lost": lost if lost is not None else {},
        "reason": "duration",
    }


def run_child(role: str, seconds: float, pid: int, ppid: int, filename: str) -> list[dict]:
    return [
        fork(seconds, role, pid, ppid),
        exec_(seconds + 0.1, role, pid, filename),
        exit_(seconds + 0.2, role, pid),
    ]


def web1_records() -> list[dict]:
    """Two 30 s buckets of host web-1, in time order, with a trailer."""
    records = [header("web-1")]
    records += [root(0, 15330 + i, role) for i, role in enumerate(ROLES)]

    # Bucket 0: keep_alive runs true three times, statistics runs uptime once.
    for i in range(3):
        records += run_child("keep_alive", 1 + i, 200 + i, 15331, "/usr/bin/true")
    records += run_child("statistics", 5, 300, 15332, "/usr/bin/uptime")
    records.append(
        bucket(
            0,
            {
                "keep_alive": {
                    # clone, execve, wait4, getppid, getpid, exit_group
                    "syscalls": {56: 3, 59: 3, 61: 3, 110: 12, 39: 2, 231: 3},
                    # i386 getpid
                    "syscalls_compat": {20: 4},
                    "cpu_ns": 1_250_000,
                },
                "statistics": {"syscalls": {56: 1, 59: 1, 61: 1}, "cpu_ns": 750_000},
            },
        )
    )

    # Bucket 1: keep_alive runs cat twice; process_command starts Chef, which
    # looks through PATH, starts two threads and runs one helper.
    for i in range(2):
        records += run_child("keep_alive", 31 + i, 210 + i, 15331, "/bin/cat")
    records += [
        fork(40, "process_command", 400, 15333),
        exec_failed(40.1, "process_command", 400, "/usr/local/sbin/chef-solo"),
        exec_failed(40.2, "process_command", 400, "/usr/local/bin/chef-solo"),
        exec_(40.3, "process_command", 400, "/usr/bin/chef-solo"),
        thread(41, "process_command", 400, 401),
        thread(41.5, "process_command", 400, 402),
        *run_child("process_command", 55, 410, 400, LONG_HELPER),
        exit_(59, "process_command", 400),
    ]
    records.append(
        bucket(
            1,
            {
                "keep_alive": {"syscalls": {56: 2, 59: 2, 61: 2, 110: 8}, "cpu_ns": 1_000_000},
                # clone3, clone, execve and a number no kernel has
                "process_command": {
                    "syscalls": {435: 2, 56: 1, 59: 2, 999: 7},
                    "cpu_ns": 2 * SECOND,
                },
            },
        )
    )
    records.append(trailer(60))
    return records


def web2_records() -> list[dict]:
    """One 30 s bucket of host web-2, with lost events."""
    records = [header("web-2")]
    records += [root(0, 2000 + i, role) for i, role in enumerate(ROLES)]
    for i in range(4):
        records += run_child("keep_alive", 2 + i, 2100 + i, 2001, "/usr/bin/true")
    records.append(
        bucket(
            0,
            {"keep_alive": {"syscalls": {110: 10}, "cpu_ns": 1_000_000}},
            lost={"events": 3, "pid_range": 1},
        )
    )
    records.append(trailer(30, lost={"events": 5, "pid_range": 1}))
    return records


def write_stream(path, records: list[dict]) -> str:
    with StreamWriter.create(path) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def zero_entry(start: float, counter_seconds: float = 30.0) -> dict:
    return {
        "start": start,
        "process_forks": 0,
        "thread_creations": 0,
        "execs": 0,
        "failed_execs": 0,
        "exits": 0,
        "syscalls": 0,
        "cpu_seconds": 0.0,
        "cpu_core_percent": 0.0,
        "cpu_machine_percent": 0.0,
        "counter_seconds": counter_seconds,
        "command_lines": {},
    }


def core_percent(cpu_seconds: float, counter_seconds: float) -> float:
    """Return CPU % of one core the way the report computes it, from integer nanoseconds."""
    return 100.0 * round(cpu_seconds * SECOND) / round(counter_seconds * SECOND)


def machine_percent(cpu_seconds: float, counter_seconds: float, cpus: int = CPUS) -> float:
    return 100.0 * round(cpu_seconds * SECOND) / (round(counter_seconds * SECOND) * cpus)


def entry(start: float, counter_seconds: float = 30.0, **counts) -> dict:
    result = zero_entry(start, counter_seconds)
    result.update(counts)
    cpu_seconds = result["cpu_seconds"]
    result["cpu_core_percent"] = core_percent(cpu_seconds, counter_seconds)
    result["cpu_machine_percent"] = machine_percent(cpu_seconds, counter_seconds)
    return result


def runs(execs: int, failed_execs: int = 0) -> dict:
    return {"execs": execs, "failed_execs": failed_execs}


def command_line(executables: dict, failed_executables: dict | None = None) -> dict:
    failed_executables = failed_executables or {}
    return {
        "execs": sum(executables.values()),
        "failed_execs": sum(failed_executables.values()),
        "executables": executables,
        "failed_executables": failed_executables,
    }


LONG_HELPER_NAME = LONG_HELPER.rsplit("/", 1)[-1]


WEB1_ROLES = {
    "master": {
        "process_forks": 0,
        "thread_creations": 0,
        "execs": 0,
        "failed_execs": 0,
        "exits": 0,
        "syscalls_total": 0,
        "syscalls": {},
        "cpu_seconds": 0.0,
        "cpu_core_percent": 0.0,
        "cpu_machine_percent": 0.0,
        "executables": {},
        "failed_executables": {},
        "command_lines": {},
        "exec_depths": {},
        "max_exec_depth": None,
        "forks_without_exec": 0,
        "timeline": [zero_entry(0.0), zero_entry(30.0)],
    },
    "keep_alive": {
        "process_forks": 5,
        "thread_creations": 0,
        "execs": 5,
        "failed_execs": 0,
        "exits": 5,
        "syscalls_total": 44,
        "syscalls": {
            "getppid": 20,
            "clone": 5,
            "execve": 5,
            "wait4": 5,
            "i386:getpid": 4,
            "exit_group": 3,
            "getpid": 2,
        },
        "cpu_seconds": 0.00225,
        "cpu_core_percent": core_percent(0.00225, 60),
        "cpu_machine_percent": machine_percent(0.00225, 60),
        "executables": {"/usr/bin/true": 3, "/bin/cat": 2},
        "failed_executables": {},
        "command_lines": {
            "true": command_line({"/usr/bin/true": 3}),
            "cat": command_line({"/bin/cat": 2}),
        },
        "exec_depths": {"1": 5},
        "max_exec_depth": 1,
        "forks_without_exec": 0,
        "timeline": [
            entry(
                0.0,
                process_forks=3,
                execs=3,
                exits=3,
                syscalls=30,
                cpu_seconds=0.00125,
                command_lines={"true": runs(3)},
            ),
            entry(
                30.0,
                process_forks=2,
                execs=2,
                exits=2,
                syscalls=14,
                cpu_seconds=0.001,
                command_lines={"cat": runs(2)},
            ),
        ],
    },
    "statistics": {
        "process_forks": 1,
        "thread_creations": 0,
        "execs": 1,
        "failed_execs": 0,
        "exits": 1,
        "syscalls_total": 3,
        "syscalls": {"clone": 1, "execve": 1, "wait4": 1},
        "cpu_seconds": 0.00075,
        "cpu_core_percent": core_percent(0.00075, 60),
        "cpu_machine_percent": machine_percent(0.00075, 60),
        "executables": {"/usr/bin/uptime": 1},
        "failed_executables": {},
        "command_lines": {"uptime": command_line({"/usr/bin/uptime": 1})},
        "exec_depths": {"1": 1},
        "max_exec_depth": 1,
        "forks_without_exec": 0,
        "timeline": [
            entry(
                0.0,
                process_forks=1,
                execs=1,
                exits=1,
                syscalls=3,
                cpu_seconds=0.00075,
                command_lines={"uptime": runs(1)},
            ),
            zero_entry(30.0),
        ],
    },
    "process_command": {
        "process_forks": 2,
        "thread_creations": 2,
        "execs": 2,
        "failed_execs": 2,
        "exits": 2,
        "syscalls_total": 12,
        "syscalls": {"unknown(999)": 7, "clone3": 2, "execve": 2, "clone": 1},
        "cpu_seconds": 2.0,
        "cpu_core_percent": core_percent(2.0, 60),
        "cpu_machine_percent": machine_percent(2.0, 60),
        "executables": {LONG_HELPER: 1, "/usr/bin/chef-solo": 1},
        "failed_executables": {"/usr/local/bin/chef-solo": 1, "/usr/local/sbin/chef-solo": 1},
        "command_lines": {
            "chef-solo": command_line(
                {"/usr/bin/chef-solo": 1},
                {"/usr/local/bin/chef-solo": 1, "/usr/local/sbin/chef-solo": 1},
            ),
            LONG_HELPER_NAME: command_line({LONG_HELPER: 1}),
        },
        "exec_depths": {"1": 1, "2": 1},
        "max_exec_depth": 2,
        "forks_without_exec": 0,
        "timeline": [
            zero_entry(0.0),
            entry(
                30.0,
                process_forks=2,
                thread_creations=2,
                execs=2,
                failed_execs=2,
                exits=2,
                syscalls=12,
                cpu_seconds=2.0,
                command_lines={"chef-solo": runs(1, 2), LONG_HELPER_NAME: runs(1)},
            ),
        ],
    },
}

NO_LOSS = {"events": 0, "pid_range": 0, "exec_stash": 0, "syscall_overflow": 0}
WEB2_LOSS = {"events": 5, "pid_range": 1, "exec_stash": 0, "syscall_overflow": 0}


@pytest.fixture
def web1(tmp_path):
    return write_stream(tmp_path / "web-1.msgpack", web1_records())


@pytest.fixture
def web2(tmp_path):
    return write_stream(tmp_path / "web-2.msgpack", web2_records())


def invoke(*args: str):
    return separate_stderr_runner().invoke(report_command, list(args))


def test_json_one_host_exact(web1):
    result = invoke("--format", "json", web1)

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["hosts"] == ["web-1"]
    assert list(report["roles"]) == list(ROLES)
    for role in ROLES:
        assert report["roles"][role] == WEB1_ROLES[role], role
    assert report["lost"] == NO_LOSS
    assert report["lower_bounds"] is False
    assert report["truncated"] is False
    assert report["duration_seconds"] == 60.0
    assert report["by_host"]["web-1"]["roles"] == WEB1_ROLES
    assert report["streams"] == [
        {
            "path": web1,
            "host": "web-1",
            "records": len(web1_records()),
            "truncated": False,
            "problem": None,
            "syscalls_counted": True,
            "failed_execs_seen": True,
        }
    ]
    assert report["warnings"] == []


def test_build_report_matches_json(web1, web2):
    result = invoke("--format", "json", web1, web2)

    assert json.loads(result.stdout) == build_report([web1, web2])


def test_table_one_host(web1):
    result = invoke(web1)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert too_wide == []

    keep_alive = block(lines, "Role keep_alive")
    assert field(keep_alive, "process forks") == "5"
    assert field(keep_alive, "thread creations") == "0"
    assert field(keep_alive, "execs") == "5"
    assert field(keep_alive, "failed execs") == "0"
    assert field(keep_alive, "exits") == "5"
    assert field(keep_alive, "syscalls") == "44"
    assert field(keep_alive, "cpu seconds") == "0.002250"
    # Only the top 5 of the 7 syscall names, largest first.
    assert section(keep_alive, "top syscalls") == [
        ("getppid", "20"),
        ("clone", "5"),
        ("execve", "5"),
        ("wait4", "5"),
        ("i386:getpid", "4"),
    ]
    assert section(keep_alive, "top executables") == [("/usr/bin/true", "3"), ("/bin/cat", "2")]
    assert section(keep_alive, "top failed executables") == []

    process_command = block(lines, "Role process_command")
    assert field(process_command, "cpu seconds") == "2.000000"
    assert section(process_command, "top syscalls")[0] == ("unknown(999)", "7")
    executables = section(process_command, "top executables")
    assert executables[1] == ("/usr/bin/chef-solo", "1")
    shortened, count = executables[0]
    assert count == "1"
    assert "..." in shortened
    assert shortened.startswith("/opt/aws/opsworks/")
    assert shortened.endswith("shortened")
    assert section(process_command, "top failed executables") == [
        ("/usr/local/bin/chef-solo", "1"),
        ("/usr/local/sbin/chef-solo", "1"),
    ]

    assert "Role master" in lines
    assert "By host" not in lines
    assert "  Nothing was lost." in lines
    assert "Warnings" not in lines


def block(lines: list[str], title: str) -> list[str]:
    """Return the lines of one role block, up to the next blank line."""
    start = lines.index(title)
    end = lines.index("", start)
    return lines[start + 1 : end]


def field(lines: list[str], label: str) -> str:
    matches = [line.split()[-1] for line in lines if line.startswith(f"  {label} ")]
    assert len(matches) == 1, f"{label!r} in {lines}"
    return matches[0]


def section(lines: list[str], title: str) -> list[tuple[str, str]]:
    if f"  {title}" not in lines:
        return []
    rows = []
    for line in lines[lines.index(f"  {title}") + 1 :]:
        if not line.startswith("    "):
            break
        label, count = line.rsplit(maxsplit=1)
        rows.append((label.strip(), count))
    return rows


def test_csv_rows_exact(web1):
    result = invoke("--format", "csv", web1)

    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "host",
        "role",
        "start_seconds",
        "process_forks",
        "thread_creations",
        "execs",
        "failed_execs",
        "exits",
        "syscalls",
        "cpu_seconds",
        "cpu_core_percent",
        "cpu_machine_percent",
        "counter_seconds",
        "wall_start",
        "lower_bound",
    ]
    # The first ten columns of each row, as before CPU % and wall-clock time were added.
    first_columns = [
        ["web-1", "master", "0.0", "0", "0", "0", "0", "0", "0", "0.000000000"],
        ["web-1", "master", "30.0", "0", "0", "0", "0", "0", "0", "0.000000000"],
        ["web-1", "keep_alive", "0.0", "3", "0", "3", "0", "3", "30", "0.001250000"],
        ["web-1", "keep_alive", "30.0", "2", "0", "2", "0", "2", "14", "0.001000000"],
        ["web-1", "statistics", "0.0", "1", "0", "1", "0", "1", "3", "0.000750000"],
        ["web-1", "statistics", "30.0", "0", "0", "0", "0", "0", "0", "0.000000000"],
        ["web-1", "process_command", "0.0", "0", "0", "0", "0", "0", "0", "0.000000000"],
        ["web-1", "process_command", "30.0", "2", "2", "2", "2", "2", "12", "2.000000000"],
    ]
    assert rows[1:] == [row + csv_tail(float(row[9]), float(row[2])) for row in first_columns]


def csv_tail(cpu_seconds: float, start: float) -> list[str]:
    """Return the CPU %, counter time, wall-clock start and lower-bound cells of a web-1 CSV row."""
    wall_start = {0: "2024-11-30T20:53:20.000Z", 30: "2024-11-30T20:53:50.000Z"}[start]
    return [
        f"{core_percent(cpu_seconds, 30):.9f}",
        f"{machine_percent(cpu_seconds, 30):.9f}",
        "30.000000000",
        wall_start,
        "false",
    ]


def test_two_hosts_sum_and_by_host(web1, web2):
    result = invoke("--format", "json", web1, web2)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["hosts"] == ["web-1", "web-2"]
    assert report["by_host"]["web-1"]["roles"] == WEB1_ROLES
    assert report["duration_seconds"] == 60.0
    assert report["by_host"]["web-2"]["duration_seconds"] == 30.0

    web2_keep_alive = report["by_host"]["web-2"]["roles"]["keep_alive"]
    assert web2_keep_alive["process_forks"] == 4
    assert web2_keep_alive["syscalls"] == {"getppid": 10}
    assert web2_keep_alive["timeline"] == [
        entry(
            0.0,
            process_forks=4,
            execs=4,
            exits=4,
            syscalls=10,
            cpu_seconds=0.001,
            command_lines={"true": runs(4)},
        )
    ]

    keep_alive = report["roles"]["keep_alive"]
    assert keep_alive["process_forks"] == 9
    assert keep_alive["execs"] == 9
    assert keep_alive["exits"] == 9
    assert keep_alive["syscalls_total"] == 54
    assert keep_alive["syscalls"]["getppid"] == 30
    assert keep_alive["cpu_seconds"] == 0.00325
    assert keep_alive["executables"] == {"/usr/bin/true": 7, "/bin/cat": 2}
    # Over both hosts, CPU % is of the 60 s of counters in the first bucket
    # (30 s per host) and of the 90 s of counters in all.
    assert keep_alive["timeline"] == [
        entry(
            0.0,
            counter_seconds=60.0,
            process_forks=7,
            execs=7,
            exits=7,
            syscalls=40,
            cpu_seconds=0.00225,
            command_lines={"true": runs(7)},
        ),
        entry(
            30.0,
            process_forks=2,
            execs=2,
            exits=2,
            syscalls=14,
            cpu_seconds=0.001,
            command_lines={"cat": runs(2)},
        ),
    ]
    web1_process_command = WEB1_ROLES["process_command"]
    assert report["roles"]["process_command"] == {
        **web1_process_command,
        "cpu_core_percent": core_percent(2.0, 90),
        "cpu_machine_percent": machine_percent(2.0, 90),
        "timeline": [zero_entry(0.0, counter_seconds=60.0), web1_process_command["timeline"][1]],
    }


def test_two_hosts_csv_and_table(web1, web2):
    rows = list(csv.DictReader(io.StringIO(invoke("--format", "csv", web1, web2).stdout)))
    web2_rows = [row for row in rows if row["host"] == "web-2"]
    assert len(rows) == 12
    assert len(web2_rows) == 4
    assert [row["process_forks"] for row in web2_rows if row["role"] == "keep_alive"] == ["4"]

    lines = invoke(web1, web2).stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    assert "Hosts:    web-1, web-2" in lines
    by_host = block(lines, "By host")
    assert by_host[1].split() == ["web-1", "master", "0", "0", "0", "0.000"]
    assert by_host[5].split() == ["web-2", "master", "0", "0", "0", "0.000"]
    assert by_host[6].split() == ["web-2", "keep_alive", "4", "4", "10", "0.001"]
    assert field(block(lines, "Role keep_alive"), "process forks") == "9"


def test_losses_make_lower_bounds(web1, web2):
    report = json.loads(invoke("--format", "json", web1, web2).stdout)

    # web-2's trailer contains its totals (5 events), more than its bucket (3).
    assert report["lost"] == WEB2_LOSS
    assert report["lower_bounds"] is True
    assert report["by_host"]["web-1"]["lower_bounds"] is False
    assert report["by_host"]["web-2"]["lost"] == WEB2_LOSS

    lines = invoke(web1, web2).stdout.splitlines()
    lost = block(lines + [""], "Lost")
    assert field(lost, "events") == "5"
    assert field(lost, "pid_range") == "1"
    assert field(lost, "exec_stash") == "0"
    assert field(lost, "syscall_overflow") == "0"
    assert "  Data was lost, so every count above is a lower bound." in lost


def test_losses_from_buckets_without_trailer(tmp_path):
    path = write_stream(tmp_path / "killed.msgpack", web2_records()[:-1])

    report = build_report([path])

    assert report["lost"] == {"events": 3, "pid_range": 1, "exec_stash": 0, "syscall_overflow": 0}
    assert report["lower_bounds"] is True
    assert report["truncated"] is True


def test_unknown_loss_kind_is_listed(tmp_path):
    records = web2_records()
    records[-1] = trailer(30, lost={"events": 5, "ringbuf_reserve": 2})
    path = write_stream(tmp_path / "future.msgpack", records)

    report = build_report([path])

    assert report["lost"] == {
        "events": 5,
        "pid_range": 0,
        "exec_stash": 0,
        "syscall_overflow": 0,
        "ringbuf_reserve": 2,
    }
    assert report["lower_bounds"] is True


def test_truncated_stream_reports_with_warning(tmp_path):
    records = web1_records()
    cut_after = records.index(fork(31, "keep_alive", 210, 15331))
    whole = b"".join(
        msgpack.packb(record, use_bin_type=True) for record in records[: cut_after + 1]
    )
    partial = msgpack.packb(records[cut_after + 1], use_bin_type=True)
    path = tmp_path / "killed.msgpack"
    path.write_bytes(whole + partial[: len(partial) // 2])

    result = invoke("--format", "json", str(path))

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"Warning: {path} is truncated: it ends after byte {len(whole)} without a trailer, "
        "so the report covers only the records written before the tracer stopped\n"
    )
    report = json.loads(result.stdout)
    assert report["truncated"] is True
    assert report["streams"][0]["truncated"] is True
    assert report["streams"][0]["records"] == cut_after + 1
    keep_alive = report["roles"]["keep_alive"]
    assert keep_alive["process_forks"] == 4
    assert keep_alive["execs"] == 3
    assert keep_alive["exits"] == 3
    assert keep_alive["syscalls_total"] == 30
    assert report["roles"]["process_command"]["process_forks"] == 0
    assert report["duration_seconds"] == 31.0

    table = invoke(str(path))
    assert table.exit_code == 0
    assert "Streams:  1 stream, 1 incomplete" in table.stdout.splitlines()
    warnings = block(table.stdout.splitlines() + [""], "Warnings")
    assert " ".join(line.strip() for line in warnings) == (
        f"- {path} is truncated: it ends after byte {len(whole)} without a trailer, "
        "so the report covers only the records written before the tracer stopped"
    )


def test_damaged_stream_reports_problem(tmp_path, web1):
    records = web1_records()
    # The header, four roots and the first fork of keep_alive.
    good = b"".join(msgpack.packb(record, use_bin_type=True) for record in records[:6])
    path = tmp_path / "damaged.msgpack"
    path.write_bytes(good + msgpack.packb({"type": "fork", "ts": 1}) + b"rest")

    result = invoke("--format", "json", str(path))

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"Warning: {path} is damaged: the record at byte {len(good)} is invalid: "
        "its fork record has no 'pid'; the report covers only the records before it\n"
    )
    report = json.loads(result.stdout)
    assert report["truncated"] is True
    assert report["roles"]["keep_alive"]["process_forks"] == 1


def test_compat_name_kept_apart_from_native(tmp_path):
    records = [
        header("web-1"),
        bucket(0, {"keep_alive": {"syscalls": {39: 5}, "syscalls_compat": {20: 2, 99999: 1}}}),
        trailer(30),
    ]
    path = write_stream(tmp_path / "compat.msgpack", records)

    syscalls = build_report([path])["roles"]["keep_alive"]["syscalls"]

    assert syscalls == {"getpid": 5, "i386:getpid": 2, "i386:unknown(99999)": 1}


def test_unsupported_arch_names_unknown(tmp_path):
    records = [
        header("sparc-1", arch="sparc64", compat_arch=None),
        bucket(0, {"keep_alive": {"syscalls": {20: 3}}}),
        trailer(30),
    ]
    path = write_stream(tmp_path / "sparc.msgpack", records)

    report = build_report([path])

    assert report["roles"]["keep_alive"]["syscalls"] == {"unknown(20)": 3}
    assert report["warnings"] == [
        f"{path} has syscall numbers of ABI sparc64, which this agent-tracer has no names for; "
        "they are shown as unknown(N)"
    ]


def test_syscalls_off_warns(tmp_path):
    first = header("web-1")
    first["syscalls"] = False
    path = write_stream(tmp_path / "nosys.msgpack", [first, trailer(30)])

    result = invoke("--format", "json", path)

    assert result.exit_code == 0
    assert result.stderr == (
        f"Warning: {path} was recorded without syscall counting, "
        "so its syscall counts are missing\n"
    )
    assert json.loads(result.stdout)["streams"][0]["syscalls_counted"] is False


def test_output_option(tmp_path, web1):
    output = tmp_path / "report.json"
    output.write_text("old report")

    result = invoke("--format", "json", "-o", str(output), web1)

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(output.read_text()) == build_report([web1])


def test_output_symlink_rejected(tmp_path, web1):
    target = tmp_path / "target.txt"
    target.write_text("keep")
    link = tmp_path / "report.txt"
    link.symlink_to(target)

    result = invoke("-o", str(link), web1)

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write the report to {link}: it is a symbolic link; choose another path\n"
    )
    assert target.read_text() == "keep"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read {path}: No such file or directory"),
        (b"", "{path} is empty"),
        (
            b"not a trace\n",
            "{path} is not an agent-tracer stream: its first record is not a header",
        ),
        (
            msgpack.packb({**header("web-1"), "schema": 7}),
            "{path} has schema version 7; this agent-tracer reads version 1",
        ),
    ],
)
def test_bad_input_one_line_error(tmp_path, web1, content, message):
    path = tmp_path / "input.msgpack"
    if content is not None:
        path.write_bytes(content)

    result = invoke(web1, str(path))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: {message.format(path=path)}\n"
    assert isinstance(result.exception, SystemExit)


def test_unknown_format_is_usage_error(web1):
    result = invoke("--format", "xml", web1)

    assert result.exit_code == 2
    assert "Invalid value for '--format'" in result.stderr
    assert "'xml' is not one of 'table', 'json', 'csv'" in result.stderr


def test_files_required():
    result = invoke()

    assert result.exit_code == 2
    assert "Missing argument 'FILE...'" in result.stderr


def test_command_in_group(web1):
    @click.group()
    def main():
        pass

    main.add_command(report_command)

    result = separate_stderr_runner().invoke(main, ["report", "--format", "json", web1])
    help_result = separate_stderr_runner().invoke(main, ["report", "--help"])

    assert result.exit_code == 0
    assert json.loads(result.stdout)["roles"]["keep_alive"]["process_forks"] == 5
    assert "agent-tracer report --format json -o report.json" in help_result.stdout


def test_render_report_formats(web1):
    report = build_report([web1])

    assert render_report([web1], "json") == format_json(report)
    assert render_report([web1], "csv") == format_csv(report)
    assert render_report([web1]) == format_table(report)
    expected = "unknown report format 'xml'; expected one of table, json, csv"
    with pytest.raises(ValueError, match=expected):
        render_report([web1], "xml")


def test_build_report_needs_paths():
    with pytest.raises(ValueError, match="at least one stream"):
        build_report([])


def test_aggregation_memory_is_bounded_by_roles_not_events(tmp_path):
    events = 100_000
    path = tmp_path / "long.msgpack"
    with StreamWriter.create(path) as writer:
        writer.write(header("web-1"))
        for i in range(events):
            writer.write(fork(i / 1000, "keep_alive", 10_000 + i, 15331))
        writer.write(trailer(events / 1000))

    tracemalloc.start()
    try:
        report = build_report([str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report["roles"]["keep_alive"]["process_forks"] == events
    assert len(report["roles"]["keep_alive"]["timeline"]) == 4
    # Keeping the 100 000 records would take tens of MiB; one pass keeps a
    # read buffer and the totals.
    assert peak < 4 << 20


WEB1_BYTES = b"".join(msgpack.packb(record, use_bin_type=True) for record in web1_records())


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, len(WEB1_BYTES) - 1),
    st.binary(min_size=1, max_size=8),
    st.integers(0, len(WEB1_BYTES)),
)
def test_damaged_stream_reports_or_stream_error(position, chunk, cut):
    damaged = (WEB1_BYTES[:position] + chunk + WEB1_BYTES[position + len(chunk) :])[:cut]

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "damaged.msgpack")
        with open(path, "wb") as output:
            output.write(damaged)
        try:
            report = build_report([path])
        except StreamError:
            return

    assert [line for line in format_table(report).splitlines() if len(line) > 80] == []
    rows = list(csv.DictReader(io.StringIO(format_csv(report))))
    assert sum(int(row["process_forks"]) for row in rows) == sum(
        role["process_forks"] for role in report["roles"].values()
    )


def test_notice_becomes_warning(tmp_path):
    path = tmp_path / "notice.msgpack"
    with StreamWriter.create(path) as writer:
        writer.write(HEADER_FOR_NOTICE)
        writer.write({"type": "notice", "ts": HEADER_FOR_NOTICE["start"] + 2_500_000_000, "kind": "cpu_budget",
                      "message": "exec argument capture turned off", "detail": {"cpu_percent": 7.5}})
        writer.write({"type": "trailer", "ts": HEADER_FOR_NOTICE["start"] + 3_000_000_000,
                      "end": HEADER_FOR_NOTICE["start"] + 3_000_000_000})
    report = build_report([path])
    notices = [w for w in report["warnings"] if "cpu_budget" in w]
    assert len(notices) == 1
    assert "at 2.5 s the tracer noted (cpu_budget): exec argument capture turned off" in notices[0]


HEADER_FOR_NOTICE = {
    "type": "header", "schema": 1, "host": "web-1", "arch": "x86_64", "compat_arch": "i386",
    "start": 1_000_000_000, "interval": 1.0, "roles": [{"name": "master", "rule": "cmdline =~ /x/"}],
}
