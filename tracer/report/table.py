"""Format a report as plain text that fits in 80 columns."""

from __future__ import annotations

import textwrap

WIDTH = 80
TOP = 5
LABEL_WIDTH = 18
COUNT_WIDTH = 12

# Label of each count in a role block, in the order shown.
ROLE_COUNTS = (
    ("process_forks", "process forks"),
    ("thread_creations", "thread creations"),
    ("execs", "execs"),
    ("failed_execs", "failed execs"),
    ("exits", "exits"),
    ("syscalls_total", "syscalls"),
)


def shorten(text: str, width: int) -> str:
    """Cut `text` to `width` characters, replacing its middle with '...'."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 3) // 2
    tail = width - 3 - head
    return text[:head] + "..." + text[len(text) - tail :]


def count_line(label: str, value: str) -> str:
    return f"  {label:<{LABEL_WIDTH}} {value:>{COUNT_WIDTH}}"


def ranking_lines(title: str, counts: dict[str, int]) -> list[str]:
    """Return the top entries of `counts`, names cut so that every line fits WIDTH."""
    top = list(counts.items())[:TOP]
    name_width = min(max(len(name) for name, _ in top), WIDTH - 4 - 1 - COUNT_WIDTH)
    name_width = max(name_width, LABEL_WIDTH - 2)

    lines = [f"  {title}"]
    for name, count in top:
        lines.append(f"    {shorten(name, name_width):<{name_width}} {count:>{COUNT_WIDTH}}")
    return lines


def format_table(report: dict) -> str:
    """Return the report as text: a summary, one block per role, hosts, losses, warnings."""
    lines = summary_lines(report)

    if not report["roles"]:
        lines += ["", "No roles were configured or seen."]
    for name, role in report["roles"].items():
        lines.append("")
        lines += role_lines(name, role)

    if len(report["hosts"]) > 1:
        lines.append("")
        lines += host_lines(report)

    lines.append("")
    lines += lost_lines(report)

    if report["warnings"]:
        lines += ["", "Warnings"]
        for warning in report["warnings"]:
            lines += wrap(warning, "  - ", "    ")

    return "\n".join(lines) + "\n"


def summary_lines(report: dict) -> list[str]:
    streams = report["streams"]
    incomplete = sum(1 for stream in streams if stream["truncated"] or stream["problem"])
    stream_text = f"{len(streams)} stream" + ("s" if len(streams) != 1 else "")
    if incomplete:
        stream_text += f", {incomplete} incomplete"

    lines = ["agent-tracer report"]
    lines += wrap(", ".join(report["hosts"]), "Hosts:    ", "          ")
    lines.append(f"Streams:  {stream_text}")
    lines.append(f"Duration: {report['duration_seconds']:.1f} s")
    return lines


def role_lines(name: str, role: dict) -> list[str]:
    lines = [shorten(f"Role {name}", WIDTH)]
    for key, label in ROLE_COUNTS:
        lines.append(count_line(label, str(role[key])))
    lines.append(count_line("cpu seconds", f"{role['cpu_seconds']:.6f}"))

    for title, counts in (
        ("top syscalls", role["syscalls"]),
        ("top executables", role["executables"]),
        ("top failed executables", role["failed_executables"]),
    ):
        if counts:
            lines += ranking_lines(title, counts)
    return lines


def host_lines(report: dict) -> list[str]:
    header = f"  {'host':<18} {'role':<18} {'forks':>7} {'execs':>7} {'syscalls':>11} {'cpu s':>10}"
    lines = ["By host", header]
    for host_name, host in report["by_host"].items():
        for role_name, role in host["roles"].items():
            lines.append(
                f"  {shorten(host_name, 18):<18} {shorten(role_name, 18):<18} "
                f"{role['process_forks']:>7} {role['execs']:>7} "
                f"{role['syscalls_total']:>11} {role['cpu_seconds']:>10.3f}"
            )
    return lines


def lost_lines(report: dict) -> list[str]:
    lines = ["Lost"]
    for name, count in report["lost"].items():
        lines.append(count_line(name, str(count)))
    if report["lower_bounds"]:
        lines.append("  Data was lost, so every count above is a lower bound.")
    else:
        lines.append("  Nothing was lost.")
    return lines


def wrap(text: str, first_prefix: str, prefix: str) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first_prefix,
        subsequent_indent=prefix,
        break_on_hyphens=False,
    )
