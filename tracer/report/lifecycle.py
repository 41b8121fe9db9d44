"""Lifecycle commands from marker records, and what each role did during them and outside them.

A command is a `start` marker and the `end` marker with the same `id` (or
the same `name` when markers carry no id). Events count towards every
command open at their `ts`, exactly. Bucket counters (syscalls, CPU) cover
a span of time, so each command gets the share of a bucket that it
overlaps: whole buckets exactly, the one or two buckets at its edges pro
rata. Whatever no command covers is the baseline.

Markers are stamped with the time the tracer read the agent's log line, so
in a stream every marker comes before the bucket record whose span
contains its `ts`. The tracker relies on that order.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

# Commands kept per stream; markers beyond it are counted and skipped, so
# that a stream full of markers cannot take memory without bound.
MAX_COMMANDS = 10_000


@dataclass
class CommandWindow:
    """One lifecycle command in one stream, with the counts of each role during it.

    Times are monotonic ns. `end_ns` is None while the command is open, and
    stays None for a command still running when the stream ended.
    """

    key: str
    id: str | None
    name: str
    start_ns: int
    end_ns: int | None = None
    started_before_trace: bool = False
    detail: dict = field(default_factory=dict)
    # Role → counts: the event counts, "syscalls" and "cpu_ns" (floats where
    # a bucket was shared pro rata) and "counter_ns", the time of the bucket
    # counters inside the command.
    roles: dict[str, Counter] = field(default_factory=dict)
    counter_ns: float = 0.0

    def role(self, name: str) -> Counter:
        counts = self.roles.get(name)
        if counts is None:
            counts = self.roles[name] = Counter()
        return counts


@dataclass
class Instant:
    """A marker that is not part of a start/end pair, such as one without a phase."""

    name: str
    ts: int
    id: str | None
    phase: str | None
    detail: dict


@dataclass
class Baseline:
    """Counts of each role outside every command, and the time they cover."""

    roles: dict[str, Counter] = field(default_factory=dict)
    counter_ns: float = 0.0
    seconds: float = 0.0

    def role(self, name: str) -> Counter:
        counts = self.roles.get(name)
        if counts is None:
            counts = self.roles[name] = Counter()
        return counts

    def add(self, other: Baseline) -> None:
        for name, counts in other.roles.items():
            self.role(name).update(counts)
        self.counter_ns += other.counter_ns
        self.seconds += other.seconds


class LifecycleTracker:
    """Pairs the markers of one stream and splits its counts between commands and the baseline."""

    def __init__(self, start_ns: int, totals_so_far: Callable[[], tuple[dict[str, Counter], int]]):
        """Track the commands of a stream that starts at `start_ns`.

        `totals_so_far()` returns the stream's counts per role until now
        (events, "syscalls" and "cpu_ns") and the ns of counter readings
        until now.
        """
        self.start_ns = start_ns
        self.totals_so_far = totals_so_far
        self.commands: list[CommandWindow] = []
        self.instants: list[Instant] = []
        self.open: dict[str, CommandWindow] = {}
        self.ended: set[str] = set()
        # Commands that a bucket record still to come may overlap: the open
        # ones and those that ended after the last bucket's end.
        self.active: list[CommandWindow] = []
        self.baseline = Baseline()
        self.notes: list[str] = []
        self.skipped_markers = 0

    def marker(self, record: dict) -> None:
        """Start or end a command, or keep a marker of another phase as an instant."""
        phase = record.get("phase")
        name = record["name"]
        marker_id = record.get("id")
        key = marker_id if marker_id is not None else name
        detail = plain_detail(record.get("detail", {}))

        if phase == "start":
            self.start(key, marker_id, name, record["ts"], detail)
        elif phase == "end":
            self.end(key, marker_id, name, record["ts"], detail)
        elif len(self.instants) < MAX_COMMANDS:
            self.instants.append(Instant(name, record["ts"], marker_id, phase, detail))
        else:
            self.skipped_markers += 1

    def start(self, key: str, marker_id: str | None, name: str, ts: int, detail: dict) -> None:
        if key in self.open or key in self.ended:
            self.notes.append(f"a second start marker of command {key} was ignored")
            return
        if len(self.commands) >= MAX_COMMANDS:
            self.skipped_markers += 1
            return

        command = CommandWindow(key=key, id=marker_id, name=name, start_ns=ts, detail=detail)
        self.commands.append(command)
        self.open[key] = command
        self.active.append(command)

    def end(
        self,
        key: str,
        marker_id: str | None,
        name: str,
        ts: int,
        detail: dict,
    ) -> None:
        command = self.open.pop(key, None)
        if command is None:
            if key in self.ended:
                self.notes.append(f"a second end marker of command {key} was ignored")
                return
            if len(self.commands) >= MAX_COMMANDS:
                self.skipped_markers += 1
                return
            command = self.started_before_trace(key, marker_id, name)

        command.end_ns = ts
        command.detail.update(detail)
        self.ended.add(key)

    def started_before_trace(self, key: str, marker_id: str | None, name: str) -> CommandWindow:
        """Open a command that ended before its start was seen: it covers the stream from its start.

        Everything counted so far happened during it, so it takes the
        stream's counts until now, and the baseline gives them up.
        """
        command = CommandWindow(
            key=key, id=marker_id, name=name, start_ns=self.start_ns, started_before_trace=True
        )
        roles, counter_ns = self.totals_so_far()
        for role_name, counts in roles.items():
            command.role(role_name).update(counts)
        command.counter_ns = counter_ns
        self.baseline = Baseline()
        self.commands.append(command)
        self.active.append(command)
        return command

    def event(self, role: str, count_name: str) -> None:
        """Count one event towards every open command, or the baseline when none is open."""
        if not self.open:
            counts = self.baseline.roles.get(role)
            if counts is None:
                counts = self.baseline.role(role)
            counts[count_name] += 1
            return
        for command in self.open.values():
            counts = command.roles.get(role)
            if counts is None:
                counts = command.role(role)
            counts[count_name] += 1

    def bucket(self, start_ns: int, end_ns: int, role_counts: dict[str, tuple[int, int]]) -> None:
        """Share a bucket's (syscalls, cpu_ns) per role between its commands and the baseline."""
        length = end_ns - start_ns
        if length <= 0:
            return

        spans = []
        for command in self.active:
            overlap_start = max(start_ns, command.start_ns)
            overlap_end = end_ns if command.end_ns is None else min(end_ns, command.end_ns)
            if overlap_end > overlap_start:
                spans.append((overlap_start, overlap_end))
                share_bucket(command.role, role_counts, (overlap_end - overlap_start) / length)
                command.counter_ns += overlap_end - overlap_start

        outside = length - union_length(spans)
        if outside > 0:
            share_bucket(self.baseline.role, role_counts, outside / length)
            self.baseline.counter_ns += outside

        self.active = [
            command for command in self.active if command.end_ns is None or command.end_ns > end_ns
        ]

    def finish(self, end_ns: int) -> None:
        """Close the stream at `end_ns`: compute the baseline's time; open commands stay ongoing."""
        spans = [
            (max(command.start_ns, self.start_ns), min(command_end(command, end_ns), end_ns))
            for command in self.commands
        ]
        duration = max(0, end_ns - self.start_ns)
        self.baseline.seconds = max(0, duration - union_length(spans)) / 1e9
        if self.skipped_markers:
            self.notes.append(
                f"{self.skipped_markers} markers beyond the first {MAX_COMMANDS} commands "
                "were skipped"
            )


