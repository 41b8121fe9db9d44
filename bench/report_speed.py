#!/usr/bin/env python3
"""Measure how long `agent-tracer report` takes on long streams, and its peak memory.

Builds a stream of HOURS of the demo scenario and reports on it in a fresh
process, once per length given, so that the peak RSS of each run is its
own. The stream is a real demo stream (--template, e.g. from `agent-tracer
demo -o demo.msgpack`) repeated back to back. Without a template it is
synthetic, with the demo's mix: 1 s buckets, about 40 forks, 33 execs and
3 failed execs a second, shell command lines with pids in them, and a
configure command in every 32 s.

Usage:
    python bench/report_speed.py [--template demo.msgpack] [--hours 1 4]
        [--scale 1 4] [--keep DIR]

It prints one line per length and scale: records, stream size, the
seconds (and CPU seconds) that the default table report takes from
reading to text, the seconds that JSON and CSV take after that, peak RSS,
and the load average (other work on the machine stretches the seconds).
The same peak RSS at --scale 1 and 4 shows that memory does not grow with
the number of events; it grows with the number of buckets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracer.stream import StreamWriter, read_stream

SECOND = 1_000_000_000
CYCLE_SECONDS = 32
ROLES = ("master", "keep_alive", "statistics", "process_command")
ROOTS = {"master": 100, "keep_alive": 101, "statistics": 102, "process_command": 103}
# Syscall numbers (x86_64) that the demo's roles make most.
BUSY_SYSCALLS = (
    0,
    1,
    3,
    9,
    10,
    11,
    12,
    13,
    17,
    21,
    33,
    39,
    56,
    59,
    61,
    158,
    186,
    218,
    231,
    257,
    262,
    273,
)


def synthetic_header(start: int) -> dict:
    return {
        "type": "header",
        "schema": 1,
        "tool": "agent-tracer",
        "host": "bench",
        "cpus": 2,
        "arch": "x86_64",
        "compat_arch": "i386",
        "clock": {"monotonic_ns": start, "realtime_ns": 1_700_000_000 * SECOND},
        "start": start,
        "interval": 1.0,
        "roles": [{"name": name, "rule": f"opsworks-agent: {name}"} for name in ROLES],
    }


def synthetic_cycle(origin: int, cycle: int, rng: random.Random, scale: int) -> list[dict]:
    """Return 32 s of records: routine polling, and a Chef run from second 15 to 20.

    `scale` multiplies the events per second; the buckets stay the same.
    """
    records = []
    pid = 10_000 + cycle * 2_000 * scale
    for second in range(CYCLE_SECONDS):
        base = origin + second * SECOND
        chef = 15 <= second < 20
        if second == 15:
            records.append(marker(base, "start", cycle))
        role = "process_command" if chef else "keep_alive"
        per_second = (200 if chef else 10) * scale
        for index in range(per_second):
            ts = base + index * (SECOND // (per_second + 10))
            pid += 1
            records.append(
                {
                    "type": "fork",
                    "ts": ts,
                    "pid": pid,
                    "ppid": ROOTS[role],
                    "tid": ROOTS[role],
                    "role": role,
                }
            )
            if chef and index % 10 == 0:
                records.append(
                    {
                        "type": "exec_failed",
                        "ts": ts + 1000,
                        "pid": pid,
                        "filename": "/usr/local/bin/uname",
                        "argv": ["uname", "-r"],
                        "errno": 2,
                        "role": role,
                    }
                )
            if index % 6 != 5:
                records.append(
                    {
                        "type": "exec",
                        "ts": ts + 2000,
                        "pid": pid,
                        "filename": "/bin/sh",
                        "argv": ["/bin/sh", "-c", f"/bin/cat /proc/{rng.randrange(1, 99999)}/stat"],
                        "comm": "sh",
                        "role": role,
                    }
                )
            records.append({"type": "exit", "ts": ts + 3000, "pid": pid, "role": role})
        if second == 19:
            records.append(marker(base + SECOND - 1, "end", cycle))
        records.append(
            {
                "type": "bucket",
                "start": base,
                "end": base + SECOND,
                "roles": {
                    name: {
                        "syscalls": {
                            nr: rng.randrange(1, 400 if chef else 40) for nr in BUSY_SYSCALLS
                        },
                        "cpu_ns": rng.randrange(
                            1, 300_000_000 if chef and name == "process_command" else 5_000_000
                        ),
                    }
                    for name in ROLES
                },
            }
        )
    return records


def marker(ts: int, phase: str, cycle: int) -> dict:
    return {
        "type": "marker",
        "ts": ts,
        "name": "configure",
        "phase": phase,
        "id": f"bench-{cycle}",
        "detail": {"outcome": "success", "exit_code": 0} if phase == "end" else {},
    }


def write_synthetic(path: Path, hours: float, scale: int) -> int:
    start = 5_000 * SECOND
    rng = random.Random(1)
    cycles = round(hours * 3600 / CYCLE_SECONDS)
    records = 0
    with StreamWriter.create(path, force=True) as writer:
        writer.write(synthetic_header(start))
        for cycle in range(cycles):
            for record in synthetic_cycle(
                start + cycle * CYCLE_SECONDS * SECOND, cycle, rng, scale
            ):
                writer.write(record)
                records += 1
        end = start + cycles * CYCLE_SECONDS * SECOND
        writer.write({"type": "trailer", "ts": end, "end": end, "lost": {}, "reason": "duration"})
    return records + 2


def shifted(record: dict, offset: int, copy: int) -> dict:
    """Return a template record moved `offset` ns later, its pids and ids made unique per copy."""
    record = dict(record)
    for key in ("ts", "start", "end"):
        if key in record:
            record[key] += offset
    for key in ("pid", "ppid", "tid", "old_tid"):
        if key in record and record.get("type") not in ("root", "task"):
            record[key] += copy * 4_000_000
    if record["type"] == "marker" and "id" in record:
        record["id"] = f"{record['id']}-{copy}"
    return record


def write_from_template(path: Path, template: Path, hours: float) -> int:
    reader = read_stream(template)
    header = reader.header
    body = [record for record in reader if record["type"] != "trailer"]
    last = max(record.get("end", record.get("ts", header["start"])) for record in body)
    interval = round(header["interval"] * SECOND)
    span = -(-(last - header["start"]) // interval) * interval
    copies = max(1, round(hours * 3600 * SECOND / span))

    records = 0
    with StreamWriter.create(path, force=True) as writer:
        writer.write(header)
        for copy in range(copies):
            for record in body:
                writer.write(shifted(record, copy * span, copy))
                records += 1
        end = header["start"] + copies * span
        writer.write({"type": "trailer", "ts": end, "end": end, "lost": {}, "reason": "duration"})
    return records + 2


def measure(path: str) -> None:
    """Report on `path` as `agent-tracer report` does, then in JSON and CSV; print the costs."""
    from tracer.report.aggregate import fold_streams
    from tracer.report.csv_format import format_csv
    from tracer.report.json_format import format_json
    from tracer.report.summary import report_dict
    from tracer.report.table import format_table

    result = {}
    began, began_cpu = time.perf_counter(), time.process_time()
    report = report_dict(fold_streams([path]))
    format_table(report)
    result["table"] = (time.perf_counter() - began, time.process_time() - began_cpu)

    for name, formatter in (("json", format_json), ("csv", format_csv)):
        began, began_cpu = time.perf_counter(), time.process_time()
        formatter(report)
        result[name] = (time.perf_counter() - began, time.process_time() - began_cpu)

    result["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--template", type=Path, help="Real stream to repeat (default: synthetic records)."
    )
    parser.add_argument(
        "--hours", type=float, nargs="+", default=[1.0, 4.0], help="Stream lengths in hours."
    )
    parser.add_argument(
        "--scale",
        type=int,
        nargs="+",
        default=[1],
        help="Multipliers of the synthetic events per second (the buckets stay the same).",
    )
    parser.add_argument("--keep", type=Path, help="Directory to keep the generated streams in.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        measure(args.measure)
        return 0

    directory = args.keep or Path(tempfile.mkdtemp(prefix="report-speed-"))
    directory.mkdir(parents=True, exist_ok=True)
    source = f"template {args.template}" if args.template else "synthetic demo mix"
    print(f"report speed on {source}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    scales = [1] if args.template else args.scale
    for hours, scale in [(hours, scale) for hours in args.hours for scale in scales]:
        path = directory / f"stream-{hours:g}h-x{scale}.msgpack"
        if args.template:
            records = write_from_template(path, args.template, hours)
        else:
            records = write_synthetic(path, hours, scale)

        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout)
        table, as_json, as_csv = result["table"], result["json"], result["csv"]
        print(
            f"{hours:g} h x{scale}: {records} records, {path.stat().st_size / 2**20:.1f} MiB; "
            f"table report {table[0]:.2f} s ({table[1]:.2f} s CPU), then JSON "
            f"{as_json[0]:.2f} s, CSV {as_csv[0]:.2f} s; peak RSS "
            f"{result['peak_rss_kib'] / 1024:.0f} MiB; load average {os.getloadavg()[0]:.1f}"
        )
        if not args.keep:
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
