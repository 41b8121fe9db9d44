"""Test tiers: unprivileged by default, `@pytest.mark.root` for the real kernel.

Root tests skip with a reason when not run as root. With
AGENT_TRACER_REQUIRE_ROOT=1 (scripts/test.sh sets it for root) a root test
that skips, for any reason, fails instead, so that a broken set-up can never
pass as green.
"""

import os

import pytest

REQUIRE_ROOT = os.environ.get("AGENT_TRACER_REQUIRE_ROOT") == "1"


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") is None or os.geteuid() == 0:
        return
    if REQUIRE_ROOT:
        pytest.fail("root test cannot run: not root, and AGENT_TRACER_REQUIRE_ROOT=1")
    pytest.skip("needs root (BPF programs are loaded into the kernel)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ROOT and report.skipped and item.get_closest_marker("root") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"root test skipped while AGENT_TRACER_REQUIRE_ROOT=1: {reason}"


@pytest.fixture(scope="session")
def live_tracer(tmp_path_factory):
    """One `agent-tracer trace` run shared by the root tests of the session."""
    from livetracer import LiveTracer

    tracer = LiveTracer(tmp_path_factory.mktemp("live") / "session.msgpack")
    tracer.wait_ready()
    yield tracer
    code, _ = tracer.stop()
    assert code == 0, f"tracer exited with {code}: {tracer.stderr_text()}"


@pytest.fixture(scope="session")
def compat_tracer(tmp_path_factory):
    """A second shared run that believes sched_process_exit has no group_dead (as on 6.1)."""
    from livetracer import LiveTracer

    env = dict(os.environ, AGENT_TRACER_HIDE_FIELDS="sched_process_exit.group_dead")
    tracer = LiveTracer(tmp_path_factory.mktemp("compat") / "session.msgpack", env=env)
    tracer.wait_ready()
    yield tracer
    code, _ = tracer.stop()
    assert code == 0, f"tracer exited with {code}: {tracer.stderr_text()}"


@pytest.fixture(params=["live_tracer", "compat_tracer"], ids=["native", "no_group_dead"])
def any_tracer(request):
    """Each shared tracer run in turn: the kernel's own layout, then the fallback without group_dead."""
    return request.getfixturevalue(request.param)