def command_end(command: CommandWindow, stream_end_ns: int) -> int:
    """Return the end of a command, or the stream's end for one still running."""
    return stream_end_ns if command.end_ns is None else command.end_ns


def share_bucket(role_of, role_counts: dict[str, tuple[int, int]], fraction: float) -> None:
    """Add `fraction` of each role's bucket counters to the Counter that `role_of(role)` returns."""
    for role_name, (syscalls, cpu_ns) in role_counts.items():
        counts = role_of(role_name)
        if fraction == 1.0:
            counts["syscalls"] += syscalls
            counts["cpu_ns"] += cpu_ns
        else:
            counts["syscalls"] += syscalls * fraction
            counts["cpu_ns"] += cpu_ns * fraction


def union_length(spans: list[tuple[int, int]]) -> int:
    """Return the total length covered by possibly overlapping [start, end) spans."""
    total = 0
    covered_until = None
    for start, end in sorted(spans):
        if end <= start:
            continue
        if covered_until is None or start >= covered_until:
            total += end - start
            covered_until = end
        elif end > covered_until:
            total += end - covered_until
            covered_until = end
    return total


def plain_detail(detail: dict) -> dict:
    """Return a marker's detail with string keys and JSON values; anything else becomes its repr."""
    plain = {}
    for key, value in detail.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            plain[str(key)] = value
        else:
            plain[str(key)] = repr(value)
    return plain
