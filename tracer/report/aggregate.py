"""Fold the records of one or more streams into totals per host and role.

The fold is one pass over each stream. Memory grows with the number of
hosts, roles, buckets, syscall names and distinct executables, never with
the number of events. `build_report` returns the result in the shape that
docs/format.md documents for `agent-tracer report --format json`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from tracer import syscalls
from tracer.stream import StreamReader, read_stream

log = logging.getLogger(__name__)

# Event record type → name of the count it adds to.
EVENT_COUNTS = {
    "fork": "process_forks",
    "thread": "thread_creations",
    "exec": "execs",
    "exec_failed": "failed_execs",
    "exit": "exits",
}
COUNT_NAMES = tuple(EVENT_COUNTS.values())

# Loss counters that every report lists, even when a stream has none of them
# (streams list only non-zero ones). Other names in a stream are listed too.
LOST_NAMES = ("events", "pid_range", "exec_stash", "syscall_overflow")

NS_PER_SECOND = 1_000_000_000


@dataclass
class RoleTotals:
    """Counts of one role on one host, or summed over hosts."""

    counts: Counter = field(default_factory=Counter)
    syscalls: Counter = field(default_factory=Counter)
    syscalls_total: int = 0
    cpu_ns: int = 0
    executables: Counter = field(default_factory=Counter)
    failed_executables: Counter = field(default_factory=Counter)
    # Bucket start (ns after the trace start) → counts of that bucket, with
    # the keys of COUNT_NAMES plus "syscalls" and "cpu_ns".
    timeline: dict[int, Counter] = field(default_factory=dict)

    def bucket(self, start_ns: int) -> Counter:
        return self.timeline.setdefault(start_ns, Counter())

    def add(self, other: RoleTotals) -> None:
        self.counts.update(other.counts)
        self.syscalls.update(other.syscalls)
        self.syscalls_total += other.syscalls_total
        self.cpu_ns += other.cpu_ns
        self.executables.update(other.executables)
        self.failed_executables.update(other.failed_executables)
        for start_ns, counts in other.timeline.items():
            self.bucket(start_ns).update(counts)


@dataclass
class HostTotals:
    """Totals of every stream of one host."""

    roles: dict[str, RoleTotals] = field(default_factory=dict)
    # Starts of every bucket that any stream of this host covered, so that
    # timelines list quiet buckets as zeros.
    bucket_starts: set[int] = field(default_factory=set)
    lost: Counter = field(default_factory=lambda: Counter({name: 0 for name in LOST_NAMES}))
    duration_ns: int = 0
    incomplete: bool = False

    def role(self, name: str) -> RoleTotals:
        return self.roles.setdefault(name, RoleTotals())


@dataclass
class StreamSummary:
    """Outcome of reading one input stream: its host, record count, faults and warnings."""

    path: str
    host: str
    records: int = 0
    truncated: bool = False
    problem: str | None = None
    end_offset: int = 0
    syscalls_counted: bool = True
    failed_execs_seen: bool = True
    warnings: list[str] = field(default_factory=list)


class SyscallNamer:
    """Names syscall numbers of one stream: native by `arch`, compat as `ABI:name`.

    Compat names always carry their ABI (`i386:getpid`), so they never
    collide with a native name and do not change with what else was counted.
    """

    def __init__(self, arch: str, compat_arch: str | None):
        self.arch = arch
        self.compat_arch = compat_arch
        self.unsupported = [abi for abi in (arch, compat_arch) if abi and abi not in syscalls.ABIS]
        self._cache: dict[tuple[bool, int], str] = {}

    def name(self, nr: int, compat: bool = False) -> str:
        key = (compat, nr)
        cached = self._cache.get(key)
        if cached is not None:
            return cached

        abi = self.compat_arch if compat else self.arch
        if abi in syscalls.ABIS:
            text = syscalls.display_name(nr, abi)
        else:
            text = f"unknown({nr})"
        if compat:
            text = f"{abi}:{text}"

        self._cache[key] = text
        return text


class StreamFolder:
    """Adds the records of one stream to the totals of its host."""

    def __init__(self, reader: StreamReader, host: HostTotals):
        header = reader.header
        self.reader = reader
        self.host = host
        self.start = header["start"]
        self.interval_ns = max(1, round(header["interval"] * NS_PER_SECOND))
        self.namer = SyscallNamer(header["arch"], header["compat_arch"])
        self.bucket_lost: Counter = Counter()
        self.last_ns = self.start

        for rule in header["roles"]:
            host.role(rule["name"])

    def bucket_start(self, ts: int) -> int:
        """Return the start, in ns after the trace start, of the bucket holding `ts`."""
        offset = max(0, ts - self.start)
        return offset - offset % self.interval_ns

    def fold(self) -> None:
        for record in self.reader:
            record_type = record["type"]
            if record_type in EVENT_COUNTS:
                self.fold_event(record, EVENT_COUNTS[record_type])
            elif record_type == "bucket":
                self.fold_bucket(record)
            elif record_type == "trailer":
                self.last_ns = max(self.last_ns, record["end"])
            elif "ts" in record:
                self.last_ns = max(self.last_ns, record["ts"])

    def fold_event(self, record: dict, count_name: str) -> None:
        role = self.host.role(record["role"])
        role.counts[count_name] += 1

        if count_name == "execs":
            role.executables[record["filename"]] += 1
        elif count_name == "failed_execs":
            role.failed_executables[record["filename"]] += 1

        start_ns = self.bucket_start(record["ts"])
        role.bucket(start_ns)[count_name] += 1
        self.host.bucket_starts.add(start_ns)
        self.last_ns = max(self.last_ns, record["ts"])

    def fold_bucket(self, record: dict) -> None:
        # The midpoint places a bucket on the grid even when the tracer read
        # the counters a little early or late.
        start_ns = self.bucket_start((record["start"] + record["end"]) // 2)
        self.host.bucket_starts.add(start_ns)
        self.bucket_lost.update(record.get("lost", {}))
        self.last_ns = max(self.last_ns, record["end"])

        for role_name, counters in record["roles"].items():
            role = self.host.role(role_name)
            bucket = role.bucket(start_ns)

            for compat, key in ((False, "syscalls"), (True, "syscalls_compat")):
                for nr, count in counters.get(key, {}).items():
                    role.syscalls[self.namer.name(nr, compat)] += count
                    role.syscalls_total += count
                    bucket["syscalls"] += count

            cpu_ns = counters.get("cpu_ns", 0)
            role.cpu_ns += cpu_ns
            bucket["cpu_ns"] += cpu_ns

    def lost(self) -> Counter:
        """Return the stream's losses: the trailer's totals, else the sum of its buckets."""
        trailer = self.reader.trailer
        if trailer is not None:
            return Counter(trailer.get("lost", {}))
        return self.bucket_lost


def fold_stream(path: str, hosts: dict[str, HostTotals]) -> StreamSummary:
    """Read one stream and add it to the totals of its host in `hosts`."""
    reader = read_stream(path)
    header = reader.header
    host_name = header["host"]
    host = hosts.setdefault(host_name, HostTotals())
    log.debug("reading %s (host %s)", path, host_name)

    folder = StreamFolder(reader, host)
    with reader:
        folder.fold()

    summary = StreamSummary(
        path=path,
        host=host_name,
        records=reader.records_read,
        truncated=reader.truncated,
        problem=reader.problem,
        end_offset=reader.offset,
        syscalls_counted=header.get("syscalls", True),
        failed_execs_seen=header.get("failed_execs", True),
    )
    host.lost.update(folder.lost())
    host.duration_ns = max(host.duration_ns, folder.last_ns - folder.start)
    host.incomplete = host.incomplete or reader.truncated or reader.problem is not None

    if reader.truncated:
        summary.warnings.append(
            f"{path} is truncated: it ends after byte {reader.offset} without a trailer, "
            "so the report covers only the records written before the tracer stopped"
        )
    if reader.problem is not None:
        summary.warnings.append(
            f"{path} is damaged: {reader.problem}; the report covers only the records before it"
        )
    if not summary.syscalls_counted:
        summary.warnings.append(
            f"{path} was recorded without syscall counting, so its syscall counts are missing"
        )
    if not summary.failed_execs_seen:
        summary.warnings.append(
            f"{path} was recorded where failed exec attempts could not be seen, "
            "so its failed exec counts are missing"
        )
    for abi in folder.namer.unsupported:
        summary.warnings.append(
            f"{path} has syscall numbers of ABI {abi}, which this agent-tracer has no names for; "
            "they are shown as unknown(N)"
        )
    return summary


def build_report(paths: list[str | os.PathLike]) -> dict:
    """Read every stream in `paths` and return the report as a JSON-ready dict.

    Raises StreamError when a file cannot be read or is not a stream, and
    ValueError when `paths` is empty.
    """
    if not paths:
        raise ValueError("build_report needs at least one stream path")

    hosts: dict[str, HostTotals] = {}
    summaries = [fold_stream(os.fspath(path), hosts) for path in paths]
    return report_dict(hosts, summaries)


def report_dict(hosts: dict[str, HostTotals], summaries: list[StreamSummary]) -> dict:
    """Convert folded totals into the documented JSON shape."""
    all_roles: dict[str, RoleTotals] = {}
    all_starts: set[int] = set()
    lost = Counter({name: 0 for name in LOST_NAMES})
    for host in hosts.values():
        for name, role in host.roles.items():
            all_roles.setdefault(name, RoleTotals()).add(role)
        all_starts |= host.bucket_starts
        lost.update(host.lost)

    by_host = {}
    for host_name, host in hosts.items():
        by_host[host_name] = {
            "roles": roles_dict(host.roles, host.bucket_starts),
            "lost": dict(host.lost),
            "lower_bounds": any(host.lost.values()),
            "truncated": host.incomplete,
            "duration_seconds": host.duration_ns / NS_PER_SECOND,
        }

    return {
        "hosts": list(hosts),
        "roles": roles_dict(all_roles, all_starts),
        "lost": dict(lost),
        "lower_bounds": any(lost.values()),
        "truncated": any(host.incomplete for host in hosts.values()),
        "duration_seconds": max(host.duration_ns for host in hosts.values()) / NS_PER_SECOND,
        "by_host": by_host,
        "streams": [stream_dict(summary) for summary in summaries],
        "warnings": [warning for summary in summaries for warning in summary.warnings],
    }


def roles_dict(roles: dict[str, RoleTotals], bucket_starts: set[int]) -> dict:
    return {name: role_dict(role, bucket_starts) for name, role in roles.items()}


def role_dict(role: RoleTotals, bucket_starts: set[int]) -> dict:
    result: dict = {name: role.counts[name] for name in COUNT_NAMES}
    result["syscalls_total"] = role.syscalls_total
    result["syscalls"] = ranked(role.syscalls)
    result["cpu_seconds"] = role.cpu_ns / NS_PER_SECOND
    result["executables"] = ranked(role.executables)
    result["failed_executables"] = ranked(role.failed_executables)
    result["timeline"] = [
        timeline_entry(start_ns, role.timeline.get(start_ns, Counter()))
        for start_ns in sorted(bucket_starts)
    ]
    return result


def timeline_entry(start_ns: int, counts: Counter) -> dict:
    entry: dict = {"start": start_ns / NS_PER_SECOND}
    for name in COUNT_NAMES:
        entry[name] = counts[name]
    entry["syscalls"] = counts["syscalls"]
    entry["cpu_seconds"] = counts["cpu_ns"] / NS_PER_SECOND
    return entry


def ranked(counter: Counter) -> dict[str, int]:
    """Return the counter as a dict, largest count first, then by name."""
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def stream_dict(summary: StreamSummary) -> dict:
    return {
        "path": summary.path,
        "host": summary.host,
        "records": summary.records,
        "truncated": summary.truncated,
        "problem": summary.problem,
        "syscalls_counted": summary.syscalls_counted,
        "failed_execs_seen": summary.failed_execs_seen,
    }
