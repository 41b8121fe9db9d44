"""The `agent-tracer report` command."""

from __future__ import annotations

import os

import click

from tracer.errors import TracerError
from tracer.report.aggregate import build_report
from tracer.report.render import FORMATTERS


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
def report_command(files: tuple[str, ...], output_format: str, output: str | None) -> None:
    """Summarize agent-tracer streams per host and role.

    Counts from several FILEs add up: streams of one host are summed into
    that host, and the roles of all hosts are summed into one total. A
    truncated stream (the tracer was killed) is reported up to its last
    whole record, with a warning on standard error.

    \b
    Examples:
      agent-tracer report trace.msgpack
      agent-tracer report --format json -o report.json web-1.msgpack web-2.msgpack
      agent-tracer report --format csv trace.msgpack > timeline.csv
    """
    try:
        report = build_report(list(files))
    except TracerError as error:
        failure = click.ClickException(str(error))
        failure.exit_code = error.exit_code
        raise failure from None

    for warning in report["warnings"]:
        click.echo(f"Warning: {warning}", err=True)

    text = FORMATTERS[output_format](report)
    if output is None or output == "-":
        click.echo(text, nl=False)
    else:
        write_output(output, text)


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
        raise click.ClickException(
            f"cannot write the report to {path}: {error.strerror}"
        ) from None

    try:
        with open(fd, "w", encoding="utf-8", closefd=True) as output:
            output.write(text)
    except OSError as error:
        raise click.ClickException(
            f"writing the report to {path} failed: {error.strerror}"
        ) from None
