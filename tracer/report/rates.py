"""Rates per role, the baseline they are compared with, and the busiest window of each role.

Event counts become rates per second of wall time. Syscalls and CPU time
come from bucket counters, so their rates divide by the time those
counters cover (`counter_ns`), and CPU is given as percent of one core.
The baseline of a host is what each role did outside every lifecycle
command; with no commands it is the whole trace.
"""

from __future__ import annotations

import math
from collections import Counter

from tracer.report.aggregate import COUNT_NAMES, NS_PER_SECOND, HostTotals, RoleTotals

# Metric key in rates and ratios → its label in text.
METRICS = {
    "process_forks": "forks",
    "thread_creations": "thread creations",
    "execs": "execs",
    "failed_execs": "failed execs",
    "exits": "exits",
    "syscalls": "syscalls",
    "cpu_core_percent": "CPU",
}

# Window length for the busiest window of a host without lifecycle commands.
DEFAULT_WINDOW_SECONDS = 60.0


def percent(part: float, whole: float) -> float | None:
    """Return part / whole in percent, or None when `whole` is zero."""
    if whole <= 0:
        return None
    return 100.0 * part / whole


def rates(counts: Counter, seconds: float, counter_ns: float) -> dict:
    """Return per-second rates of the event counts and syscalls, and CPU in % of one core.

    A rate is None when the time it divides by is zero.
    """
    result = {}
    for name in COUNT_NAMES:
        result[name] = counts[name] / seconds if seconds > 0 else None
    counter_seconds = counter_ns / NS_PER_SECOND
    result["syscalls"] = counts["syscalls"] / counter_seconds if counter_seconds > 0 else None
    result["cpu_core_percent"] = percent(counts["cpu_ns"], counter_ns)
    return result


def ratios(during: dict, baseline: dict | None) -> tuple[dict, list[str]]:
    """Return during / baseline per metric, and the metrics with activity but a zero baseline.

    A ratio is None where the baseline is zero or unknown. A metric whose
    baseline is zero and whose rate during the window is not is "new
    activity".
    """
    result = {}
    new_activity = []
    for metric in METRICS:
        rate = during.get(metric)
        base = None if baseline is None else baseline.get(metric)
        if rate is None or base is None or base == 0:
            result[metric] = None
            if rate and base == 0:
                new_activity.append(metric)
        else:
            result[metric] = rate / base
    return result, new_activity


def baseline_rates(host: HostTotals) -> dict[str, dict]:
    """Return the baseline rates of every role of a host."""
    baseline = host.baseline
    return {
        name: rates(baseline.roles.get(name, Counter()), baseline.seconds, baseline.counter_ns)
        for name in host.roles
    }


def window_seconds(host: HostTotals) -> float:
    """Return the length of the busiest window: the host's longest command, else 60 s."""
    longest = 0.0
    for stream in host.streams:
        for command in stream.lifecycle.commands:
            end = stream.last_ns if command.end_ns is None else command.end_ns
            longest = max(longest, (end - max(command.start_ns, stream.start)) / NS_PER_SECOND)
    return longest if longest > 0 else DEFAULT_WINDOW_SECONDS


def busiest_window(host: HostTotals, role: RoleTotals, seconds: float) -> dict:
    """Find the role's busiest run of whole buckets lasting `seconds`, on the host's timeline.

    Busiest means the most CPU time; for a role without any CPU time, the
    most events and syscalls together. Windows start at a bucket that the
    trace covered. Returns the window's start and length in seconds, what
    it was ranked by, its counts and the time its counters cover.
    """
    interval = host.interval_ns
    width_ns = max(1, math.ceil(seconds * NS_PER_SECOND / interval)) * interval
    ranked_by = "cpu" if role.cpu_ns > 0 else "events"
    starts = sorted(host.bucket_starts) or [0]

    def score(start_ns: int) -> int:
        counts = role.timeline.get(start_ns)
        if counts is None:
            return 0
        if ranked_by == "cpu":
            return counts["cpu_ns"]
        return sum(counts[name] for name in COUNT_NAMES) + counts["syscalls"]

    # Two pointers over the covered buckets: [first, last) is the window
    # that starts at starts[first].
    scores = [score(start_ns) for start_ns in starts]
    best_total, best_first, best_last = -1, 0, 0
    total, last = 0, 0
    for first, window_start in enumerate(starts):
        while last < len(starts) and starts[last] < window_start + width_ns:
            total += scores[last]
            last += 1
        if total > best_total:
            best_total, best_first, best_last = total, first, last
        total -= scores[first]

    counts = Counter()
    counter_ns = 0
    for start_ns in starts[best_first:best_last]:
        counts.update(role.timeline.get(start_ns, Counter()))
        counter_ns += host.counter_ns.get(start_ns, 0)

    start_ns = starts[best_first]
    # A trace shorter than the window gives a window as long as the trace.
    if host.duration_ns < width_ns:
        start_ns = 0
    length_ns = max(0, min(width_ns, host.duration_ns - start_ns))
    return {
        "start": start_ns / NS_PER_SECOND,
        "seconds": length_ns / NS_PER_SECOND,
        "ranked_by": ranked_by,
        "counts": counts,
        "counter_ns": counter_ns,
    }
