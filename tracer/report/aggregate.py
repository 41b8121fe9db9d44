"""Fold the records of one or more streams into totals per stream, host and role.

The fold is one pass over each stream. Memory grows with the number of
hosts, roles, buckets, syscall names, distinct command lines and
lifecycle commands, and with the processes alive at one time, never with
the number of events. `build_report` returns the result in the shape that
docs/format.md documents for `agent-tracer report --format json`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from tracer import syscalls
from tracer.report.lifecycle import Baseline, LifecycleTracker
from tracer.report.lineage import Lineage, LineageCounts
from tracer.report.normalize import command_text
from tracer.report.streams import LogicalStream, plan_streams, valid_clock
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

# Distinct command lines kept per role, and per role and bucket. Command
# lines beyond them are counted under OTHER_COMMAND_LINES, so that arguments that
# normalisation cannot fold (random words, say) cannot take memory without
# bound.
MAX_COMMAND_LINES_PER_ROLE = 5000
MAX_COMMAND_LINES_PER_BUCKET = 200
OTHER_COMMAND_LINES = "<other>"

# Grid buckets that one bucket record may be shared between; a longer
# record goes whole into one bucket.
MAX_BUCKETS_PER_RECORD = 1000

# Normalised command lines cached by raw exec arguments; the cache is
# emptied when full.
COMMAND_LINE_CACHE_SIZE = 4096


@dataclass
class CommandLineRow:
    """Runs of one normalised command line: successful and failed execs, by executable path."""

    execs: int = 0
    failed_execs: int = 0
    executables: Counter = field(default_factory=Counter)
    failed_executables: Counter = field(default_factory=Counter)

    def add(self, other: CommandLineRow) -> None:
        self.execs += other.execs
        self.failed_execs += other.failed_execs
        self.executables.update(other.executables)
        self.failed_executables.update(other.failed_executables)


@dataclass
class RoleTotals:
    """Counts of one role in one stream or host, or summed over hosts."""

    counts: Counter = field(default_factory=Counter)
    syscalls: Counter = field(default_factory=Counter)
    syscalls_total: int = 0
    cpu_ns: int = 0
    executables: Counter = field(default_factory=Counter)
    failed_executables: Counter = field(default_factory=Counter)
    # Bucket start (ns after the trace start) → counts of that bucket, with
    # the keys of COUNT_NAMES plus "syscalls" and "cpu_ns".
    timeline: dict[int, Counter] = field(default_factory=dict)
    # Normalised command line → its runs, in total and per bucket start
    # (as [execs, failed execs]).
    command_lines: dict[str, CommandLineRow] = field(default_factory=dict)
    command_line_timeline: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    lineage: LineageCounts = field(default_factory=LineageCounts)

    def bucket(self, start_ns: int) -> Counter:
        counts = self.timeline.get(start_ns)
        if counts is None:
            counts = self.timeline[start_ns] = Counter()
        return counts

    def count_command_line(self, text: str, filename: str, failed: bool, start_ns: int) -> None:
        """Count one exec (or failed attempt) of a normalised command line in a bucket."""
        row = self.command_lines.get(text)
        if row is None:
            if len(self.command_lines) >= MAX_COMMAND_LINES_PER_ROLE:
                text = OTHER_COMMAND_LINES
            row = self.command_lines.setdefault(text, CommandLineRow())
        if failed:
            row.failed_execs += 1
            row.failed_executables[filename] += 1
        else:
            row.execs += 1
            row.executables[filename] += 1

        in_bucket = self.command_line_timeline.setdefault(start_ns, {})
        runs = in_bucket.get(text)
        if runs is None:
            if len(in_bucket) >= MAX_COMMAND_LINES_PER_BUCKET:
                text = OTHER_COMMAND_LINES
            runs = in_bucket.setdefault(text, [0, 0])
        runs[1 if failed else 0] += 1

    def add(self, other: RoleTotals) -> None:
        self.counts.update(other.counts)
        self.syscalls.update(other.syscalls)
        self.syscalls_total += other.syscalls_total
        self.cpu_ns += other.cpu_ns
        self.executables.update(other.executables)
        self.failed_executables.update(other.failed_executables)
        for start_ns, counts in other.timeline.items():
            self.bucket(start_ns).update(counts)
        for text, row in other.command_lines.items():
            self.command_lines.setdefault(text, CommandLineRow()).add(row)
        for start_ns, in_bucket in other.command_line_timeline.items():
            mine = self.command_line_timeline.setdefault(start_ns, {})
            for text, (execs, failed) in in_bucket.items():
                runs = mine.setdefault(text, [0, 0])
                runs[0] += execs
                runs[1] += failed
        self.lineage.add(other.lineage)


@dataclass
class Reading:
    """One bucket record: its span (monotonic ns), (syscalls, cpu_ns) per role, syscall names."""

    start_ns: int
    end_ns: int
    roles: dict[str, tuple[int, int]]
    syscall_names: Counter


@dataclass
class StreamTotals:
    """Totals of one logical stream: one file, or every part of a rotated set."""

    host: str
    start: int
    interval_ns: int
    clock: dict | None
    cpus: int | None
    roles: dict[str, RoleTotals] = field(default_factory=dict)
    # Starts of every bucket that the stream covered, so that timelines list
    # quiet buckets as zeros.
    bucket_starts: set[int] = field(default_factory=set)
    # Bucket start → ns of counter readings (bucket records) placed there.
    counter_ns: Counter = field(default_factory=Counter)
    # Every counter reading as it was taken, in order; kept only for plots.
    readings: list[Reading] | None = None
    lost: Counter = field(default_factory=Counter)
    last_ns: int = 0
    incomplete: bool = False
    lifecycle: LifecycleTracker | None = None
    # Live processes; kept across the parts of a rotated set.
    lineage: Lineage = field(default_factory=Lineage)

    def __post_init__(self) -> None:
        self.last_ns = self.start
        self.lifecycle = LifecycleTracker(self.start, self.totals_so_far)

    def totals_so_far(self) -> tuple[dict[str, Counter], int]:
        """Return each role's counts until now (events, syscalls, cpu_ns) and the counter time."""
        roles = {}
        for name, role in self.roles.items():
            counts = Counter(role.counts)
            counts["syscalls"] = role.syscalls_total
            counts["cpu_ns"] = role.cpu_ns
            roles[name] = counts
        return roles, sum(self.counter_ns.values())

    def role(self, name: str) -> RoleTotals:
        role = self.roles.get(name)
        if role is None:
            role = self.roles[name] = RoleTotals()
        return role

    @property
    def duration_ns(self) -> int:
        return max(0, self.last_ns - self.start)

    def wall_ns(self, ts: int) -> int | None:
        """Convert a monotonic time of this stream to ns since the epoch (None without a clock)."""
        if self.clock is None:
            return None
        return ts - self.clock["monotonic_ns"] + self.clock["realtime_ns"]


