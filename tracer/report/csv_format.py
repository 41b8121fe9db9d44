"""Format a report as CSV: one table per call, the bucket timeline by default.

Column names are part of the documented format (docs/format.md); scripts
rely on them. Empty cells stand for values that do not exist (a rate over
no time, a wall-clock time without a clock); booleans are `true`/`false`.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from tracer.report.aggregate import COUNT_NAMES

COLUMNS = (
    "host",
    "role",
    "start_seconds",
    "process_forks",
    "thread_creations",
    "execs",
    "failed_execs",
    "exits",
    "syscalls",
    "cpu_seconds",
    "cpu_core_percent",
    "cpu_machine_percent",
    "counter_seconds",
    "wall_start",
    "lower_bound",
)
COMMAND_LINE_COLUMNS = (
    "host",
    "role",
    "start_seconds",
    "command_line",
    "execs",
    "failed_execs",
    "lower_bound",
)
COMMAND_COLUMNS = (
    "host",
    "id",
    "name",
    "start_seconds",
    "end_seconds",
    "duration_seconds",
    "ongoing",
    "outcome",
    "exit_code",
    "role",
    *COUNT_NAMES,
    "syscalls",
    "cpu_seconds",
    "cpu_core_percent",
    "lower_bound",
)
COMPARE_COLUMNS = (
    "host",
    "window",
    "name",
    "id",
    "start_seconds",
    "seconds",
    "role",
    "metric",
    "during",
    "baseline",
    "ratio",
    "new_activity",
    "lower_bound",
)
ALIGNED_COLUMNS = (
    "wall_start",
    "offset_seconds",
    "role",
    "host",
    *COUNT_NAMES,
    "syscalls",
    "cpu_seconds",
    "cpu_core_percent",
    "cpu_machine_percent",
    "counter_seconds",
    "lower_bound",
)


def cell(value) -> str:
    """Format one CSV cell: '' for None, true/false for booleans, 9 decimals for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.9f}"
    return str(value)


def write_table(columns: tuple[str, ...], rows) -> str:
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return output.getvalue()


def format_csv(report: dict, table: str = "timeline") -> str:
    """Return one table of the report as CSV with a header row.

    `table` is timeline (one row per host, role and bucket), command_lines,
    commands, compare or aligned.
    """
    formatter = TABLES.get(table)
    if formatter is None:
        raise ValueError(f"unknown CSV table {table!r}; expected one of {', '.join(TABLES)}")
    return formatter(report)


def wall_time(host: dict, start: float) -> str | None:
    """Return the ISO time of a bucket that starts `start` seconds into a host's first stream."""
    if host["wall_start"] is None:
        return None
    origin = datetime.fromisoformat(host["wall_start"].replace("Z", "+00:00"))
    moment = origin + timedelta(seconds=start)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timeline_csv(report: dict) -> str:
    rows = []
    for host_name, host in report["by_host"].items():
        for role_name, role in host["roles"].items():
            for entry in role["timeline"]:
                rows.append(
                    [
                        host_name,
                        role_name,
                        str(entry["start"]),
                        *(entry[name] for name in COUNT_NAMES),
                        entry["syscalls"],
                        f"{entry['cpu_seconds']:.9f}",
                        cell(entry["cpu_core_percent"]),
                        cell(entry["cpu_machine_percent"]),
                        cell(entry["counter_seconds"]),
                        cell(wall_time(host, entry["start"])),
                        cell(host["lower_bounds"]),
                    ]
                )
    return write_table(COLUMNS, rows)


def command_lines_csv(report: dict) -> str:
    rows = []
    for host_name, host in report["by_host"].items():
        for role_name, role in host["roles"].items():
            for entry in role["timeline"]:
                for text, runs in entry["command_lines"].items():
                    rows.append(
                        [
                            host_name,
                            role_name,
                            str(entry["start"]),
                            text,
                            runs["execs"],
                            runs["failed_execs"],
                            cell(host["lower_bounds"]),
                        ]
                    )
    return write_table(COMMAND_LINE_COLUMNS, rows)


def commands_csv(report: dict) -> str:
    rows = []
    for command in report["commands"]:
        detail = command["detail"]
        for role_name, role in command["roles"].items():
            rows.append(
                [
                    command["host"],
                    cell(command["id"]),
                    command["name"],
                    cell(command["start"]),
                    cell(command["end"]),
                    cell(command["duration_seconds"]),
                    cell(command["ongoing"]),
                    cell(detail.get("outcome")),
                    cell(detail.get("exit_code")),
                    role_name,
                    *(role[name] for name in COUNT_NAMES),
                    role["syscalls"],
                    cell(role["cpu_seconds"]),
                    cell(role["rates"]["cpu_core_percent"]),
                    cell(command["lower_bounds"]),
                ]
            )
    return write_table(COMMAND_COLUMNS, rows)


def compare_csv(report: dict) -> str:
    rows = [
        [
            row["host"],
            row["window"],
            cell(row["name"]),
            cell(row["id"]),
            cell(row["start"]),
            cell(row["seconds"]),
            row["role"],
            row["metric"],
            cell(row["during"]),
            cell(row["baseline"]),
            cell(row["ratio"]),
            cell(row["new_activity"]),
            cell(row["lower_bound"]),
        ]
        for row in report["compare"]
    ]
    return write_table(COMPARE_COLUMNS, rows)


def aligned_csv(report: dict) -> str:
    aligned = report["aligned"]
    rows = []
    if aligned is not None:
        for role_name, entries in aligned["timeline"].items():
            for entry in entries:
                for host_name, counts in entry["hosts"].items():
                    if counts is None:
                        continue
                    rows.append(
                        [
                            entry["wall_start"],
                            cell(entry["start"]),
                            role_name,
                            host_name,
                            *(counts[name] for name in COUNT_NAMES),
                            counts["syscalls"],
                            cell(counts["cpu_seconds"]),
                            cell(counts["cpu_core_percent"]),
                            cell(counts["cpu_machine_percent"]),
                            cell(counts["counter_seconds"]),
                            cell(report["by_host"][host_name]["lower_bounds"]),
                        ]
                    )
    return write_table(ALIGNED_COLUMNS, rows)


TABLES = {
    "timeline": timeline_csv,
    "command_lines": command_lines_csv,
    "commands": commands_csv,
    "compare": compare_csv,
    "aligned": aligned_csv,
}
