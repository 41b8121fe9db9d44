"""Line up the timelines of several hosts on wall-clock time.

Each stream's header gives one instant on both clocks, so a bucket's
monotonic time converts to wall-clock time. The common grid has the
longest bucket interval of the hosts and starts at multiples of it since
the Unix epoch. Each bucket of a host goes, whole, into the grid cell that
contains its midpoint. Counts therefore add up exactly; with equal intervals
on every host, each cell holds at most one bucket of a host (two where
the tracer's bucket timing drifted across a cell edge).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from tracer.report.aggregate import NS_PER_SECOND, HostTotals, StreamTotals


def iso_time(wall_ns: float | None) -> str | None:
    """Format ns since the epoch as an ISO 8601 UTC time with milliseconds."""
    if wall_ns is None:
        return None
    moment = datetime.fromtimestamp(wall_ns / NS_PER_SECOND, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_cell(stream: StreamTotals, start_ns: int, cell_ns: int) -> int:
    """Return the index of the wall-clock grid cell that holds the middle of a stream's bucket."""
    middle = stream.start + start_ns + stream.interval_ns // 2
    return stream.wall_ns(middle) // cell_ns


class WallClockGrid:
    """Counts per grid cell, host and role, folded from the hosts' per-stream timelines."""

    def __init__(self, hosts: dict[str, HostTotals]):
        self.hosts = [
            name for name, host in hosts.items() if any(s.clock is not None for s in host.streams)
        ]
        self.hosts_without_clock = [name for name in hosts if name not in self.hosts]
        self.cell_ns = max((hosts[name].interval_ns for name in self.hosts), default=NS_PER_SECOND)
        # Cell index → host → {"roles": {role: Counter}, "counter_ns": int, "cpus": int}.
        self.cells: dict[int, dict[str, dict]] = {}

        for host_name in self.hosts:
            host = hosts[host_name]
            for stream in host.streams:
                if stream.clock is not None:
                    self.add_stream(host_name, host, stream)

    def add_stream(self, host_name: str, host: HostTotals, stream: StreamTotals) -> None:
        for start_ns in stream.bucket_starts:
            cell = self.cells.setdefault(wall_cell(stream, start_ns, self.cell_ns), {})
            entry = cell.get(host_name)
            if entry is None:
                entry = cell[host_name] = {"roles": {}, "counter_ns": 0, "cpus": host.cpus}
            entry["counter_ns"] += stream.counter_ns.get(start_ns, 0)
            for role_name, role in stream.roles.items():
                counts = role.timeline.get(start_ns)
                if counts:
                    entry["roles"].setdefault(role_name, Counter()).update(counts)

    def origin_ns(self) -> int | None:
        """Return the wall-clock start of the first cell, in ns since the epoch."""
        if not self.cells:
            return None
        return min(self.cells) * self.cell_ns
