"""Root test: the CPU budget sheds work under a storm and says so in the stream."""

import os

import pytest

from livetracer import LiveTracer, Workload, role_summary
from test_root_attribution import unique_role

pytestmark = pytest.mark.root


def test_budget_sheds_argument_capture(tmp_path):
    tracer = LiveTracer(tmp_path / "budget.msgpack", extra_args=["--max-cpu", "0.5"])
    try:
        tracer.wait_ready()
        role = unique_role("budget")
        workload = Workload(role, "cases.py", "storm", os.cpu_count(), 1500)
        workload.run(tracer)
    finally:
        # Stopping drains the ring buffer. Waiting for a bucket instead could
        # take minutes, because the budget stretches the interval up to 60 s.
        code, _ = tracer.stop()
    records = tracer.read()
    assert code == 0

    notices = [r for r in records if r.get("type") == "notice" and r["kind"] == "cpu_budget"]
    assert notices, "no cpu_budget notice under a storm with a 0.5% budget"
    first = notices[0]
    assert first["message"] == "exec argument capture turned off"
    assert first["detail"]["cpu_percent"] > 0.5
    print(f"\nbudget notices: {[(n['message'], n['detail']['cpu_percent']) for n in notices]}")

    # Attempts stashed in the moment between the notice and the switch keep their arguments.
    settled_ns = first["ts"] + 100_000_000
    later_execs = [r for r in records if r.get("type") == "exec" and r["ts"] > settled_ns and r["role"] == role]
    assert later_execs
    assert all(r["argv"] == [] for r in later_execs)
    assert role_summary(records, role)["execs"] == os.cpu_count() * 1500
