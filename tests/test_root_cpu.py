"""Root test: CPU time per role, short-lived children included."""

import pytest

from livetracer import Workload, settled
from test_root_attribution import unique_role

pytestmark = pytest.mark.root


# "fifo": no ordinary task preempts the child, so its one slice on the CPU
# ends only after sched_process_exit has ended its process.
@pytest.mark.parametrize(("milliseconds", "policy"), [(200, "normal"), (1000, "normal"), (200, "fifo")])
def test_child_cpu_time_within_ten_percent(live_tracer, milliseconds, policy):
    role = unique_role("cpu")
    workload = Workload(role, "cases.py", "busy_child", milliseconds, policy)
    output = workload.run(live_tracer, settle=1.0)
    records = settled(live_tracer, workload.pid, role)

    # Buckets that end after the gate: the root was blocked before it, so
    # earlier CPU time (interpreter start-up) is in earlier buckets.
    measured = sum(
        record["roles"].get(role, {}).get("cpu_ns", 0)
        for record in records
        if record.get("type") == "bucket" and record["end"] > workload.gate_ns
    ) / 1e9
    child = output["cpu_seconds"]
    expected = child + output["parent_cpu_seconds"]
    print(f"\nbusy child of {milliseconds} ms ({policy}): child {child:.4f} s, role total expected {expected:.4f} s, measured {measured:.4f} s")

    assert child >= milliseconds / 1000 * 0.95
    assert abs(measured - expected) <= 0.10 * expected
