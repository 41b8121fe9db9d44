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
    commands = demo_output["measured"]["commands"]
    assert [command["name"] for command in commands] == ["configure"]
    assert demo_output["expected"]["commands"][0]["type"] == "configure"

    during = commands[0]["roles"]["process_command"]["rates"]["process_forks"]
    baseline = commands[0]["roles"]["process_command"]["baseline_rates"]["process_forks"]
    print(f"\nprocess_command forks/s: {during:.1f} during configure, {baseline:.2f} outside")
    assert during >= 10 * baseline

    timeline = demo_output["measured"]["roles"]["process_command"]["timeline"]
    assert sum(bucket["process_forks"] for bucket in timeline) == demo_output["expected"]["roles"]["process_command"]["process_forks"]


def test_demo_nothing_lost(demo_output):
    assert demo_output["measured"]["lower_bounds"] is False
