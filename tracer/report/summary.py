"""Convert folded totals into the report dict that docs/format.md documents."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tracer.report.aggregate import (
    COUNT_NAMES,
    LOST_NAMES,
    NS_PER_SECOND,
    FoldResult,
    HostTotals,
    RoleTotals,
    StreamSummary,
    StreamTotals,
)
from tracer.report.lifecycle import CommandWindow
from tracer.report.lineage import UNKNOWN_DEPTH
from tracer.report.rates import (
    METRICS,
    baseline_rates,
    busiest_window,
    percent,
    rates,
    ratios,
    window_seconds,
)
from tracer.report.wallclock import WallClockGrid, iso_time


@dataclass
class Capacity:
    """Time that bucket counters cover, per bucket start and in total, for CPU percentages.

    `counter_ns` is the time itself (for % of one core); `machine_ns` is
    that time multiplied by the host's CPU count (for % of the machine).
    """

    counter_ns: Counter = field(default_factory=Counter)
    machine_ns: Counter = field(default_factory=Counter)

    def add_host(self, host: HostTotals) -> None:
        for start_ns, covered in host.counter_ns.items():
            self.counter_ns[start_ns] += covered
            self.machine_ns[start_ns] += covered * host.cpus

    def core_percent(self, cpu_ns: float, start_ns: int | None = None) -> float | None:
        whole = sum(self.counter_ns.values()) if start_ns is None else self.counter_ns[start_ns]
        return percent(cpu_ns, whole)

    def machine_percent(self, cpu_ns: float, start_ns: int | None = None) -> float | None:
        whole = sum(self.machine_ns.values()) if start_ns is None else self.machine_ns[start_ns]
        return percent(cpu_ns, whole)


def report_dict(fold: FoldResult) -> dict:
    """Convert folded totals into the documented JSON shape."""
    hosts = fold.hosts
    lost = Counter({name: 0 for name in LOST_NAMES})
    for host in hosts.values():
        lost.update(host.lost)
    by_host = {name: host_dict(host) for name, host in hosts.items()}
    role_names = list(dict.fromkeys(name for host in hosts.values() for name in host.roles))

    if len(hosts) == 1:
        # The one host's totals are the report's totals: share them.
        roles = next(iter(by_host.values()))["roles"]
    else:
        roles = summed_roles(hosts)

    commands = [
        command_dict(host_name, host, stream, command, by_host[host_name])
        for host_name, host in hosts.items()
        for stream in host.streams
        for command in stream.lifecycle.commands
    ]
    warnings = list(fold.warnings)
    warnings += [warning for summary in fold.summaries for warning in summary.warnings]
    aligned = aligned_dict(hosts, role_names, warnings)
    incomplete = any(host.incomplete for host in hosts.values())

    return {
        "hosts": list(hosts),
        "roles": roles,
        "lost": dict(lost),
        "lower_bounds": any(lost.values()) or incomplete,
        "truncated": incomplete,
        "duration_seconds": max(host.duration_ns for host in hosts.values()) / NS_PER_SECOND,
        "by_host": by_host,
        "streams": [stream_dict(summary) for summary in fold.summaries],
        "commands": commands,
        "markers": marker_list(hosts),
        "compare": compare_rows(commands, by_host),
        "aligned": aligned,
        "warnings": warnings,
        "notes": list(fold.notes),
    }


def summed_roles(hosts: dict[str, HostTotals]) -> dict:
    """Return the role totals summed over hosts, with CPU % of all their counter time."""
    all_roles: dict[str, RoleTotals] = {}
    all_starts: set[int] = set()
    all_capacity = Capacity()
    for host in hosts.values():
        for name, role in host.roles.items():
            all_roles.setdefault(name, RoleTotals()).add(role)
        all_starts |= host.bucket_starts
        all_capacity.add_host(host)
    return roles_dict(all_roles, all_starts, all_capacity)


def host_dict(host: HostTotals) -> dict:
    capacity = Capacity()
    capacity.add_host(host)
    lower_bounds = any(host.lost.values()) or host.incomplete
    baseline = baseline_rates(host)
    window = window_seconds(host)
    first = host.streams[0]

    return {
        "roles": roles_dict(host.roles, host.bucket_starts, capacity),
        "lost": dict(host.lost),
        "lower_bounds": lower_bounds,
        "truncated": host.incomplete,
        "duration_seconds": host.duration_ns / NS_PER_SECOND,
        "cpus": host.cpus,
        "cpus_assumed": all(stream.cpus is None for stream in host.streams),
        "interval": host.interval_ns / NS_PER_SECOND,
        "wall_start": iso_time(first.wall_ns(first.start)),
        "counter_seconds": sum(host.counter_ns.values()) / NS_PER_SECOND,
        "baseline": {
            "seconds": host.baseline.seconds,
            "counter_seconds": host.baseline.counter_ns / NS_PER_SECOND,
            "roles": {
                name: counts_dict(host.baseline.roles.get(name, Counter()))
                | {"rates": baseline[name]}
                for name in host.roles
            },
        },
        "busiest_window_seconds": window,
        "busiest": {
            name: busiest_dict(host, role, window, baseline[name])
            for name, role in host.roles.items()
        },
    }


def busiest_dict(host: HostTotals, role: RoleTotals, seconds: float, baseline: dict) -> dict:
    window = busiest_window(host, role, seconds)
    during = rates(window["counts"], window["seconds"], window["counter_ns"])
    ratio, new_activity = ratios(during, baseline)
    return {
        "start": window["start"],
        "seconds": window["seconds"],
        "ranked_by": window["ranked_by"],
        **counts_dict(window["counts"]),
        "rates": during,
        "baseline_rates": baseline,
        "ratios": ratio,
        "new_activity": new_activity,
    }


def counts_dict(counts: Counter) -> dict:
    """Return event counts, syscalls (rounded where a bucket was shared) and CPU seconds."""
    result: dict = {name: round(counts[name]) for name in COUNT_NAMES}
    result["syscalls"] = round(counts["syscalls"])
    result["cpu_seconds"] = counts["cpu_ns"] / NS_PER_SECOND
    return result


def command_dict(
    host_name: str,
    host: HostTotals,
    stream: StreamTotals,
    command: CommandWindow,
    host_report: dict,
) -> dict:
    start_ns = max(command.start_ns, stream.start)
    end_ns = stream.last_ns if command.end_ns is None else command.end_ns
    seconds = max(0, end_ns - start_ns) / NS_PER_SECOND
    baseline = host_report["baseline"]["roles"]

    roles = {}
    for name in host.roles:
        counts = command.roles.get(name, Counter())
        during = rates(counts, seconds, command.counter_ns)
        ratio, new_activity = ratios(during, baseline[name]["rates"])
        roles[name] = {
            **counts_dict(counts),
            "rates": during,
            "baseline_rates": baseline[name]["rates"],
            "ratios": ratio,
            "new_activity": new_activity,
        }

    return {
        "host": host_name,
        "id": command.id,
        "name": command.name,
        "start": (start_ns - stream.start) / NS_PER_SECOND,
        "end": None if command.end_ns is None else (end_ns - stream.start) / NS_PER_SECOND,
        "duration_seconds": seconds,
        "ongoing": command.end_ns is None,
        "started_before_trace": command.started_before_trace,
        "wall_start": iso_time(stream.wall_ns(start_ns)),
        "wall_end": None if command.end_ns is None else iso_time(stream.wall_ns(end_ns)),
        "detail": command.detail,
        "lower_bounds": host_report["lower_bounds"],
        "roles": roles,
    }


def marker_list(hosts: dict[str, HostTotals]) -> list[dict]:
    """Return the markers that are not part of a command (no start or end phase)."""
    return [
        {
            "host": host_name,
            "name": instant.name,
            "id": instant.id,
            "phase": instant.phase,
            "time": max(0, instant.ts - stream.start) / NS_PER_SECOND,
            "wall_time": iso_time(stream.wall_ns(instant.ts)),
            "detail": instant.detail,
        }
        for host_name, host in hosts.items()
        for stream in host.streams
        for instant in stream.lifecycle.instants
    ]


def compare_rows(commands: list[dict], by_host: dict[str, dict]) -> list[dict]:
    """Return one row per window, role and metric that was active in the window or the baseline.

    The windows are every lifecycle command, then the busiest window of
    each role of each host.
    """
    rows = []
    for command in commands:
        for role_name, role in command["roles"].items():
            rows += metric_rows(
                {
                    "host": command["host"],
                    "window": "command",
                    "name": command["name"],
                    "id": command["id"],
                    "start": command["start"],
                    "seconds": command["duration_seconds"],
                    "role": role_name,
                },
                role,
                command["lower_bounds"],
            )

    for host_name, host in by_host.items():
        for role_name, window in host["busiest"].items():
            rows += metric_rows(
                {
                    "host": host_name,
                    "window": "busiest",
                    "name": None,
                    "id": None,
                    "start": window["start"],
                    "seconds": window["seconds"],
                    "role": role_name,
                },
                window,
                host["lower_bounds"],
            )
    return rows


def metric_rows(window: dict, role: dict, lower_bound: bool) -> list[dict]:
    rows = []
    for metric in METRICS:
        during = role["rates"][metric]
        baseline = role["baseline_rates"][metric]
        if not during and not baseline:
            continue
        rows.append(
            {
                **window,
                "metric": metric,
                "during": during,
                "baseline": baseline,
                "ratio": role["ratios"][metric],
                "new_activity": metric in role["new_activity"],
                "lower_bound": lower_bound,
            }
        )
    return rows


def aligned_dict(
    hosts: dict[str, HostTotals], role_names: list[str], warnings: list[str]
) -> dict | None:
    """Return the wall-clock view of every role across hosts, or None with fewer than two hosts."""
    if len(hosts) < 2:
        return None

    grid = WallClockGrid(hosts)
    for host_name in grid.hosts_without_clock:
        warnings.append(
            f"the streams of {host_name} have no clock in their header, "
            "so it is left out of the wall-clock view"
        )
    if len(grid.hosts) < 2 or not grid.cells:
        return None

    origin = grid.origin_ns()
    timeline: dict[str, list] = {name: [] for name in role_names}
    for cell in sorted(grid.cells):
        cell_start = cell * grid.cell_ns
        by_host = grid.cells[cell]
        for role_name in role_names:
            timeline[role_name].append(
                {
                    "start": (cell_start - origin) / NS_PER_SECOND,
                    "wall_start": iso_time(cell_start),
                    "hosts": {
                        host_name: aligned_entry(by_host.get(host_name), role_name)
                        for host_name in grid.hosts
                    },
                }
            )

    return {
        "interval": grid.cell_ns / NS_PER_SECOND,
        "origin": iso_time(origin),
        "origin_unix": origin / NS_PER_SECOND,
        "hosts": grid.hosts,
        "hosts_without_clock": grid.hosts_without_clock,
        "timeline": timeline,
    }


def aligned_entry(entry: dict | None, role_name: str) -> dict | None:
    """Return a host's counts of a role in one wall-clock cell, or None where it was not traced."""
    if entry is None:
        return None
    counts = entry["roles"].get(role_name, Counter())
    covered = entry["counter_ns"]
    result: dict = {name: counts[name] for name in COUNT_NAMES}
    result["syscalls"] = counts["syscalls"]
    result["cpu_seconds"] = counts["cpu_ns"] / NS_PER_SECOND
    result["cpu_core_percent"] = percent(counts["cpu_ns"], covered)
    result["cpu_machine_percent"] = percent(counts["cpu_ns"], covered * entry["cpus"])
    result["counter_seconds"] = covered / NS_PER_SECOND
    return result


