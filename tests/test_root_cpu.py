"""Root test: CPU time per role, short-lived children included."""

import json
import time

import pytest

from livetracer import Workload
from test_root_attribution import unique_role

pytestmark = pytest.mark.root


# "fifo": no ordinary task preempts the child, so its one slice on the CPU
# ends only after sched_process_exit has ended its process.
@pytest.mark.parametrize(("milliseconds", "policy"), [(200, "normal"), (1000, "normal"), (200, "fifo")])
def test_child_cpu_time_within_ten_percent(live_tracer, milliseconds, policy):
    role = unique_role("cpu")
    workload = Workload(role, "cases.py", "busy_child", milliseconds, policy)

    # The root was blocked before the gate and is blocked again after its
    # result line, so the buckets in between contain only the measured work.
    workload.open_gate(live_tracer, settle=1.0, close_stdin=False)
    output = json.loads(workload.process.stdout.readline())
    result_ns = time.monotonic_ns()
    live_tracer.wait_for_record(
        lambda r: r.get("type") == "bucket" and r["start"] > result_ns,
        what="a bucket that starts after the result line",
    )
    records = live_tracer.read()
    workload.process.communicate(timeout=60)

    measured = sum(
        record["roles"].get(role, {}).get("cpu_ns", 0)
        for record in records
        if record.get("type") == "bucket" and record["end"] > workload.gate_ns and record["start"] < result_ns
    ) / 1e9
    child = output["cpu_seconds"]
    expected = child + output["parent_cpu_seconds"]
    print(f"\nbusy child of {milliseconds} ms ({policy}): child {child:.4f} s, role total expected {expected:.4f} s, measured {measured:.4f} s")

    assert workload.process.returncode == 0
    assert child >= milliseconds / 1000 * 0.95
    assert abs(measured - expected) <= 0.10 * expected
