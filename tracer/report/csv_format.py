"""Format a report as CSV: one row per host, role and bucket."""

from __future__ import annotations

import csv
import io

# Column names are part of the documented format; scripts rely on them.
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
)


def format_csv(report: dict) -> str:
    """Return the timelines of every host and role as CSV with a header row."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(COLUMNS)

    for host_name, host in report["by_host"].items():
        for role_name, role in host["roles"].items():
            for entry in role["timeline"]:
                writer.writerow(
                    [
                        host_name,
                        role_name,
                        str(entry["start"]),
                        entry["process_forks"],
                        entry["thread_creations"],
                        entry["execs"],
                        entry["failed_execs"],
                        entry["exits"],
                        entry["syscalls"],
                        f"{entry['cpu_seconds']:.9f}",
                    ]
                )

    return output.getvalue()
