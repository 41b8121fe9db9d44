"""Smoke test of the cost benchmark: `bench/run --quick` completes and writes every result.

Benchmarks are not tests, so nothing here looks at a time. What can be
known exactly is checked: agent-tracer must have counted exactly the
syscalls, execs and forks that each workload made.
"""

import json
import subprocess
from pathlib import Path

import pytest

BENCH_RUN = Path(__file__).resolve().parent.parent / "bench" / "run"
WORKLOADS = ("getppid_role", "getppid_other", "spawn_role", "demo")
TOOLS = (
    "untraced",
    "agent_tracer",
    "agent_tracer_no_syscalls",
    "syscount",
    "bpftrace",
    "perf_trace",
    "strace",
)
# A hang guard for the subprocess, not a timing assertion.
HANG_GUARD_SECONDS = 900


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run `bench/run --quick` once; return (completed process, JSON document)."""
    directory = tmp_path_factory.mktemp("bench")
    json_path = directory / "bench.json"
    command = [
        str(BENCH_RUN),
        "--quick",
        "--events-seconds",
        "2",
        "--json",
        str(json_path),
        "--out",
        str(directory / "out"),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, check=False
    )
    assert result.returncode == 0, (
        f"bench/run --quick exited with {result.returncode}:\n{result.stderr[-3000:]}"
    )
    return result, json.loads(json_path.read_text())


def runs_of(document, workload, tool):
    return [run for run in document["runs"] if run["workload"] == workload and run["tool"] == tool]


@pytest.mark.root
def test_quick_run_reports_every_pair(quick_run):
    result, document = quick_run

    for workload in WORKLOADS:
        assert workload in document["results"], f"workload {workload} missing from results"
        for tool in TOOLS:
            assert tool in document["results"][workload], f"{workload}/{tool} missing from results"
            assert runs_of(document, workload, tool), f"{workload}/{tool} has no run record"
    assert "agent-tracer" in result.stdout
    assert "Targets:" in result.stdout


@pytest.mark.root
def test_quick_run_agent_tracer_runs_without_error(quick_run):
    _, document = quick_run

    for workload in WORKLOADS:
        for tool in ("untraced", "agent_tracer", "agent_tracer_no_syscalls"):
            errors = [run["error"] for run in runs_of(document, workload, tool) if "error" in run]
            assert errors == [], f"{workload} under {tool} failed: {errors}"


@pytest.mark.root
def test_quick_run_agent_tracer_counts_exactly(quick_run):
    _, document = quick_run

    for run in runs_of(document, "getppid_role", "agent_tracer"):
        assert run["seen"] == run["operations"], "getppid calls counted in the role process"
    for run in runs_of(document, "getppid_other", "agent_tracer"):
        assert run["seen"] == 0, "getppid calls counted outside every role"
    for tool in ("agent_tracer", "agent_tracer_no_syscalls"):
        for run in runs_of(document, "spawn_role", tool):
            assert run["seen"] == run["operations"], f"execs counted by {tool} in the spawn loop"
        for run in runs_of(document, "demo", tool):
            assert run["seen"] == run["expected_forks"], f"forks counted by {tool} in the demo"


@pytest.mark.root
def test_quick_run_extras_present(quick_run):
    _, document = quick_run

    assert "error" not in document["bpf_stats"], document["bpf_stats"].get("error")
    assert document["bpf_stats"]["spawns"] == 100
    assert "error" not in document["event_rate"], document["event_rate"].get("error")
    event_rate = document["event_rate"]
    assert event_rate["events"]["process_forks"] == event_rate["spawns"]
    assert event_rate["events"]["execs"] == event_rate["spawns"]
    assert {entry["name"] for entry in document["targets"]} >= {
        "a_added",
        "b_added",
        "startup",
        "rss",
        "lost_events",
    }