def roles_dict(roles: dict[str, RoleTotals], bucket_starts: set[int], capacity: Capacity) -> dict:
    return {name: role_dict(role, bucket_starts, capacity) for name, role in roles.items()}


def role_dict(role: RoleTotals, bucket_starts: set[int], capacity: Capacity) -> dict:
    result: dict = {name: role.counts[name] for name in COUNT_NAMES}
    result["syscalls_total"] = role.syscalls_total
    result["syscalls"] = ranked(role.syscalls)
    result["cpu_seconds"] = role.cpu_ns / NS_PER_SECOND
    result["cpu_core_percent"] = capacity.core_percent(role.cpu_ns)
    result["cpu_machine_percent"] = capacity.machine_percent(role.cpu_ns)
    result["executables"] = ranked(role.executables)
    result["failed_executables"] = ranked(role.failed_executables)
    result["command_lines"] = command_lines_dict(role)
    result["exec_depths"] = exec_depths(role.lineage.execs_by_depth)
    known_depths = [depth for depth in role.lineage.execs_by_depth if depth != UNKNOWN_DEPTH]
    result["max_exec_depth"] = max(known_depths, default=None)
    result["forks_without_exec"] = role.lineage.forks_without_exec
    result["timeline"] = [
        timeline_entry(start_ns, role, capacity) for start_ns in sorted(bucket_starts)
    ]
    return result


