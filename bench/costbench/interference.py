"""Signs that something outside the benchmark disturbed a run: other tracers, other busy processes."""

import json
import logging
import subprocess
import time

log = logging.getLogger(__name__)

# Program types that run on kernel events of every process, and so would
# tax an "untraced" run (bpftool's names for them).
TRACING_TYPES = {
    "tracepoint",
    "raw_tracepoint",
    "raw_tracepoint_writable",
    "kprobe",
    "perf_event",
    "tracing",
}


def tracing_programs():
    """Return [(id, type, name)] of the tracing BPF programs loaded now, or None without bpftool."""
    try:
        result = subprocess.run(
            ["bpftool", "prog", "show", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        programs = json.loads(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        log.debug("bpftool prog show failed: %s", error)
        return None
    return [
        (entry["id"], entry.get("type"), entry.get("name", ""))
        for entry in programs
        if entry.get("type") in TRACING_TYPES
    ]


class BusyMeter:
    """Fraction of all CPUs' time that was not idle between start() and stop(), from /proc/stat."""

    def __init__(self):
        self.start_times = None

    @staticmethod
    def read():
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        # Fields: user nice system idle iowait irq softirq steal guest guest_nice;
        # guest time is already inside user and nice.
        idle = values[3] + values[4]
        total = sum(values[:8])
        return idle, total

    def start(self):
        self.start_times = self.read()

    def stop(self):
        """Return the busy fraction since start(), or None when no time has passed."""
        idle_before, total_before = self.start_times
        idle_after, total_after = self.read()
        total = total_after - total_before
        if total <= 0:
            return None
        return 1 - (idle_after - idle_before) / total


# Busy fraction of all CPUs, between runs, below which the machine counts as quiet.
QUIET_BUSY = 0.10
QUIET_SAMPLE_SECONDS = 0.5


def wait_for_quiet(max_seconds, busy_limit=QUIET_BUSY, sleep=None):
    """Wait up to max_seconds until no tracing BPF program is loaded and the CPUs are idle.

    The CPUs count as idle while their busy fraction is under busy_limit;
    1 or more waits for the BPF programs alone.

    Return a description of what still disturbed the machine when the wait
    timed out, or None when it became quiet.
    """
    sleep = sleep or time.sleep
    deadline = time.monotonic() + max_seconds
    while True:
        programs = tracing_programs() or []
        meter = BusyMeter()
        meter.start()
        sleep(QUIET_SAMPLE_SECONDS)
        busy = meter.stop() or 0.0
        if not programs and busy < busy_limit:
            return None
        if time.monotonic() >= deadline:
            names = ", ".join(sorted({name for _, _, name in programs})) or "none"
            return f"{len(programs)} tracing BPF programs loaded ({names}), CPUs {busy:.0%} busy"
