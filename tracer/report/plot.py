"""Draw a report as a PNG: CPU, forks and syscalls per role over time, with lifecycle commands.

One host gives one column of three panels over seconds from the start of
its trace. Several hosts give one column per host over wall-clock time
(UTC), with the same axes in every column so that hosts compare at a
glance. A host whose streams have no clock is left out. CPU and syscall
rates are drawn over the span of each counter reading as the tracer took
it, and forks per bucket. matplotlib is an optional dependency (`pip
install 'agent-tracer[plot]'`); the figure is drawn with its Agg backend
and needs no display.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime, timezone

from tracer.errors import TracerError
from tracer.report.aggregate import NS_PER_SECOND, FoldResult, StreamTotals

# Syscall names drawn on their own in the stacked panel; the rest are folded.
TOP_SYSCALLS = 8
OTHER_SYSCALLS = "other"
ROLE_COLORS = "tab10"
SYSCALL_COLORS = "Pastel1"
# Darker than the pastel layers, so that the folded rest shows on the command shading.
OTHER_COLOR = "#a9a9c4"
COLUMN_WIDTH_INCHES = 7.0
PANEL_HEIGHT_INCHES = 2.6
COMMAND_SHADE = "0.55"
HEADROOM = 1.15
MIN_MATPLOTLIB = (3, 7)


class PlotError(TracerError):
    """The plot could not be drawn or written."""


def load_matplotlib():
    """Import matplotlib's Figure and Agg canvas, or raise PlotError saying how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        if (error.name or "").split(".")[0] == "matplotlib":
            raise PlotError(
                "--plot needs matplotlib, which is not installed; "
                "install it with: pip install 'agent-tracer[plot]'"
            ) from None
        raise PlotError(f"--plot needs matplotlib, which failed to import: {error}") from None

    import matplotlib

    # Legends placed outside the axes ("outside right upper") came in 3.7.
    version = tuple(int(part) for part in re.findall(r"\d+", matplotlib.__version__)[:2])
    if version < MIN_MATPLOTLIB:
        raise PlotError(
            f"--plot needs matplotlib {'.'.join(map(str, MIN_MATPLOTLIB))} or later, "
            f"but {matplotlib.__version__} is installed; upgrade it with: "
            "pip install --upgrade 'agent-tracer[plot]'"
        )
    return Figure, FigureCanvasAgg


class TimeAxis:
    """Converts a stream's monotonic ns to x values: seconds from its start, or UTC datetimes."""

    def __init__(self, wall_clock: bool):
        self.wall_clock = wall_clock

    def x(self, stream: StreamTotals, ts: int):
        if self.wall_clock:
            return datetime.fromtimestamp(stream.wall_ns(ts) / NS_PER_SECOND, tz=timezone.utc)
        return (ts - stream.start) / NS_PER_SECOND