def timeline_entry(start_ns: int, role: RoleTotals, capacity: Capacity) -> dict:
    counts = role.timeline.get(start_ns, Counter())
    entry: dict = {"start": start_ns / NS_PER_SECOND}
    for name in COUNT_NAMES:
        entry[name] = counts[name]
    entry["syscalls"] = counts["syscalls"]
    entry["cpu_seconds"] = counts["cpu_ns"] / NS_PER_SECOND
    entry["cpu_core_percent"] = capacity.core_percent(counts["cpu_ns"], start_ns)
    entry["cpu_machine_percent"] = capacity.machine_percent(counts["cpu_ns"], start_ns)
    entry["counter_seconds"] = capacity.counter_ns[start_ns] / NS_PER_SECOND
    in_bucket = role.command_line_timeline.get(start_ns, {})
    entry["command_lines"] = {
        text: {"execs": execs, "failed_execs": failed}
        for text, (execs, failed) in sorted(
            in_bucket.items(), key=lambda item: (-sum(item[1]), item[0])
        )
    }
    return entry


def command_lines_dict(role: RoleTotals) -> dict:
    rows = sorted(
        role.command_lines.items(),
        key=lambda item: (-(item[1].execs + item[1].failed_execs), item[0]),
    )
    return {
        text: {
            "execs": row.execs,
            "failed_execs": row.failed_execs,
            "executables": ranked(row.executables),
            "failed_executables": ranked(row.failed_executables),
        }
        for text, row in rows
    }


def exec_depths(by_depth: Counter) -> dict[str, int]:
    """Return exec counts by depth as a dict with string keys: depths in order, then unknown."""
    known = sorted(depth for depth in by_depth if depth != UNKNOWN_DEPTH)
    result = {str(depth): by_depth[depth] for depth in known}
    if by_depth[UNKNOWN_DEPTH]:
        result[UNKNOWN_DEPTH] = by_depth[UNKNOWN_DEPTH]
    return result


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
