"""A compact wall-clock timeline per role, with hosts side by side."""

from __future__ import annotations

import math

from tracer.report.text import WIDTH, number, shorten

# Rows per role at most: longer traces are shown in coarser steps.
MAX_ROWS = 24
CELL_WIDTH = 16


def wallclock_lines(aligned: dict) -> list[str]:
    """Return per role a table of forks and CPU % of one core per host and wall-clock step."""
    hosts = aligned["hosts"]
    any_role = next(iter(aligned["timeline"].values()), [])
    if not any_role:
        return []

    interval = aligned["interval"]
    first_start = any_role[0]["start"]
    span_cells = round((any_role[-1]["start"] - first_start) / interval) + 1
    step_cells = max(1, math.ceil(span_cells / MAX_ROWS))
    dates = {entry["wall_start"][:10] for entry in any_role}
    time_width = 8 if len(dates) == 1 else 14
    hosts_per_table = max(1, (WIDTH - 2 - time_width) // (CELL_WIDTH + 1))

    day = f", {next(iter(dates))}" if len(dates) == 1 else ""
    lines = [
        f"Wall-clock timeline (UTC{day}, rows of {step_cells * interval:g} s)",
        "  each host: forks, and CPU % of one core",
    ]
    for role_name, entries in aligned["timeline"].items():
        rows = group_rows(entries, first_start, interval, step_cells)
        for first_host in range(0, len(hosts), hosts_per_table):
            chunk = hosts[first_host : first_host + hosts_per_table]
            lines.append(f"  {role_name}")
            lines.append(
                f"  {'time':<{time_width}}"
                + "".join(f" {shorten(host, CELL_WIDTH):>{CELL_WIDTH}}" for host in chunk)
            )
            for wall_start, by_host in rows:
                label = wall_start[11:19] if time_width == 8 else wall_start[5:19].replace("T", " ")
                lines.append(
                    f"  {label:<{time_width}}" + "".join(cell(by_host.get(host)) for host in chunk)
                )
    return lines


def group_rows(entries: list[dict], first_start: float, interval: float, step_cells: int) -> list:
    """Sum consecutive cells into rows of `step_cells` cells: [(wall start, {host: sums})]."""
    rows: dict[int, tuple[str, dict]] = {}
    for entry in entries:
        row = round((entry["start"] - first_start) / interval) // step_cells
        sums = rows.setdefault(row, (entry["wall_start"], {}))[1]
        for host, counts in entry["hosts"].items():
            if counts is None:
                continue
            total = sums.setdefault(host, {"forks": 0, "cpu_seconds": 0.0, "counter_seconds": 0.0})
            total["forks"] += counts["process_forks"]
            total["cpu_seconds"] += counts["cpu_seconds"]
            total["counter_seconds"] += counts["counter_seconds"]
    return [rows[key] for key in sorted(rows)]


def cell(sums: dict | None) -> str:
    """Format one host's forks and CPU % in a row; '-' where the host was not traced."""
    if sums is None:
        return f" {'-':>{CELL_WIDTH}}"
    covered = sums["counter_seconds"]
    cpu = 100.0 * sums["cpu_seconds"] / covered if covered > 0 else None
    return f" {sums['forks']:>7} {number(cpu) + '%':>8}"
