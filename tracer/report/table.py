"""Format a report as plain text that fits in 80 columns."""

from __future__ import annotations

from tracer.report.table_commands import command_lines as lifecycle_lines
from tracer.report.table_commands import compare_lines
from tracer.report.table_wallclock import wallclock_lines
from tracer.report.text import COUNT_WIDTH, LABEL_WIDTH, WIDTH, count_line, number, shorten, wrap

TOP = 5

# Label of each count in a role block, in the order shown.
ROLE_COUNTS = (
    ("process_forks", "process forks"),
    ("thread_creations", "thread creations"),
    ("execs", "execs"),
    ("failed_execs", "failed execs"),
    ("exits", "exits"),
    ("syscalls_total", "syscalls"),
)


def ranking_lines(title: str, counts: dict[str, int]) -> list[str]:
    """Return the top entries of `counts`, names cut so that every line fits WIDTH."""
    top = list(counts.items())[:TOP]
    name_width = min(max(len(name) for name, _ in top), WIDTH - 4 - 1 - COUNT_WIDTH)
    name_width = max(name_width, LABEL_WIDTH - 2)

    lines = [f"  {title}"]
    for name, count in top:
        lines.append(f"    {shorten(name, name_width):<{name_width}} {count:>{COUNT_WIDTH}}")
    return lines


def command_line_ranking(command_lines: dict[str, dict]) -> list[str]:
    """Return the top normalised command lines with their exec and failed exec counts."""
    name_width = WIDTH - 4 - 2 * 8
    lines = [f"  {'top command lines':<{name_width + 2}} {'execs':>7} {'failed':>7}"]
    for text, row in list(command_lines.items())[:TOP]:
        lines.append(
            f"    {shorten(text, name_width):<{name_width}} "
            f"{row['execs']:>7} {row['failed_execs']:>7}"
        )
    return lines


def format_table(report: dict, compare: bool = False) -> str:
    """Return the report as text: a summary, then the roles and commands, or the comparison.

    Both views end with the hosts, the losses, notes and warnings.
    """
    lines = summary_lines(report)

    if compare:
        lines.append("")
        lines += compare_lines(report)
    else:
        if not report["roles"]:
            lines += ["", "No roles were configured or seen."]
        for name, role in report["roles"].items():
            lines.append("")
            lines += role_lines(name, role)
        if report["commands"]:
            lines.append("")
            lines += lifecycle_lines(report)

    if len(report["hosts"]) > 1:
        lines.append("")
        lines += host_lines(report)
        if report["aligned"] is not None and not compare:
            lines.append("")
            lines += wallclock_lines(report["aligned"])

    lines.append("")
    lines += lost_lines(report)

    if report["notes"]:
        lines += ["", "Notes"]
        for note in report["notes"]:
            lines += wrap(note, "  - ", "    ")

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
    several = len(report["by_host"]) > 1
    cpus = ", ".join(
        (f"{name} " if several else "")
        + str(host["cpus"])
        + (" (assumed)" if host["cpus_assumed"] else "")
        for name, host in report["by_host"].items()
    )

    lines = ["agent-tracer report"]
    lines += wrap(", ".join(report["hosts"]), "Hosts:    ", "          ")
    lines.append(f"Streams:  {stream_text}")
    lines.append(f"Duration: {report['duration_seconds']:.1f} s")
    lines += wrap(cpus, "CPUs:     ", "          ")
    return lines


def role_lines(name: str, role: dict) -> list[str]:
    lines = [shorten(f"Role {name}", WIDTH)]
    for key, label in ROLE_COUNTS:
        lines.append(count_line(label, str(role[key])))
    lines.append(count_line("cpu seconds", f"{role['cpu_seconds']:.6f}"))
    lines.append(count_line("cpu % of one core", number(role["cpu_core_percent"])))
    lines.append(count_line("cpu % of machine", number(role["cpu_machine_percent"])))
    lines.append(count_line("forks without exec", str(role["forks_without_exec"])))
    if role["exec_depths"]:
        depths = ", ".join(f"{depth}: {count}" for depth, count in role["exec_depths"].items())
        lines += wrap(depths, f"  {'exec depths':<{LABEL_WIDTH}} ", " " * (LABEL_WIDTH + 3))

    for title, counts in (
        ("top syscalls", role["syscalls"]),
        ("top executables", role["executables"]),
        ("top failed executables", role["failed_executables"]),
    ):
        if counts:
            lines += ranking_lines(title, counts)
    if role["command_lines"]:
        lines += command_line_ranking(role["command_lines"])
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

    lost = any(report["lost"].values())
    if lost and report["truncated"]:
        lines.append(
            "  Data was lost and a stream ends early, so every count above is a lower bound."
        )
    elif lost:
        lines.append("  Data was lost, so every count above is a lower bound.")
    elif report["truncated"]:
        lines.append("  A stream ends early, so every count above is a lower bound.")
    else:
        lines.append("  Nothing was lost.")
    return lines
