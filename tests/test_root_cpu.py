"""Root test: CPU time per role, short-lived children included."""

import pytest

from test_root_attribution import run_case

pytestmark = pytest.mark.root


@pytest.mark.parametrize("milliseconds", [200, 1000])
def test_child_cpu_time_within_ten_percent(live_tracer, milliseconds):
    _, _, output, summary, _ = run_case(live_tracer, "cpu", "busy_child", milliseconds)
    measured = summary["cpu_ns"] / 1e9
    expected = output["cpu_seconds"]
    print(f"\nbusy child of {milliseconds} ms: getrusage {expected:.4f} s, role CPU {measured:.4f} s")
    assert expected >= milliseconds / 1000 * 0.95
    assert abs(measured - expected) <= 0.10 * expected
