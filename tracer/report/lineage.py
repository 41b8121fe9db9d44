"""Follow process generations below each role root, from root, task, fork, exec and exit records.

A role root is generation 0, a process it forks is generation 1, and so
on: when process_command forks a child that execs chef-solo, chef-solo runs
at depth 1, the shells it starts at depth 2 and the tools those shells run
at depth 3. Only live processes are kept (an exit removes its entry), and
at most MAX_LIVE_PROCESSES of them, so memory does not grow with the
number of events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

UNKNOWN_DEPTH = "unknown"

# Processes followed at once. An exit that was lost leaves its process in
# the table. When the table is full the oldest entry goes, and a later
# exec of that process counts at an unknown depth.
MAX_LIVE_PROCESSES = 16384

# Each process is one int: (depth + 1) << 2 | FORKED | EXECED, where a
# depth of -1 (the value 0 above the flag bits) means unknown. One int per
# pid keeps the table small.
FORKED = 2
EXECED = 1


@dataclass
class LineageCounts:
    """Exec depths and forks that never exec'd, for one role."""

    execs_by_depth: Counter = field(default_factory=Counter)
    forks_without_exec: int = 0

    def add(self, other: LineageCounts) -> None:
        self.execs_by_depth.update(other.execs_by_depth)
        self.forks_without_exec += other.forks_without_exec


def pack(depth: int | None, flags: int) -> int:
    return (0 if depth is None else depth + 1) << 2 | flags


def unpack_depth(entry: int) -> int | None:
    stored = entry >> 2
    return None if stored == 0 else stored - 1


class Lineage:
    """Process generations of one stream, kept per pid while the process lives."""

    def __init__(self) -> None:
        self.processes: dict[int, int] = {}

    def put(self, pid: int, entry: int) -> None:
        processes = self.processes
        processes.pop(pid, None)
        if len(processes) >= MAX_LIVE_PROCESSES:
            del processes[next(iter(processes))]
        processes[pid] = entry

    def depth_of(self, pid: int) -> int | None:
        entry = self.processes.get(pid)
        return None if entry is None else unpack_depth(entry)

    def root(self, pid: int) -> None:
        self.put(pid, pack(0, 0))

    def task(self, pid: int, ppid: int | None) -> None:
        """Record a process that existed at start-up, below its parent when the parent is known."""
        parent = None if ppid is None else self.depth_of(ppid)
        self.put(pid, pack(None if parent is None else parent + 1, 0))

    def fork(self, pid: int, ppid: int) -> None:
        parent = self.depth_of(ppid)
        self.put(pid, pack(None if parent is None else parent + 1, FORKED))

    def exec(self, pid: int, counts: LineageCounts) -> None:
        entry = self.processes.get(pid)
        if entry is None:
            # A process this stream never saw start (its fork was lost or
            # its entry evicted): its depth is unknown from now on.
            entry = pack(None, 0)
            self.put(pid, entry | EXECED)
        else:
            self.processes[pid] = entry | EXECED
        depth = unpack_depth(entry)
        counts.execs_by_depth[UNKNOWN_DEPTH if depth is None else depth] += 1

    def exit(self, pid: int, counts: LineageCounts) -> None:
        entry = self.processes.pop(pid, None)
        if entry is not None and entry & FORKED and not entry & EXECED:
            counts.forks_without_exec += 1
