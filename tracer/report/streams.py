"""Group input files into logical streams: one file, or every part of a rotated set.

`agent-tracer trace --rotate-size/--rotate-interval` writes numbered parts,
each a whole stream whose header carries `part` (1, 2, ...). The parts of
one host are read as one stream: in order of their start, on the time grid
of the first part, with processes and open commands carried from one part
to the next. A part numbered 1, or not higher than the part before it,
starts a new set. (A part after one whose trailer does not say "rotate"
starts a new stream too, but that is known only when reading; see
aggregate.fold_logical_stream.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.stream import read_stream


@dataclass
class LogicalStream:
    """Files of one host to read as one stream, in order, with their headers."""

    host: str
    paths: list[str] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)

    def append(self, path: str, header: dict) -> None:
        self.paths.append(path)
        self.headers.append(header)


def read_header(path: str) -> dict:
    """Return the header of a stream, closing the file at once."""
    reader = read_stream(path)
    reader.close()
    return reader.header


def valid_clock(header: dict) -> dict | None:
    """Return the header's clock when it has both integer times, else None."""
    clock = header.get("clock")
    if not isinstance(clock, dict):
        return None
    if not all(type(clock.get(key)) is int for key in ("monotonic_ns", "realtime_ns")):
        return None
    return clock


def part_number(header: dict) -> int | None:
    part = header.get("part")
    if type(part) is int and part >= 1:
        return part
    return None


def plan_streams(paths: list[str]) -> tuple[list[LogicalStream], list[str]]:
    """Read the headers of `paths`; return the logical streams, in the order given, and warnings.

    Raises StreamError for a file that is not a readable stream.
    """
    headers = [(path, read_header(path)) for path in paths]
    warnings = []
    plans: list[tuple[int, LogicalStream]] = []
    parts_by_host: dict[str, list[tuple[int, str, dict]]] = {}

    for index, (path, header) in enumerate(headers):
        if "clock" in header and valid_clock(header) is None:
            warnings.append(
                f"{path} has a clock without integer monotonic_ns and realtime_ns, "
                "so its times cannot be shown as wall-clock times"
            )
        if "part" in header and part_number(header) is None:
            warnings.append(
                f"{path} has an invalid part number {header['part']!r}, so it is read on its own"
            )
        if part_number(header) is None:
            plans.append((index, single(path, header)))
        else:
            parts_by_host.setdefault(header["host"], []).append((index, path, header))

    for host, parts in parts_by_host.items():
        parts.sort(key=lambda item: (item[2]["start"], part_number(item[2])))
        for first_index, plan in rotated_sets(host, parts, warnings):
            plans.append((first_index, plan))

    plans.sort(key=lambda item: item[0])
    return [plan for _, plan in plans], warnings


def single(path: str, header: dict) -> LogicalStream:
    plan = LogicalStream(host=header["host"])
    plan.append(path, header)
    return plan


def rotated_sets(
    host: str, parts: list[tuple[int, str, dict]], warnings: list[str]
) -> list[tuple[int, LogicalStream]]:
    """Split the parts of one host, sorted by start, into rotated sets."""
    sets: list[tuple[int, LogicalStream]] = []
    previous = None
    for index, path, header in parts:
        number = part_number(header)
        same_grid = (
            previous is not None and header["interval"] == sets[-1][1].headers[0]["interval"]
        )
        if previous is None or number == 1 or number <= previous or not same_grid:
            sets.append((index, single(path, header)))
            if number != 1:
                warnings.append(
                    f"the rotated stream of {host} that starts with {path} begins at part "
                    f"{number}; parts 1 to {number - 1} are not among the inputs (a restarted "
                    "tracer numbers its first part after the parts already on disk)"
                )
        else:
            if number != previous + 1:
                missing = (
                    f"part {previous + 1} is"
                    if number == previous + 2
                    else f"parts {previous + 1} to {number - 1} are"
                )
                warnings.append(
                    f"{missing} missing from the rotated stream of {host} before {path}, "
                    "so the report has a gap there"
                )
            first_index = min(sets[-1][0], index)
            sets[-1] = (first_index, sets[-1][1])
            sets[-1][1].append(path, header)
        previous = number
    return sets
