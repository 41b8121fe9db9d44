"""Text sections about lifecycle commands: what each role did then, and ratios to its baseline."""

from __future__ import annotations

import math

from tracer.report.rates import METRICS
from tracer.report.text import number, ratio_text, seconds_text, shorten, wrap

# Columns of the command table: (count key, rate key, heading).
COLUMNS = (
    ("process_forks", "process_forks", "forks"),
    ("execs", "execs", "execs"),
    ("failed_execs", "failed_execs", "failed"),
    ("syscalls", "syscalls", "syscalls"),
)
ROLE_WIDTH = 17


def command_title(command: dict) -> str:
    """Return 'configure 173fe299 on web-1' with the id cut to its first 8 characters."""
    short_id = f" {command['id'][:8]}" if command["id"] else ""
    return f"{command['name']}{short_id} on {command['host']}"


def command_span(command: dict) -> str:
    """Return when a command ran and how it ended ('from +300.1 s for 90.9 s, success')."""
    text = f"from +{command['start']:.1f} s for {seconds_text(command['duration_seconds'])}"
    if command["started_before_trace"]:
        text += " (started before the trace)"
    if command["ongoing"]:
        return text + ", still running when the trace ended"

    detail = command["detail"]
    if "outcome" in detail:
        text += f", {detail['outcome']}"
    if "exit_code" in detail:
        text += f", exit code {detail['exit_code']}"
    return text


def command_lines(report: dict) -> list[str]:
    """Return the lifecycle command section: counts, rates and baseline rates per active role."""
    heading = f"    {'role':<{ROLE_WIDTH}}" + "".join(f"{title:>10}" for _, _, title in COLUMNS)
    lines = ["Lifecycle commands (counts, rates per second, and the baseline outside commands)"]
    for command in report["commands"]:
        lines.append(f"  {shorten(command_title(command), 76)}")
        lines += wrap(command_span(command), "    ", "    ")
        lines.append(heading + f"{'cpu':>10}")
        for role_name, role in command["roles"].items():
            if not active(role):
                continue
            lines += role_rows(role_name, role)
    return lines


def active(role: dict) -> bool:
    """Tell whether a role did anything during a window or in the baseline."""
    return any(role["rates"][metric] or role["baseline_rates"][metric] for metric in METRICS)


def role_rows(role_name: str, role: dict) -> list[str]:
    counts = "".join(f"{role[key]:>10}" for key, _, _ in COLUMNS)
    during = "".join(f"{number(role['rates'][key]):>10}" for _, key, _ in COLUMNS)
    baseline = "".join(f"{number(role['baseline_rates'][key]):>10}" for _, key, _ in COLUMNS)
    cpu = role["rates"]["cpu_core_percent"]
    base_cpu = role["baseline_rates"]["cpu_core_percent"]
    return [
        f"    {shorten(role_name, ROLE_WIDTH):<{ROLE_WIDTH}}{counts}{role['cpu_seconds']:>8.2f} s",
        f"      {'per second':<{ROLE_WIDTH - 2}}{during}{number(cpu):>8} %",
        f"      {'baseline/s':<{ROLE_WIDTH - 2}}{baseline}{number(base_cpu):>8} %",
    ]


def compare_lines(report: dict) -> list[str]:
    """Return the comparison: one line per role and metric for each command and busiest window."""
    lines = ["Compared with the baseline (each role's rate outside every lifecycle command)"]
    for host_name, host in report["by_host"].items():
        baseline = host["baseline"]
        if report["commands"]:
            basis = f"baseline {seconds_text(baseline['seconds'])} outside commands"
        else:
            whole = seconds_text(baseline["seconds"])
            basis = f"no lifecycle commands, so the baseline is the whole {whole}"
        window = host["busiest_window_seconds"]
        lines += wrap(
            f"{host_name}: {basis}; busiest windows last {seconds_text(window)}.", "  ", "    "
        )

    for command in report["commands"]:
        lines += ["", f"  During {command_title(command)}, {command_span(command)}"]
        ranked = [
            item
            for role_name, role in command["roles"].items()
            for item in metric_sentences(role_name, role)
        ]
        # Largest change first: new activity, then the highest ratios.
        ranked.sort(key=lambda item: item[0], reverse=True)
        for _, sentence in ranked:
            lines += wrap(sentence, "    ", "      ")

    for host_name, host in report["by_host"].items():
        for role_name, window in host["busiest"].items():
            sentences = sorted(
                metric_sentences(role_name, window), key=lambda item: item[0], reverse=True
            )
            if not sentences:
                continue
            ranked_by = "CPU" if window["ranked_by"] == "cpu" else "events"
            title = (
                f"  Busiest {seconds_text(window['seconds'])} of {role_name} on {host_name}, "
                f"from +{window['start']:.1f} s (by {ranked_by})"
            )
            lines += ["", title]
            for _, sentence in sentences:
                lines += wrap(sentence, "    ", "      ")
    return lines


def metric_sentences(role_name: str, role: dict) -> list[tuple[float, str]]:
    """Return sentences such as 'process_command forks 180x its baseline (24.1/s vs 0.134/s)'.

    Each comes with a sort key: the ratio, infinity for new activity and
    minus one where there is nothing to compare with.
    """
    sentences = []
    for metric, label in METRICS.items():
        during = role["rates"][metric]
        baseline = role["baseline_rates"][metric]
        if not during and not baseline:
            continue

        unit = "% of a core" if metric == "cpu_core_percent" else "/s"
        during_text = f"{number(during)}{unit}"
        ratio = role["ratios"][metric]
        if metric in role["new_activity"]:
            sentences.append(
                (
                    math.inf,
                    f"{role_name} {label}: new activity ({during_text}, none in the baseline)",
                )
            )
        elif ratio is not None:
            sentence = (
                f"{role_name} {label} {ratio_text(ratio)} its baseline "
                f"({during_text} vs {number(baseline)}{unit})"
            )
            sentences.append((ratio, sentence))
        elif baseline is None:
            sentences.append(
                (
                    -1.0,
                    f"{role_name} {label} {during_text} (no time outside commands to compare with)",
                )
            )
    return sentences