@dataclass
class HostTotals:
    """Totals of every stream of one host."""

    roles: dict[str, RoleTotals] = field(default_factory=dict)
    bucket_starts: set[int] = field(default_factory=set)
    counter_ns: Counter = field(default_factory=Counter)
    lost: Counter = field(default_factory=lambda: Counter({name: 0 for name in LOST_NAMES}))
    duration_ns: int = 0
    incomplete: bool = False
    interval_ns: int = 0
    cpus: int | None = None
    streams: list[StreamTotals] = field(default_factory=list)
    baseline: Baseline = field(default_factory=Baseline)

    def role(self, name: str) -> RoleTotals:
        return self.roles.setdefault(name, RoleTotals())

    def add_stream(self, stream: StreamTotals) -> None:
        """Add a folded logical stream; several are merged by their offset from their own start."""
        self.streams.append(stream)
        if len(self.streams) == 1:
            # One stream, the usual case: its role totals are the host's, so
            # they are shared, not copied (a timeline can be large).
            self.roles = stream.roles
        else:
            if len(self.streams) == 2:
                self.roles = {}
                for name, role in self.streams[0].roles.items():
                    self.role(name).add(role)
            for name, role in stream.roles.items():
                self.role(name).add(role)
        self.bucket_starts |= stream.bucket_starts
        self.counter_ns.update(stream.counter_ns)
        self.lost.update(stream.lost)
        self.duration_ns = max(self.duration_ns, stream.duration_ns)
        self.incomplete = self.incomplete or stream.incomplete
        self.interval_ns = self.interval_ns or stream.interval_ns
        if self.cpus is None:
            self.cpus = stream.cpus
        self.baseline.add(stream.lifecycle.baseline)


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
    """Adds the records of one file to the totals of its logical stream."""

    def __init__(self, reader: StreamReader, totals: StreamTotals):
        header = reader.header
        self.reader = reader
        self.totals = totals
        self.start = totals.start
        self.interval_ns = totals.interval_ns
        self.namer = SyscallNamer(header["arch"], header["compat_arch"])
        self.lineage = totals.lineage
        self.bucket_lost: Counter = Counter()
        self.command_line_cache: dict[tuple, str] = {}
        self.notices: list[str] = []

        for rule in header["roles"]:
            totals.role(rule["name"])

    def bucket_start(self, ts: int) -> int:
        """Return the start, in ns after the trace start, of the bucket holding `ts`."""
        offset = ts - self.start
        if offset < 0:
            return 0
        return offset - offset % self.interval_ns

    def fold(self) -> None:
        totals = self.totals
        for record in self.reader:
            record_type = record["type"]
            count_name = EVENT_COUNTS.get(record_type)
            if count_name is not None:
                self.fold_event(record, count_name)
            elif record_type == "bucket":
                self.fold_bucket(record)
            elif record_type == "marker":
                totals.lifecycle.marker(record)
                totals.last_ns = max(totals.last_ns, record["ts"])
            elif record_type == "root":
                self.lineage.root(record["pid"])
                totals.last_ns = max(totals.last_ns, record["ts"])
            elif record_type == "task":
                self.lineage.task(record["pid"], record.get("ppid"))
                totals.last_ns = max(totals.last_ns, record["ts"])
            elif record_type == "trailer":
                totals.last_ns = max(totals.last_ns, record["end"])
            elif record_type == "notice":
                seconds = (record["ts"] - self.start) / 1e9
                self.notices.append(f"at {seconds:.1f} s the tracer noted ({record['kind']}): {record['message']}")
                totals.last_ns = max(totals.last_ns, record["ts"])
            elif "ts" in record:
                totals.last_ns = max(totals.last_ns, record["ts"])

    def fold_event(self, record: dict, count_name: str) -> None:
        # The hot path of the fold: one call per event record, so the steps
        # of bucket_start() and RoleTotals.bucket() are written out here.
        totals = self.totals
        ts = record["ts"]
        role_name = record["role"]
        role = totals.roles.get(role_name) or totals.role(role_name)
        role.counts[count_name] += 1

        offset = ts - self.start
        start_ns = offset - offset % self.interval_ns if offset > 0 else 0
        bucket = role.timeline.get(start_ns)
        if bucket is None:
            bucket = role.timeline[start_ns] = Counter()
            totals.bucket_starts.add(start_ns)
        bucket[count_name] += 1
        if ts > totals.last_ns:
            totals.last_ns = ts
        totals.lifecycle.event(role_name, count_name)

        if count_name == "process_forks":
            self.lineage.fork(record["pid"], record["ppid"])
        elif count_name == "execs":
            role.executables[record["filename"]] += 1
            role.count_command_line(self.command_line(record), record["filename"], False, start_ns)
            self.lineage.exec(record["pid"], role.lineage)
        elif count_name == "failed_execs":
            role.failed_executables[record["filename"]] += 1
            role.count_command_line(self.command_line(record), record["filename"], True, start_ns)
        elif count_name == "exits":
            self.lineage.exit(record["pid"], role.lineage)

    def command_line(self, record: dict) -> str:
        """Return the normalised command line of an exec record, cached by its raw arguments."""
        argv = record.get("argv")
        truncated = record.get("argv_truncated", False)
        key = (record["filename"], tuple(argv) if argv else (), truncated)
        text = self.command_line_cache.get(key)
        if text is None:
            if len(self.command_line_cache) >= COMMAND_LINE_CACHE_SIZE:
                self.command_line_cache.clear()
            text = self.command_line_cache[key] = command_text(record["filename"], argv, truncated)
        return text

    def fold_bucket(self, record: dict) -> None:
        totals = self.totals
        shares = self.bucket_shares(record["start"], record["end"])
        for start_ns, overlap_ns in shares:
            totals.bucket_starts.add(start_ns)
            totals.counter_ns[start_ns] += overlap_ns
        weights = [overlap_ns for _, overlap_ns in shares]
        self.bucket_lost.update(record.get("lost", {}))
        totals.last_ns = max(totals.last_ns, record["end"])
        names = None if totals.readings is None else Counter()

        role_counts = {}
        for role_name, counters in record["roles"].items():
            role = totals.role(role_name)
            role_syscalls = 0

            for compat, key in ((False, "syscalls"), (True, "syscalls_compat")):
                for nr, count in counters.get(key, {}).items():
                    name = self.namer.name(nr, compat)
                    role.syscalls[name] += count
                    role_syscalls += count
                    if names is not None:
                        names[name] += count
            role.syscalls_total += role_syscalls

            # NOTE: CPU time per executable or command line cannot be derived, because
            # the kernel side adds cpu_ns per role and keeps none per process.
            cpu_ns = counters.get("cpu_ns", 0)
            role.cpu_ns += cpu_ns
            role_counts[role_name] = (role_syscalls, cpu_ns)

            syscall_parts = split_count(role_syscalls, weights)
            cpu_parts = split_count(cpu_ns, weights)
            for (start_ns, _), syscall_part, cpu_part in zip(shares, syscall_parts, cpu_parts):
                bucket = role.bucket(start_ns)
                bucket["syscalls"] += syscall_part
                bucket["cpu_ns"] += cpu_part

        totals.lifecycle.bucket(record["start"], record["end"], role_counts)
        if totals.readings is not None:
            totals.readings.append(Reading(record["start"], record["end"], role_counts, names))

    def bucket_shares(self, start: int, end: int) -> list[tuple[int, int]]:
        """Return the grid buckets that a bucket record's span overlaps, with the overlap in ns.

        The tracer reads its counters a little after each interval ends, so
        its spans drift against the grid. Sharing a record between the
        buckets it overlaps keeps each grid bucket's counters in step with
        its events. A record of no length goes whole to the bucket of its
        start.
        """
        first = self.bucket_start(start)
        if end <= start:
            return [(first, 0)]
        if (end - self.start - first) // self.interval_ns > MAX_BUCKETS_PER_RECORD:
            # A damaged record, or a tracer stalled for a very long time:
            # keep it whole in the bucket of its midpoint.
            return [(self.bucket_start((start + end) // 2), end - start)]

        offset_start = start - self.start
        offset_end = end - self.start
        shares = []
        bucket = first
        while bucket < offset_end:
            overlap = min(offset_end, bucket + self.interval_ns) - max(offset_start, bucket)
            if overlap > 0 or not shares:
                shares.append((bucket, max(0, overlap)))
            bucket += self.interval_ns
        return shares

    def trailer_lost(self) -> Counter | None:
        trailer = self.reader.trailer
        if trailer is None:
            return None
        return Counter(trailer.get("lost", {}))


def split_count(total: int, weights: list[int]) -> list[int]:
    """Split an integer in proportion to `weights` so that the parts add up to it exactly.

    Each part is rounded down, and the units left over go to the parts
    with the largest remainders (the largest remainder method).
    """
    if len(weights) == 1:
        return [total]
    whole = sum(weights)
    if whole <= 0:
        return [total] + [0] * (len(weights) - 1)

    parts = [total * weight // whole for weight in weights]
    left = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda index: -(total * weights[index] % whole))
    for index in by_remainder[:left]:
        parts[index] += 1
    return parts


def fold_logical_stream(
    plan: LogicalStream, readings: bool
) -> list[tuple[StreamTotals, list[StreamSummary]]]:
    """Read the files of a logical stream in order; return its totals and a summary per file.

    A part whose trailer does not say "rotate" ended its run, so a part
    after it starts a new stream: a restarted tracer numbers its parts on
    from the last part on disk.
    """
    results = []
    current = None
    for path, header in zip(plan.paths, plan.headers):
        if current is None:
            current = (new_stream_totals(header, readings), Counter(), [])
        totals, lost, summaries = current

        reader = read_stream(path)
        folder = StreamFolder(reader, totals)
        with reader:
            folder.fold()

        # A trailer's losses are the totals since the first part of a
        # rotated run, so the last trailer plus the buckets of any later
        # part (one without a trailer) give the losses of the whole run.
        trailer_lost = folder.trailer_lost()
        if trailer_lost is None:
            lost.update(folder.bucket_lost)
        else:
            lost.clear()
            lost.update(trailer_lost)
        summaries.append(stream_summary(path, reader, folder))
        totals.incomplete = totals.incomplete or reader.truncated or reader.problem is not None

        trailer = reader.trailer
        if trailer is None or trailer.get("reason") != "rotate":
            results.append(finish_stream_totals(*current))
            current = None

    if current is not None:
        results.append(finish_stream_totals(*current))
    return results


def new_stream_totals(header: dict, readings: bool) -> StreamTotals:
    return StreamTotals(
        host=header["host"],
        start=header["start"],
        interval_ns=max(1, round(header["interval"] * NS_PER_SECOND)),
        clock=valid_clock(header),
        cpus=header.get("cpus"),
        readings=[] if readings else None,
    )


def finish_stream_totals(
    totals: StreamTotals, lost: Counter, summaries: list[StreamSummary]
) -> tuple[StreamTotals, list[StreamSummary]]:
    totals.lost = Counter(lost)
    totals.lifecycle.finish(totals.last_ns)
    return totals, summaries


def stream_summary(path: str, reader: StreamReader, folder: StreamFolder) -> StreamSummary:
    """Describe how reading one file went, with its warnings."""
    header = reader.header
    summary = StreamSummary(
        path=path,
        host=header["host"],
        records=reader.records_read,
        truncated=reader.truncated,
        problem=reader.problem,
        end_offset=reader.offset,
        syscalls_counted=header.get("syscalls", True),
        failed_execs_seen=header.get("failed_execs", True),
    )

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
    for notice in folder.notices:
        summary.warnings.append(f"{path}: {notice}")
    for abi in folder.namer.unsupported:
        summary.warnings.append(
            f"{path} has syscall numbers of ABI {abi}, which this agent-tracer has no names for; "
            "they are shown as unknown(N)"
        )
    return summary


@dataclass
class FoldResult:
    """Everything one report is made from."""

    hosts: dict[str, HostTotals]
    summaries: list[StreamSummary]
    warnings: list[str]
    notes: list[str]


def fold_streams(paths: list[str | os.PathLike], readings: bool = False) -> FoldResult:
    """Read every stream in `paths` once and return the totals per host.

    With `readings`, each stream also keeps every bucket record's counts
    per role and syscall name over its own span, which plots need.
    """
    plans, warnings = plan_streams([os.fspath(path) for path in paths])

    hosts: dict[str, HostTotals] = {}
    summaries: list[StreamSummary] = []
    for plan in plans:
        log.debug("reading %s (host %s)", ", ".join(plan.paths), plan.host)
        for totals, stream_summaries in fold_logical_stream(plan, readings):
            hosts.setdefault(plan.host, HostTotals()).add_stream(totals)
            summaries += stream_summaries

    order = {os.fspath(path): index for index, path in enumerate(paths)}
    summaries.sort(key=lambda summary: order[summary.path])

    notes = []
    for host_name, host in hosts.items():
        if host.cpus is None:
            host.cpus = os.cpu_count() or 1
            notes.append(
                f"the streams of {host_name} do not record its CPU count, so CPU % of the machine "
                f"assumes the {host.cpus} CPUs of the machine running this report"
            )
        for stream in host.streams:
            notes += [f"{host_name}: {note}" for note in stream.lifecycle.notes]

    return FoldResult(hosts=hosts, summaries=summaries, warnings=warnings, notes=notes)


def build_report(paths: list[str | os.PathLike]) -> dict:
    """Read every stream in `paths` and return the report as a JSON-ready dict.

    Raises StreamError when a file cannot be read or is not a stream, and
    ValueError when `paths` is empty.
    """
    from tracer.report.summary import report_dict

    if not paths:
        raise ValueError("build_report needs at least one stream path")
    return report_dict(fold_streams(paths))
