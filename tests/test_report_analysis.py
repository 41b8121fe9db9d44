"""Unit tests of the analysis parts of `agent-tracer report`: CPU, command lines, lifecycle
commands, comparison with the baseline, several hosts and rotated streams.

The streams are hand-made, so every count is known; one root test runs the
real demo at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from clirunner import separate_stderr_runner

from tracer.report import aggregate, build_report, lineage
from tracer.report.command import report_command
from tracer.report.normalize import command_text
from tracer.stream import StreamWriter

START = 7_000_000_000_000
SECOND = 1_000_000_000
REALTIME = 1_700_000_000 * SECOND
ROLES = ("master", "keep_alive", "statistics", "process_command")
ROOTS = {"master": 100, "keep_alive": 101, "statistics": 102, "process_command": 103}


def at(seconds: float) -> int:
    return START + round(seconds * SECOND)


def header(host: str = "web-1", interval: float = 10.0, cpus: int | None = 4, **extra) -> dict:
    record = {
        "type": "header",
        "schema": 1,
        "host": host,
        "arch": "x86_64",
        "compat_arch": None,
        "clock": {"monotonic_ns": START, "realtime_ns": REALTIME},
        "start": START,
        "interval": interval,
        "roles": [{"name": name, "rule": f"opsworks-agent: {name}"} for name in ROLES],
    }
    if cpus is not None:
        record["cpus"] = cpus
    record.update(extra)
    return record


def roots(seconds: float = 0) -> list[dict]:
    return [
        {"type": "root", "ts": at(seconds), "pid": pid, "role": role, "reason": "seed"}
        for role, pid in ROOTS.items()
    ]


def fork(seconds: float, role: str, pid: int, ppid: int) -> dict:
    return {"type": "fork", "ts": at(seconds), "pid": pid, "ppid": ppid, "tid": ppid, "role": role}


def exec_(
    seconds: float, role: str, pid: int, filename: str, argv: list[str] | None = None
) -> dict:
    record = {"type": "exec", "ts": at(seconds), "pid": pid, "filename": filename, "role": role}
    if argv is not None:
        record["argv"] = argv
    return record


def exec_failed(seconds: float, role: str, pid: int, filename: str, argv: list[str]) -> dict:
    return {
        "type": "exec_failed",
        "ts": at(seconds),
        "pid": pid,
        "filename": filename,
        "argv": argv,
        "errno": 2,
        "role": role,
    }


def exit_(seconds: float, role: str, pid: int) -> dict:
    return {"type": "exit", "ts": at(seconds), "pid": pid, "role": role}


def bucket(start: float, end: float, roles: dict, lost: dict | None = None) -> dict:
    record = {"type": "bucket", "start": at(start), "end": at(end), "roles": roles}
    if lost:
        record["lost"] = lost
    return record


def counters(syscalls: int = 0, cpu_seconds: float = 0.0) -> dict:
    # 39 is getpid on x86_64.
    return {"syscalls": {39: syscalls} if syscalls else {}, "cpu_ns": round(cpu_seconds * SECOND)}


def marker(at_seconds: float, phase: str | None, marker_id: str | None = "c-1", **detail) -> dict:
    record = {"type": "marker", "ts": at(at_seconds), "name": "configure", "detail": detail}
    if phase is not None:
        record["phase"] = phase
    if marker_id is not None:
        record["id"] = marker_id
    return record


def trailer(seconds: float, lost: dict | None = None, reason: str = "duration") -> dict:
    return {
        "type": "trailer",
        "ts": at(seconds),
        "end": at(seconds),
        "lost": lost or {},
        "reason": reason,
    }


def run_true(seconds: float, pid: int, role: str = "process_command") -> list[dict]:
    """A child of the role root that execs /bin/true and exits."""
    return [
        fork(seconds, role, pid, ROOTS[role]),
        exec_(seconds + 0.1, role, pid, "/bin/true", ["/bin/true"]),
        exit_(seconds + 0.2, role, pid),
    ]


def write_stream(path, records: list[dict]) -> str:
    with StreamWriter.create(path) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def invoke(*args: str):
    return separate_stderr_runner().invoke(report_command, list(args))


def configure_records(end_marker: bool = True) -> list[dict]:
    """100 s of process_command in 10 s buckets, with a configure command from 25 s to 45 s.

    Buckets 2 to 4 (20 s to 50 s) have 1000 syscalls and 1 s of CPU each,
    the others 100 syscalls and 0.1 s. Forks run at 10, 26, 30, 44, 50 and
    90 s (three inside the command), and one failed exec at 27 s.
    """
    records = [header(), *roots()]
    events = {
        10: run_true(10, 1000),
        26: run_true(26, 1001)
        + [exec_failed(27, "process_command", 1001, "/usr/local/bin/x", ["x"])],
        30: run_true(30, 1002),
        44: run_true(44, 1003),
        50: run_true(50, 1004),
        90: run_true(90, 1005),
    }
    markers = {
        25: marker(25, "start", log_time="2023-11-14 22:13:45", sent_at="2023-11-14 22:13:40 UTC")
    }
    if end_marker:
        markers[45] = marker(
            45,
            "end",
            log_time="2023-11-14 22:14:05",
            sent_at="2023-11-14 22:13:40 UTC",
            outcome="success",
            exit_code=0,
            seconds=19.5,
        )

    for index in range(10):
        low, high = index * 10, (index + 1) * 10
        for second in sorted(list(events) + list(markers)):
            if low <= second < high:
                records += events.get(second, [])
                if second in markers:
                    records.append(markers[second])
        busy = 2 <= index <= 4
        records.append(
            bucket(
                low,
                high,
                {"process_command": counters(1000 if busy else 100, 1.0 if busy else 0.1)},
            )
        )
    records.append(trailer(100))
    return records


@pytest.fixture
def configure(tmp_path):
    return write_stream(tmp_path / "configure.msgpack", configure_records())


# Normalisation of command lines


@pytest.mark.parametrize(
    "filename, argv, expected",
    [
        ("/bin/sh", ["sh", "-c", "cat /proc/1234/stat"], "sh -c 'cat /proc/<n>/stat'"),
        ("/bin/cat", ["cat", "/proc/98765/status"], "cat /proc/<n>/status"),
        (
            "/usr/bin/docker",
            ["docker", "rm", "3f4e5a6b7c8d", "0x1F", "1f0e2d3c-aaaa-bbbb-cccc-0123456789ab"],
            "docker rm <hex> <hex> <uuid>",
        ),
        ("/bin/rm", ["rm", "-f", "/tmp/chef-script20240301-123-1x2y3z"], "rm -f /tmp/<tmp>"),
        ("/bin/cat", ["cat", "/var/tmp/d123/out.log"], "cat /var/tmp/<tmp>/out.log"),
        ("/bin/ls", ["ls", "tmp.Ab3dE6gH9k"], "ls tmp.<tmp>"),
        (
            "/bin/uname",
            ["uname", "-m", "x86_64", "i386", "sha256sum"],
            "uname -m x86_64 i386 sha256sum",
        ),
        ("/usr/bin/python3.11", ["/usr/bin/python3.11", "-V"], "/usr/bin/python3.11 -V"),
        ("/bin/echo", ["echo", "it's", ""], "echo 'it'\\''s' ''"),
        ("/tmp/tmp.Qw3rTy7u/run.sh", [], "/tmp/<tmp>/run.sh"),
        ("/opt/app/bin/job-42", None, "/opt/app/bin/job-42"),
        ("/bin/sleep", ["sleep", "deadbeef"], "sleep deadbeef"),
    ],
)
def test_normalize_rules(filename, argv, expected):
    assert command_text(filename, argv) == expected


def test_normalize_marks_cut_arguments():
    assert command_text("/bin/ls", ["ls", "-l", "/srv/a"], truncated=True) == "ls -l /srv/a ..."


def test_command_lines_fold_per_role_and_bucket(tmp_path):
    records = [header(), *roots()]
    for index in range(40):
        pid = 2000 + index
        records += [
            fork(1 + index / 10, "keep_alive", pid, ROOTS["keep_alive"]),
            exec_(
                1.05 + index / 10,
                "keep_alive",
                pid,
                "/bin/sh",
                ["sh", "-c", f"cat /proc/{pid}/stat"],
            ),
            exit_(1.08 + index / 10, "keep_alive", pid),
        ]
    records += [
        fork(12, "keep_alive", 3000, ROOTS["keep_alive"]),
        exec_failed(12.1, "keep_alive", 3000, "/usr/local/bin/uname", ["uname", "-r"]),
        exec_failed(12.2, "keep_alive", 3000, "/usr/local/sbin/uname", ["uname", "-r"]),
        exec_(12.3, "keep_alive", 3000, "/usr/bin/uname", ["uname", "-r"]),
        trailer(20),
    ]
    path = write_stream(tmp_path / "lines.msgpack", records)

    report = build_report([path])

    keep_alive = report["roles"]["keep_alive"]
    assert keep_alive["command_lines"] == {
        "sh -c 'cat /proc/<n>/stat'": {
            "execs": 40,
            "failed_execs": 0,
            "executables": {"/bin/sh": 40},
            "failed_executables": {},
        },
        "uname -r": {
            "execs": 1,
            "failed_execs": 2,
            "executables": {"/usr/bin/uname": 1},
            "failed_executables": {"/usr/local/bin/uname": 1, "/usr/local/sbin/uname": 1},
        },
    }
    first, second = keep_alive["timeline"]
    assert first["command_lines"] == {
        "sh -c 'cat /proc/<n>/stat'": {"execs": 40, "failed_execs": 0}
    }
    assert second["command_lines"] == {"uname -r": {"execs": 1, "failed_execs": 2}}

    rows = list(
        csv.DictReader(
            io.StringIO(invoke("--format", "csv", "--csv-table", "command_lines", path).stdout)
        )
    )
    assert [
        (row["role"], row["start_seconds"], row["command_line"], row["execs"], row["failed_execs"])
        for row in rows
    ] == [
        ("keep_alive", "0.0", "sh -c 'cat /proc/<n>/stat'", "40", "0"),
        ("keep_alive", "10.0", "uname -r", "1", "2"),
    ]

    table = invoke(path).stdout.splitlines()
    ranking = [line.split() for line in table if line.startswith(("    sh -c", "    uname -r"))]
    assert ranking == [
        ["sh", "-c", "'cat", "/proc/<n>/stat'", "40", "0"],
        ["uname", "-r", "1", "2"],
    ]


def test_command_lines_overflow_into_other(tmp_path, monkeypatch):
    monkeypatch.setattr(aggregate, "MAX_COMMAND_LINES_PER_ROLE", 3)
    records = [header(), *roots()]
    for index, word in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"]):
        records.append(exec_(1 + index, "keep_alive", 2000 + index, "/bin/echo", ["echo", word]))
    records.append(trailer(10))
    path = write_stream(tmp_path / "many.msgpack", records)

    command_lines = build_report([path])["roles"]["keep_alive"]["command_lines"]

    assert {text: row["execs"] for text, row in command_lines.items()} == {
        "<other>": 2,
        "echo alpha": 1,
        "echo beta": 1,
        "echo gamma": 1,
    }


# Exec depth and forks without exec


def test_exec_depths_follow_the_process_tree(tmp_path):
    records = [header(), *roots()]
    pc = ROOTS["process_command"]
    records += [
        # A process that existed at start-up, below the root.
        {"type": "task", "ts": at(0), "pid": 150, "ppid": pc, "role": "process_command"},
        fork(1, "process_command", 200, pc),
        exec_(1.1, "process_command", 200, "/usr/bin/chef-solo", ["chef-solo"]),
        fork(2, "process_command", 201, 200),
        exec_(2.1, "process_command", 201, "/bin/sh", ["sh", "-c", "uname -r"]),
        fork(3, "process_command", 202, 201),
        exec_(3.1, "process_command", 202, "/bin/uname", ["uname", "-r"]),
        exit_(3.2, "process_command", 202),
        # Chef forks a worker that never execs and exits: a fork without exec.
        fork(4, "process_command", 203, 200),
        exit_(4.5, "process_command", 203),
        # A worker still running at the end is not counted.
        fork(5, "process_command", 204, 200),
        # The pre-existing process forks a child that execs at depth 2.
        fork(6, "process_command", 205, 150),
        exec_(6.1, "process_command", 205, "/bin/true", ["true"]),
        # An exec of a process whose fork the stream never saw.
        exec_(7, "process_command", 999, "/bin/true", ["true"]),
        trailer(10),
    ]
    path = write_stream(tmp_path / "tree.msgpack", records)

    role = build_report([path])["roles"]["process_command"]

    assert role["exec_depths"] == {"1": 1, "2": 2, "3": 1, "unknown": 1}
    assert role["max_exec_depth"] == 3
    assert role["forks_without_exec"] == 1


def test_lineage_table_evicts_oldest(monkeypatch):
    monkeypatch.setattr(lineage, "MAX_LIVE_PROCESSES", 2)
    tree = lineage.Lineage()
    counts = lineage.LineageCounts()

    tree.root(1)
    tree.fork(2, 1)
    tree.fork(3, 2)
    tree.exec(1, counts)

    # The root went first to make room for 3, then 2 for the exec of 1.
    assert list(tree.processes) == [3, 1]
    assert tree.depth_of(3) == 2
    assert counts.execs_by_depth == {lineage.UNKNOWN_DEPTH: 1}


# CPU


def test_cpu_percent_uses_header_cpus(configure):
    report = build_report([configure])

    host = report["by_host"]["web-1"]
    role = report["roles"]["process_command"]
    assert host["cpus"] == 4
    assert host["cpus_assumed"] is False
    assert report["notes"] == []
    # 3.7 s of CPU in 100 s of counters.
    assert role["cpu_seconds"] == pytest.approx(3.7)
    assert role["cpu_core_percent"] == pytest.approx(3.7)
    assert role["cpu_machine_percent"] == pytest.approx(3.7 / 4)
    busy = role["timeline"][3]
    assert busy["start"] == 30.0
    assert busy["cpu_core_percent"] == pytest.approx(10.0)
    assert busy["cpu_machine_percent"] == pytest.approx(2.5)
    assert busy["counter_seconds"] == 10.0


def test_cpu_count_missing_gives_note(tmp_path):
    path = write_stream(tmp_path / "nocpus.msgpack", [header(cpus=None), trailer(10)])

    result = invoke("--format", "json", path)

    report = json.loads(result.stdout)
    assert result.stderr == ""
    assert report["by_host"]["web-1"]["cpus"] == os.cpu_count()
    assert report["by_host"]["web-1"]["cpus_assumed"] is True
    assert report["notes"] == [
        (
            "the streams of web-1 do not record its CPU count, so CPU % of the machine "
            f"assumes the {os.cpu_count()} CPUs of the machine running this report"
        )
    ]
    table = invoke(path).stdout.splitlines()
    assert f"CPUs:     {os.cpu_count()} (assumed)" in table
    assert "Notes" in table


def test_header_cpus_must_be_positive(tmp_path):
    with pytest.raises(
        ValueError, match="the 'cpus' of its header record is not a positive integer"
    ):
        write_stream(tmp_path / "zero.msgpack", [header(cpus=0)])


def test_drifting_buckets_are_shared_between_grid_buckets(tmp_path):
    # The tracer read its counters at 1.5 s and 2.5 s on a 1 s grid: each
    # reading is shared half and half, and the totals stay exact.
    records = [
        header(interval=1.0),
        bucket(0, 1.5, {"keep_alive": counters(1001, 1.5)}),
        bucket(1.5, 2.5, {"keep_alive": counters(10, 0.25)}),
        trailer(2.5),
    ]
    path = write_stream(tmp_path / "drift.msgpack", records)

    role = build_report([path])["roles"]["keep_alive"]

    assert role["syscalls_total"] == 1011
    assert role["cpu_seconds"] == 1.75
    timeline = [
        (e["start"], e["syscalls"], e["cpu_seconds"], e["counter_seconds"])
        for e in role["timeline"]
    ]
    assert timeline == [
        (0.0, 667, 1.0, 1.0),
        (1.0, 339, 0.625, 1.0),
        (2.0, 5, 0.125, 0.5),
    ]
    assert [e["cpu_core_percent"] for e in role["timeline"]] == [100.0, 62.5, 25.0]


# Lifecycle commands


def test_command_counts_rates_and_baseline(configure):
    report = build_report([configure])

    [command] = report["commands"]
    assert {key: command[key] for key in command if key != "roles"} == {
        "host": "web-1",
        "id": "c-1",
        "name": "configure",
        "start": 25.0,
        "end": 45.0,
        "duration_seconds": 20.0,
        "ongoing": False,
        "started_before_trace": False,
        "wall_start": "2023-11-14T22:13:45.000Z",
        "wall_end": "2023-11-14T22:14:05.000Z",
        "detail": {
            "log_time": "2023-11-14 22:14:05",
            "sent_at": "2023-11-14 22:13:40 UTC",
            "outcome": "success",
            "exit_code": 0,
            "seconds": 19.5,
        },
        "lower_bounds": False,
    }

    role = command["roles"]["process_command"]
    assert {
        key: role[key] for key in ("process_forks", "execs", "failed_execs", "exits", "syscalls")
    } == {
        "process_forks": 3,
        "execs": 3,
        "failed_execs": 1,
        "exits": 3,
        "syscalls": 2000,
    }
    assert role["cpu_seconds"] == pytest.approx(2.0)
    assert role["rates"]["process_forks"] == pytest.approx(0.15)
    assert role["rates"]["syscalls"] == pytest.approx(100.0)
    assert role["rates"]["cpu_core_percent"] == pytest.approx(10.0)
    assert role["baseline_rates"]["process_forks"] == pytest.approx(3 / 80)
    assert role["baseline_rates"]["syscalls"] == pytest.approx(1700 / 80)
    assert role["baseline_rates"]["cpu_core_percent"] == pytest.approx(1.7 / 80 * 100)
    assert role["ratios"]["process_forks"] == pytest.approx(4.0)
    assert role["ratios"]["syscalls"] == pytest.approx(100 / 21.25)
    assert role["ratios"]["failed_execs"] is None
    assert role["new_activity"] == ["failed_execs"]

    baseline = report["by_host"]["web-1"]["baseline"]
    assert baseline["seconds"] == 80.0
    assert baseline["counter_seconds"] == 80.0
    assert baseline["roles"]["process_command"]["process_forks"] == 3
    assert baseline["roles"]["process_command"]["failed_execs"] == 0
    assert baseline["roles"]["process_command"]["syscalls"] == 1700


def test_command_still_running_is_ongoing(tmp_path):
    path = write_stream(tmp_path / "running.msgpack", configure_records(end_marker=False))

    [command] = build_report([path])["commands"]

    assert command["ongoing"] is True
    assert command["end"] is None
    assert command["wall_end"] is None
    assert command["duration_seconds"] == 75.0
    # Forks at 26, 30, 44, 50 and 90 s.
    assert command["roles"]["process_command"]["process_forks"] == 5


def test_command_ended_before_its_start_was_seen(tmp_path):
    records = configure_records()
    start = next(r for r in records if r["type"] == "marker" and r["phase"] == "start")
    records.remove(start)
    path = write_stream(tmp_path / "late.msgpack", records)

    report = build_report([path])

    [command] = report["commands"]
    assert command["started_before_trace"] is True
    assert command["start"] == 0.0
    assert command["duration_seconds"] == 45.0
    role = command["roles"]["process_command"]
    # Forks at 10, 26, 30 and 44 s; buckets 0 to 3 whole and half of bucket 4.
    assert role["process_forks"] == 4
    assert role["syscalls"] == 100 + 100 + 1000 + 1000 + 500
    baseline = report["by_host"]["web-1"]["baseline"]
    assert baseline["seconds"] == 55.0
    assert baseline["roles"]["process_command"]["process_forks"] == 2
    assert baseline["roles"]["process_command"]["syscalls"] == 500 + 5 * 100


def test_duplicate_markers_noted_and_instants_listed(tmp_path):
    records = configure_records()
    index = records.index(next(r for r in records if r["type"] == "marker"))
    records.insert(index + 1, marker(25.5, "start"))
    records.insert(-1, marker(95, None, marker_id=None, note="agent restarted"))
    path = write_stream(tmp_path / "markers.msgpack", records)

    report = build_report([path])

    assert len(report["commands"]) == 1
    assert report["notes"] == ["web-1: a second start marker of command c-1 was ignored"]
    assert report["markers"] == [
        {
            "host": "web-1",
            "name": "configure",
            "id": None,
            "phase": None,
            "time": 95.0,
            "wall_time": "2023-11-14T22:14:55.000Z",
            "detail": {"note": "agent restarted"},
        }
    ]


def test_commands_table_and_csv(configure):
    lines = invoke(configure).stdout.splitlines()

    assert [line for line in lines if len(line) > 80] == []
    start = lines.index(
        "Lifecycle commands (counts, rates per second, and the baseline outside commands)"
    )
    assert lines[start + 1] == "  configure c-1 on web-1"
    assert lines[start + 2] == "    from +25.0 s for 20.0 s, success, exit code 0"
    process_command = next(
        index for index, line in enumerate(lines) if line.startswith("    process_command ")
    )
    assert lines[process_command].split() == ["process_command", "3", "3", "1", "2000", "2.00", "s"]
    assert lines[process_command + 1].split() == [
        "per",
        "second",
        "0.15",
        "0.15",
        "0.05",
        "100",
        "10",
        "%",
    ]
    assert lines[process_command + 2].split() == [
        "baseline/s",
        "0.0375",
        "0.0375",
        "0",
        "21.2",
        "2.12",
        "%",
    ]
    # Roles that did nothing anywhere get no rows.
    assert not any(line.startswith("    keep_alive ") for line in lines[start:])

    rows = list(
        csv.DictReader(
            io.StringIO(invoke("--format", "csv", "--csv-table", "commands", configure).stdout)
        )
    )
    assert [row["role"] for row in rows] == list(ROLES)
    row = rows[3]
    assert {
        key: row[key]
        for key in ("id", "name", "start_seconds", "end_seconds", "ongoing", "outcome", "exit_code")
    } == {
        "id": "c-1",
        "name": "configure",
        "start_seconds": "25.000000000",
        "end_seconds": "45.000000000",
        "ongoing": "false",
        "outcome": "success",
        "exit_code": "0",
    }
    assert (row["process_forks"], row["failed_execs"], row["syscalls"]) == ("3", "1", "2000")
    assert row["lower_bound"] == "false"


# Comparison with the baseline


def test_compare_table_one_line_per_metric(configure):
    result = invoke("--compare", configure)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    assert "  web-1: baseline 80.0 s outside commands; busiest windows last 20.0 s." in lines
    during = lines.index(
        "  During configure c-1 on web-1, from +25.0 s for 20.0 s, success, exit code 0"
    )
    # New activity first, then the largest ratios; equal ratios keep the metric order.
    assert lines[during + 1 : during + 8] == [
        "    process_command failed execs: new activity (0.05/s, none in the baseline)",
        "    process_command syscalls 4.7x its baseline (100/s vs 21.2/s)",
        "    process_command CPU 4.7x its baseline (10% of a core vs 2.12% of a core)",
        "    process_command forks 4.0x its baseline (0.15/s vs 0.0375/s)",
        "    process_command execs 4.0x its baseline (0.15/s vs 0.0375/s)",
        "    process_command exits 4.0x its baseline (0.15/s vs 0.0375/s)",
        "",
    ]
    busiest = lines.index("  Busiest 20.0 s of process_command on web-1, from +20.0 s (by CPU)")
    assert lines[busiest + 1 : busiest + 3] == [
        "    process_command failed execs: new activity (0.05/s, none in the baseline)",
        "    process_command syscalls 4.7x its baseline (100/s vs 21.2/s)",
    ]
    assert "    process_command forks 2.7x its baseline (0.1/s vs 0.0375/s)" in lines[busiest:]
    assert "Lost" in lines


def test_compare_rows_json_and_csv(configure):
    report = build_report([configure])

    command_rows = [row for row in report["compare"] if row["window"] == "command"]
    assert [(row["role"], row["metric"]) for row in command_rows] == [
        ("process_command", "process_forks"),
        ("process_command", "execs"),
        ("process_command", "failed_execs"),
        ("process_command", "exits"),
        ("process_command", "syscalls"),
        ("process_command", "cpu_core_percent"),
    ]
    failed = command_rows[2]
    assert failed["ratio"] is None
    assert failed["baseline"] == 0
    assert failed["new_activity"] is True

    busiest = report["by_host"]["web-1"]["busiest"]["process_command"]
    assert busiest["start"] == 20.0
    assert busiest["seconds"] == 20.0
    assert busiest["ranked_by"] == "cpu"
    assert busiest["process_forks"] == 2
    assert busiest["syscalls"] == 2000
    assert busiest["ratios"]["process_forks"] == pytest.approx(0.1 / 0.0375)
    assert report["by_host"]["web-1"]["busiest"]["keep_alive"]["ranked_by"] == "events"

    same = invoke("--format", "csv", "--compare", configure).stdout
    assert same == invoke("--format", "csv", "--csv-table", "compare", configure).stdout
    rows = list(csv.DictReader(io.StringIO(same)))
    assert len(rows) == len(report["compare"])
    assert rows[2]["metric"] == "failed_execs"
    assert (rows[2]["ratio"], rows[2]["new_activity"], rows[2]["lower_bound"]) == (
        "",
        "true",
        "false",
    )


def test_busiest_window_without_markers_is_60_seconds(tmp_path):
    records = [header(interval=10.0), *roots()]
    for index in range(30):
        cpu = 2.0 if 12 <= index < 18 else 0.1
        records.append(bucket(index * 10, index * 10 + 10, {"statistics": counters(10, cpu)}))
    records.append(trailer(300))
    path = write_stream(tmp_path / "quiet.msgpack", records)

    report = build_report([path])

    host = report["by_host"]["web-1"]
    assert host["busiest_window_seconds"] == 60.0
    assert host["baseline"]["seconds"] == 300.0
    window = host["busiest"]["statistics"]
    assert (window["start"], window["seconds"]) == (120.0, 60.0)
    assert window["cpu_seconds"] == pytest.approx(12.0)
    # The baseline is the whole trace: 0.1 s in 24 buckets and 2 s in 6.
    assert window["ratios"]["cpu_core_percent"] == pytest.approx((12 / 60) / (14.4 / 300))
    lines = invoke("--compare", path).stdout.splitlines()
    assert "  web-1: no lifecycle commands, so the baseline is the whole 300.0 s; busiest" in lines


def test_compare_options_conflict(configure):
    both = invoke("--format", "csv", "--compare", "--csv-table", "commands", configure)
    table_only = invoke("--csv-table", "commands", configure)

    assert both.exit_code == 2
    assert (
        "--compare writes the compare table, so it cannot go with --csv-table commands"
        in both.stderr
    )
    assert table_only.exit_code == 2
    assert "--csv-table needs --format csv" in table_only.stderr


# Several hosts on wall-clock time


def host_records(host: str, shift_seconds: float, forks_at: list[float], end: float) -> list[dict]:
    """A stream of `host` whose wall clock is `shift_seconds` ahead of web-1's."""
    records = [
        header(
            host=host,
            clock={"monotonic_ns": START, "realtime_ns": REALTIME + round(shift_seconds * SECOND)},
        )
    ]
    records += roots()
    pid = 5000
    for index in range(int(end // 10)):
        for second in forks_at:
            if index * 10 <= second < index * 10 + 10:
                records += run_true(second, pid, "keep_alive")
                pid += 1
        records.append(bucket(index * 10, index * 10 + 10, {"keep_alive": counters(50, 0.5)}))
    records.append(trailer(end))
    return records


@pytest.fixture
def two_hosts(tmp_path):
    # web-2 started 20 s of wall-clock time after web-1 (same monotonic
    # start, so its clock is 20 s ahead) and ran for 30 s.
    web1 = write_stream(tmp_path / "web-1.msgpack", host_records("web-1", 0, [1, 2, 25], 40))
    web2 = write_stream(tmp_path / "web-2.msgpack", host_records("web-2", 20, [3], 30))
    return web1, web2


def test_aligned_view_lines_up_hosts(two_hosts):
    report = build_report(list(two_hosts))

    aligned = report["aligned"]
    assert aligned["hosts"] == ["web-1", "web-2"]
    assert aligned["hosts_without_clock"] == []
    assert aligned["interval"] == 10.0
    assert aligned["origin"] == "2023-11-14T22:13:20.000Z"
    keep_alive = aligned["timeline"]["keep_alive"]
    assert [entry["start"] for entry in keep_alive] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert [entry["wall_start"] for entry in keep_alive][2] == "2023-11-14T22:13:40.000Z"
    forks = [
        {
            host: None if cell is None else cell["process_forks"]
            for host, cell in entry["hosts"].items()
        }
        for entry in keep_alive
    ]
    assert forks == [
        {"web-1": 2, "web-2": None},
        {"web-1": 0, "web-2": None},
        {"web-1": 1, "web-2": 1},
        {"web-1": 0, "web-2": 0},
        {"web-1": None, "web-2": 0},
    ]
    cell = keep_alive[2]["hosts"]["web-2"]
    assert cell["cpu_core_percent"] == pytest.approx(5.0)
    assert cell["cpu_machine_percent"] == pytest.approx(1.25)
    assert cell["counter_seconds"] == 10.0


def test_aligned_view_table_and_csv(two_hosts):
    lines = invoke(*two_hosts).stdout.splitlines()

    assert [line for line in lines if len(line) > 80] == []
    assert "Wall-clock timeline (UTC, 2023-11-14, rows of 10 s)" in lines
    start = lines.index(
        "  keep_alive", lines.index("Wall-clock timeline (UTC, 2023-11-14, rows of 10 s)")
    )
    assert lines[start + 1].split() == ["time", "web-1", "web-2"]
    assert [line.split() for line in lines[start + 2 : start + 7]] == [
        ["22:13:20", "2", "5%", "-"],
        ["22:13:30", "0", "5%", "-"],
        ["22:13:40", "1", "5%", "1", "5%"],
        ["22:13:50", "0", "5%", "0", "5%"],
        ["22:14:00", "-", "0", "5%"],
    ]

    rows = list(
        csv.DictReader(
            io.StringIO(invoke("--format", "csv", "--csv-table", "aligned", *two_hosts).stdout)
        )
    )
    keep_alive = [
        (row["wall_start"], row["host"], row["process_forks"])
        for row in rows
        if row["role"] == "keep_alive"
    ]
    assert keep_alive == [
        ("2023-11-14T22:13:20.000Z", "web-1", "2"),
        ("2023-11-14T22:13:30.000Z", "web-1", "0"),
        ("2023-11-14T22:13:40.000Z", "web-1", "1"),
        ("2023-11-14T22:13:40.000Z", "web-2", "1"),
        ("2023-11-14T22:13:50.000Z", "web-1", "0"),
        ("2023-11-14T22:13:50.000Z", "web-2", "0"),
        ("2023-11-14T22:14:00.000Z", "web-2", "0"),
    ]


def test_host_without_clock_left_out(tmp_path, two_hosts):
    records = host_records("web-3", 0, [1], 10)
    del records[0]["clock"]
    web3 = write_stream(tmp_path / "web-3.msgpack", records)

    report = build_report([*two_hosts, web3])

    assert report["aligned"]["hosts"] == ["web-1", "web-2"]
    assert report["aligned"]["hosts_without_clock"] == ["web-3"]
    assert report["warnings"] == [
        (
            "the streams of web-3 have no clock in their header, "
            "so it is left out of the wall-clock view"
        )
    ]
    assert build_report([two_hosts[0]])["aligned"] is None


# Rotated streams


def rotated_parts(tmp_path, drop_trailer: bool = False, last_reason: str = "duration") -> list[str]:
    """One trace cut into two parts at 20 s; a command runs from 15 s to 25 s."""
    part1 = [header(part=1), *roots()]
    part1 += run_true(5, 6000)
    part1 += [fork(12, "process_command", 6001, ROOTS["process_command"])]
    part1.append(bucket(0, 10, {"process_command": counters(10, 0.1)}))
    part1.append(marker(15, "start"))
    part1.append(bucket(10, 20, {"process_command": counters(10, 0.1)}, lost={"events": 2}))
    part1.append(trailer(20, lost={"events": 2}, reason="rotate"))

    part2 = [header(part=2, start=at(20)), *roots(20)]
    # The process forked in part 1 execs in part 2 at its depth.
    part2.append(exec_(21, "process_command", 6001, "/bin/true", ["true"]))
    part2.append(marker(25, "end"))
    part2.append(bucket(20, 30, {"process_command": counters(10, 0.1)}, lost={"events": 1}))
    if not drop_trailer:
        part2.append(trailer(30, lost={"events": 3}, reason=last_reason))
    return [
        write_stream(tmp_path / "trace.0001.msgpack", part1),
        write_stream(tmp_path / "trace.0002.msgpack", part2),
    ]


def test_rotated_parts_read_as_one_stream(tmp_path):
    paths = rotated_parts(tmp_path)

    report = build_report(list(reversed(paths)))

    role = report["roles"]["process_command"]
    assert report["duration_seconds"] == 30.0
    assert [entry["start"] for entry in role["timeline"]] == [0.0, 10.0, 20.0]
    assert role["exec_depths"] == {"1": 2}
    # The trailer of the last part has the totals since the first part.
    assert report["lost"]["events"] == 3
    assert report["lower_bounds"] is True
    [command] = report["commands"]
    assert (command["start"], command["end"], command["ongoing"]) == (15.0, 25.0, False)
    assert command["roles"]["process_command"]["execs"] == 1
    assert [stream["path"] for stream in report["streams"]] == list(reversed(paths))
    assert report["warnings"] == []


def test_rotated_last_part_without_trailer(tmp_path):
    report = build_report(rotated_parts(tmp_path, drop_trailer=True))

    # Part 1's trailer (2) plus the buckets of part 2 (1).
    assert report["lost"]["events"] == 3
    assert report["truncated"] is True


def test_rotated_missing_part_warns(tmp_path):
    first, second = rotated_parts(tmp_path, last_reason="rotate")
    third = tmp_path / "trace.0004.msgpack"
    records = [header(part=4, start=at(40)), trailer(50)]
    write_stream(third, records)

    report = build_report([first, second, str(third)])

    assert report["warnings"] == [
        (
            f"part 3 is missing from the rotated stream of web-1 before {third}, "
            "so the report has a gap there"
        )
    ]
    assert report["duration_seconds"] == 50.0


def test_restarted_run_is_a_new_stream(tmp_path):
    # Part 2 ended its run on a signal; the restarted tracer went on with
    # part 3, which has losses, clock and processes of its own.
    first, second = rotated_parts(tmp_path, last_reason="signal")
    restart = REALTIME + 100 * SECOND
    part3 = [
        header(part=3, start=at(100), clock={"monotonic_ns": at(100), "realtime_ns": restart}),
        *roots(100),
        marker(101, "start", marker_id="c-2"),
        exec_(102, "process_command", 6001, "/bin/true", ["true"]),
        bucket(100, 110, {"process_command": counters(10, 0.1)}, lost={"events": 1}),
        trailer(110, lost={"events": 1}),
    ]
    third = write_stream(tmp_path / "trace.0003.msgpack", part3)

    report = build_report([first, second, third])

    assert report["warnings"] == []
    # Two runs: 3 events lost in the first (its last trailer), 1 in the second.
    assert report["lost"]["events"] == 4
    assert report["duration_seconds"] == 30.0
    first_command, second_command = report["commands"]
    assert (first_command["start"], first_command["end"]) == (15.0, 25.0)
    assert (second_command["start"], second_command["ongoing"]) == (1.0, True)
    assert second_command["wall_start"] == "2023-11-14T22:15:01.000Z"
    # pid 6001 of the second run was never forked there: its depth is unknown.
    assert report["roles"]["process_command"]["exec_depths"] == {"1": 2, "unknown": 1}


# Lost data and truncation


def test_truncated_stream_marks_every_section(tmp_path):
    path = write_stream(tmp_path / "cut.msgpack", configure_records()[:-1])

    report = build_report([path])

    assert report["lower_bounds"] is True
    assert report["commands"][0]["lower_bounds"] is True
    assert all(row["lower_bound"] for row in report["compare"])
    timeline = list(csv.DictReader(io.StringIO(invoke("--format", "csv", path).stdout)))
    assert {row["lower_bound"] for row in timeline} == {"true"}
    compare = list(csv.DictReader(io.StringIO(invoke("--format", "csv", "--compare", path).stdout)))
    assert {row["lower_bound"] for row in compare} == {"true"}
    for args in ((path,), ("--compare", path)):
        lines = invoke(*args).stdout.splitlines()
        assert "  A stream ends early, so every count above is a lower bound." in lines


# The real demo


@pytest.mark.root
def test_demo_stream_analysis(tmp_path):
    stream = tmp_path / "demo.msgpack"
    demo = subprocess.run(
        [sys.executable, "-m", "tracer", "demo", "--speed", "40", "--json", "-o", str(stream)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    truth = json.loads(demo.stdout)["expected"]

    report = build_report([stream])

    [command] = report["commands"]
    [expected] = truth["commands"]
    assert command["id"] == expected["id"]
    assert command["name"] == "configure"
    assert command["detail"]["exit_code"] == expected["exit_code"]
    process_command = report["roles"]["process_command"]
    assert (
        sum(process_command["exec_depths"].values()) == truth["roles"]["process_command"]["execs"]
    )
    assert "unknown" not in process_command["exec_depths"]
    during = command["roles"]["process_command"]
    assert during["ratios"]["process_forks"] > 10
    keep_alive = report["roles"]["keep_alive"]
    assert (
        sum(row["execs"] for row in keep_alive["command_lines"].values())
        == truth["roles"]["keep_alive"]["execs"]
    )
