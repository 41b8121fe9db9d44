"""The `agent-tracer report` command."""

from __future__ import annotations

import os

import click

from tracer.errors import TracerError
from tracer.report.aggregate import fold_streams
from tracer.report.csv_format import TABLES
from tracer.report.render import FORMATTERS
from tracer.report.summary import report_dict


@click.command("report")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(list(FORMATTERS)),
    default="table",
    show_default=True,
    help="Output format: a text summary per role, JSON, or CSV with one row per bucket.",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write the report to FILE instead of standard output.",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Show each role's rates during every lifecycle command and its busiest window "
    "against its baseline, as ratios (table and CSV; JSON always has them in 'compare').",
)
@click.option(
    "--csv-table",
    type=click.Choice(list(TABLES)),
    default=None,
    help="CSV table to write: timeline (the default), command_lines, commands, compare "
    "(the same as --compare) or aligned (hosts on wall-clock time).",
)
@click.option(
    "--plot",
    "plot_path",
    metavar="FILE.png",
    help="Also draw CPU, forks and syscalls per role over time into FILE.png "
    "(needs matplotlib: pip install 'agent-tracer[plot]').",
)
def report_command(
    files: tuple[str, ...],
    output_format: str,
    output: str | None,
    compare: bool,
    csv_table: str | None,
    plot_path: str | None,
) -> None:
    """Summarize agent-tracer streams per host and role.

    Counts from several FILEs add up: streams of one host are summed into
    that host, and the roles of all hosts are summed into one total. The
    parts of a rotated stream are read as one stream. A truncated stream
    (the tracer was killed) is reported up to its last whole record, with
    a warning on standard error.

    \b
    Examples:
      agent-tracer report trace.msgpack
      agent-tracer report --compare trace.msgpack
      agent-tracer report --plot load.png trace.msgpack
      agent-tracer report --format json -o report.json web-1.msgpack web-2.msgpack
      agent-tracer report --format csv trace.msgpack > timeline.csv
      agent-tracer report --format csv --csv-table commands trace.msgpack
    """
    table = check_csv_table(output_format, compare, csv_table)
    if plot_path is not None:
        # Fail on a missing matplotlib before reading any stream.
        from tracer.report.plot import load_matplotlib

        run_or_exit(load_matplotlib)

    fold = run_or_exit(lambda: fold_streams(list(files), readings=plot_path is not None))
    report = report_dict(fold)
    for warning in report["warnings"]:
        click.echo(f"Warning: {warning}", err=True)

    if plot_path is not None:
        from tracer.report.plot import plot_report

        run_or_exit(lambda: plot_report(fold, report, plot_path))

    if output_format == "table":
        text = FORMATTERS["table"](report, compare=compare)
    elif output_format == "csv":
        text = FORMATTERS["csv"](report, table=table)
    else:
        text = FORMATTERS[output_format](report)

    if output is None or output == "-":
        click.echo(text, nl=False)
    else:
        write_output(output, text)


def check_csv_table(output_format: str, compare: bool, csv_table: str | None) -> str:
    """Return the CSV table to write, rejecting options that contradict each other."""
    if csv_table is not None and output_format != "csv":
        raise click.UsageError("--csv-table needs --format csv")
    if compare and csv_table not in (None, "compare"):
        raise click.UsageError(
            f"--compare writes the compare table, so it cannot go with --csv-table {csv_table}"
        )
    if compare:
        return "compare"
    return csv_table or "timeline"


def run_or_exit(action):
    """Run `action`, turning an expected failure (TracerError) into a one-line error."""
    try:
        return action()
    except TracerError as error:
        failure = click.ClickException(str(error))
        failure.exit_code = error.exit_code
        raise failure from None


def write_output(path: str, text: str) -> None:
    """Write the report to `path`, replacing a regular file but never following a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if os.path.islink(path):
            raise click.ClickException(
                f"cannot write the report to {path}: it is a symbolic link; choose another path"
            ) from None
        raise click.ClickException(f"cannot write the report to {path}: {error.strerror}") from None

    try:
        with open(fd, "w", encoding="utf-8", closefd=True) as output:
            output.write(text)
    except OSError as error:
        raise click.ClickException(
            f"writing the report to {path} failed: {error.strerror}"
        ) from None