def plot_report(fold: FoldResult, report: dict, path: str) -> None:
    """Draw the report's timelines and write them to `path` as a PNG.

    `fold` must come from `fold_streams(..., readings=True)`. Raises
    PlotError when matplotlib is missing or the file cannot be written.
    """
    Figure, FigureCanvasAgg = load_matplotlib()

    hosts = list(report["hosts"])
    wall_clock = len(hosts) > 1
    if wall_clock:
        hosts = [
            name for name in hosts if any(s.clock is not None for s in fold.hosts[name].streams)
        ]
        if not hosts:
            raise PlotError(
                "none of the hosts' streams have a clock in their header, "
                "so they cannot be drawn on wall-clock time; plot one host at a time"
            )
    time_axis = TimeAxis(wall_clock)
    role_names = list(report["roles"])
    colors = role_colors(role_names)
    top_names = top_syscall_names(fold, hosts)

    figure = Figure(
        figsize=(2.2 + COLUMN_WIDTH_INCHES * len(hosts), 1.4 + 3 * PANEL_HEIGHT_INCHES),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    # Shared x and y axes put every host on the same time range and scale.
    axes = figure.subplots(3, len(hosts), sharex=True, sharey="row", squeeze=False)

    for index, host_name in enumerate(hosts):
        column = axes[:, index]
        if wall_clock:
            column[0].set_title(host_name, fontsize=11)
        for stream in fold.hosts[host_name].streams:
            if wall_clock and stream.clock is None:
                continue
            draw_stream(column, stream, time_axis, role_names, colors, top_names)
        finish_column(column, time_axis, first=index == 0)

    add_legends(figure, axes, role_names, colors, top_names)
    figure.suptitle(figure_title(report), fontsize=13)
    if report["lower_bounds"]:
        figure.text(0.01, 0.995, lower_bound_text(report), color="firebrick", fontsize=9, va="top")

    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise PlotError(f"cannot write the plot to {path}: {error.strerror or error}") from None


def figure_title(report: dict) -> str:
    hosts = report["hosts"]
    if len(hosts) == 1:
        host = report["by_host"][hosts[0]]
        return (
            f"{hosts[0]}: {report['duration_seconds']:.0f} s traced in {host['interval']:g} s "
            f"buckets, {host['cpus']} CPUs"
        )
    return f"{len(hosts)} hosts on wall-clock time"


def lower_bound_text(report: dict) -> str:
    lost = ", ".join(f"{count} {name}" for name, count in report["lost"].items() if count)
    reasons = []
    if lost:
        reasons.append(f"lost: {lost}")
    if report["truncated"]:
        reasons.append("a stream ends early")
    return "Counts are lower bounds (" + "; ".join(reasons) + ")"


def role_colors(role_names: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps[ROLE_COLORS].colors
    return {name: palette[index % len(palette)] for index, name in enumerate(role_names)}


def top_syscall_names(fold: FoldResult, hosts: list[str]) -> list[str]:
    """Return the syscall names with the most calls on the plotted hosts, most first."""
    totals = Counter()
    for host_name in hosts:
        for stream in fold.hosts[host_name].streams:
            for reading in stream.readings or ():
                totals.update(reading.syscall_names)
    return [name for name, _ in totals.most_common(TOP_SYSCALLS)]


def reading_steps(stream: StreamTotals, time_axis: TimeAxis, value) -> tuple[list, list]:
    """Return x and y of a step line over a stream's counter readings, with gaps as NaN.

    `value(reading, seconds)` gives the y value of one reading, or None.
    """
    xs, ys = [], []
    previous_end = None
    for reading in stream.readings or ():
        seconds = (reading.end_ns - reading.start_ns) / NS_PER_SECOND
        if seconds <= 0:
            continue
        if previous_end is not None and reading.start_ns != previous_end:
            xs.append(time_axis.x(stream, previous_end))
            ys.append(math.nan)
        y = value(reading, seconds)
        xs.append(time_axis.x(stream, reading.start_ns))
        ys.append(math.nan if y is None else y)
        previous_end = reading.end_ns
    if previous_end is not None:
        xs.append(time_axis.x(stream, previous_end))
        ys.append(ys[-1])
    return xs, ys


def bucket_steps(stream: StreamTotals, time_axis: TimeAxis, timeline: dict) -> tuple[list, list]:
    """Return x and y of forks per second per bucket of a stream, zero in quiet buckets."""
    interval = stream.interval_ns
    starts = sorted(stream.bucket_starts)
    xs, ys = [], []
    for index, start_ns in enumerate(starts):
        if index and start_ns - starts[index - 1] > interval:
            xs.append(time_axis.x(stream, stream.start + starts[index - 1] + interval))
            ys.append(math.nan)
        counts = timeline.get(start_ns)
        forks = counts["process_forks"] if counts else 0
        xs.append(time_axis.x(stream, stream.start + start_ns))
        ys.append(forks * NS_PER_SECOND / interval)
    if starts:
        xs.append(
            time_axis.x(stream, stream.start + min(starts[-1] + interval, stream.duration_ns))
        )
        ys.append(ys[-1])
    return xs, ys


def draw_stream(
    axes, stream: StreamTotals, time_axis: TimeAxis, role_names, colors, top_names
) -> None:
    """Draw one stream's series and lifecycle commands into a column of three panels."""
    cpu_axis, fork_axis, syscall_axis = axes

    draw_syscall_stack(syscall_axis, stream, time_axis, top_names)
    for role_name in role_names:
        color = colors[role_name]
        xs, ys = reading_steps(
            stream,
            time_axis,
            lambda reading, seconds, role_name=role_name: cpu_percent(reading, role_name, seconds),
        )
        cpu_axis.plot(xs, ys, drawstyle="steps-post", color=color, linewidth=1.7)

        role = stream.roles.get(role_name)
        if role is not None:
            xs, ys = bucket_steps(stream, time_axis, role.timeline)
            fork_axis.plot(xs, ys, drawstyle="steps-post", color=color, linewidth=1.7)

        xs, ys = reading_steps(
            stream,
            time_axis,
            lambda reading, seconds, role_name=role_name: (
                reading.roles.get(role_name, (0, 0))[0] / seconds
            ),
        )
        syscall_axis.plot(
            xs, ys, drawstyle="steps-post", color=color, linewidth=1.2, linestyle="--"
        )

    for axis in axes:
        draw_commands(axis, stream, time_axis, label=axis is cpu_axis)


def cpu_percent(reading, role_name: str, seconds: float) -> float:
    return 100.0 * reading.roles.get(role_name, (0, 0))[1] / NS_PER_SECOND / seconds


def draw_syscall_stack(
    axis, stream: StreamTotals, time_axis: TimeAxis, top_names: list[str]
) -> None:
    """Stack every role's syscalls per second by name: the top names, then the rest as 'other'."""
    layers = top_names + [OTHER_SYSCALLS]
    series = []
    for name in layers:
        if name == OTHER_SYSCALLS:

            def value(reading, seconds):
                named = sum(reading.syscall_names[top] for top in top_names)
                return (sum(reading.syscall_names.values()) - named) / seconds

        else:

            def value(reading, seconds, name=name):
                return reading.syscall_names[name] / seconds

        series.append(reading_steps(stream, time_axis, value))

    if not series[0][0]:
        return
    axis.stackplot(
        series[0][0],
        [ys for _, ys in series],
        labels=layers,
        colors=syscall_colors(len(top_names)),
        step="post",
    )


def syscall_colors(top_count: int) -> list:
    """Return the colours of the stacked layers: pastel ones for the top names, then OTHER_COLOR."""
    from matplotlib import colormaps

    palette = colormaps[SYSCALL_COLORS].colors
    return [palette[index % len(palette)] for index in range(top_count)] + [OTHER_COLOR]


def draw_commands(axis, stream: StreamTotals, time_axis: TimeAxis, label: bool) -> None:
    """Shade each lifecycle command and draw each instant marker; name them in the top panel."""
    end_of_stream = stream.last_ns
    for command in stream.lifecycle.commands:
        start = time_axis.x(stream, max(command.start_ns, stream.start))
        end_ns = end_of_stream if command.end_ns is None else command.end_ns
        axis.axvspan(
            start, time_axis.x(stream, end_ns), color=COMMAND_SHADE, alpha=0.18, linewidth=0
        )
        if label:
            text = command.name + (" (running)" if command.end_ns is None else "")
            annotate(axis, start, text)
    for instant in stream.lifecycle.instants:
        x = time_axis.x(stream, instant.ts)
        axis.axvline(x, color="0.35", linestyle=":", linewidth=1.2)
        if label:
            annotate(axis, x, instant.name)


def annotate(axis, x, text: str) -> None:
    axis.annotate(
        text,
        xy=(x, 1),
        xycoords=("data", "axes fraction"),
        xytext=(3, -3),
        textcoords="offset points",
        va="top",
        fontsize=9,
        fontweight="bold",
        color="0.2",
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
    )


def finish_column(axes, time_axis: TimeAxis, first: bool) -> None:
    cpu_axis, fork_axis, syscall_axis = axes
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.margins(x=0)
        # Headroom above the highest value keeps the command names off the lines.
        axis.set_ylim(0, max(axis.get_ylim()[1], 1e-9) * HEADROOM)

    if first:
        cpu_axis.set_ylabel("CPU, % of one core")
        fork_axis.set_ylabel("forks per second")
        syscall_axis.set_ylabel("syscalls per second")
    if time_axis.wall_clock:
        syscall_axis.set_xlabel("wall-clock time (UTC)")
        for label in syscall_axis.get_xticklabels():
            label.set_rotation(20)
    else:
        syscall_axis.set_xlabel("seconds from the start of the trace")


def add_legends(figure, axes, role_names, colors, top_names) -> None:
    """Add one legend for the roles (all panels) and one for the syscall names (bottom panels)."""
    from matplotlib.patches import Patch

    role_handles = [
        axes[0, 0].plot([], [], color=colors[name], linewidth=2)[0] for name in role_names
    ]
    figure.legend(
        role_handles,
        role_names,
        loc="outside right upper",
        title="role (dashed: its syscalls)",
        fontsize=9,
        title_fontsize=9,
    )

    layers = top_names + [OTHER_SYSCALLS]
    syscall_handles = [
        Patch(facecolor=color, label=name)
        for name, color in zip(layers, syscall_colors(len(top_names)))
    ]
    figure.legend(
        handles=syscall_handles,
        loc="outside right lower",
        title="syscalls, all roles",
        fontsize=9,
        title_fontsize=9,
    )
