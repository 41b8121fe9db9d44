"""Root test: `agent-tracer demo` measures exactly what the emulator says it did."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root

COMPARED = ("process_forks", "thread_creations", "execs", "failed_execs", "exits")


@pytest.fixture(scope="module")
def demo_output():
    result = subprocess.run(
        [sys.executable, "-m", "tracer", "demo", "--json", "--speed", "40", "--interval", "0.5"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("role", ["master", "keep_alive", "statistics", "process_command"])
def test_demo_counts_equal_ground_truth(demo_output, role):
    measured = demo_output["measured"]["roles"][role]
    expected = demo_output["expected"]["roles"][role]
    for key in COMPARED:
        assert measured[key] == expected[key], key


def test_demo_configure_burst_in_timeline(demo_output):
    timeline = demo_output["measured"]["roles"]["process_command"]["timeline"]
    forks = sorted(bucket["process_forks"] for bucket in timeline)
    median = forks[len(forks) // 2]
    assert forks[-1] >= 10 * max(median, 1)
    assert len(demo_output["expected"]["commands"]) == 1
    assert demo_output["expected"]["commands"][0]["type"] == "configure"


def test_demo_nothing_lost(demo_output):
    assert demo_output["measured"]["lower_bounds"] is False
