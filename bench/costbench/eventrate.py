"""Event throughput: one spawner per CPU at full speed under agent-tracer, with the lost-event count."""

import logging
import os

from .measure import DONE_TIMEOUT, READY_TIMEOUT
from .processes import BenchError, GatedWorkload
from .tools import ROLE_NAME, ROLE_TITLE, Scope

log = logging.getLogger(__name__)

EVENT_KEYS = ("process_forks", "thread_creations", "execs", "failed_execs", "exits")
# More spawns than any spawner makes in its time limit, so the limit ends it.
UNBOUNDED_SPAWNS = 10**9


def measure_event_rate(context, tracer, seconds, spawners=None):
    """Run one role spawner per CPU for seconds under agent-tracer; return events per second and losses."""
    spawners = spawners or os.cpu_count()
    workloads = []
    session = None
    output = ""
    try:
        for _ in range(spawners):
            workloads.append(
                GatedWorkload(
                    [ROLE_TITLE, str(UNBOUNDED_SPAWNS), str(seconds)],
                    executable=str(context.binaries["spawn-loop"]),
                )
            )
        for workload in workloads:
            workload.wait_ready(READY_TIMEOUT)
        session = tracer.start(Scope([workload.pid for workload in workloads]), context.out_dir)
        session.sample.read()
        cpu_before = session.sample.cpu_seconds

        for workload in workloads:
            workload.open_gate()
        results = [
            workload.wait_done(DONE_TIMEOUT, on_poll=session.sample.read) for workload in workloads
        ]
        session.sample.read()
        tracer_cpu = session.sample.cpu_seconds - cpu_before
    finally:
        if session:
            output = tracer.stop(session)
        for workload in workloads:
            workload.finish()

    report = tracer.report(output)
    if report is None:
        raise BenchError("agent-tracer printed no JSON report at exit")
    role = report["roles"].get(ROLE_NAME, {})
    events = {key: role.get(key, 0) for key in EVENT_KEYS}
    spawns = sum(operations for operations, _ in results)
    elapsed = max(elapsed_ns for _, elapsed_ns in results) / 1e9
    return {
        "spawners": spawners,
        "seconds": elapsed,
        "spawns": spawns,
        "events": events,
        "events_total": sum(events.values()),
        "events_per_second": sum(events.values()) / elapsed,
        "lost": report.get("lost", {}),
        "tracer_cpu_seconds": tracer_cpu,
        "tracer_cpu_percent": 100 * tracer_cpu / elapsed,
        "stream": str(session.output_path),
    }
