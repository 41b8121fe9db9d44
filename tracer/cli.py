"""The agent-tracer command line: a click group of small subcommands."""

import logging
import sys

import click

from . import __version__
from .errors import TracerError
from .program import DEFAULT_MAX_ROLES, DEFAULT_RINGBUF_PAGES, ProgramOptions
from .roles import load_preset, preset_names

log = logging.getLogger("tracer")


class TracerGroup(click.Group):
    """A click group that prints expected errors as one line with their exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TracerError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)


def setup_logging(verbose):
    """Send logs to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="agent-tracer: %(levelname)s: %(message)s", stream=sys.stderr)


@click.group(cls=TracerGroup)
@click.version_option(__version__, prog_name="agent-tracer")
@click.option("-v", "--verbose", count=True, help="Log more: -v for progress, -vv for debugging.")
def main(verbose):
    """Trace an agent's process tree per role with eBPF.

    Every process and thread is attributed to the role of the agent process
    it descends from; forks, execs, exits, syscalls and CPU time are counted
    per role.
    """
    setup_logging(verbose)


def program_options(no_syscalls, max_roles, ringbuf_pages):
    """Collect the options that shape the BPF program."""
    return ProgramOptions(count_syscalls=not no_syscalls, max_roles=max_roles + 1, ringbuf_pages=ringbuf_pages)


def program_option_flags(command):
    """Add the options shared by commands that load the BPF program."""
    command = click.option(
        "--no-syscalls",
        is_flag=True,
        help="Attach no syscall tracepoint: count forks, execs and exits only, at no cost to syscalls.",
    )(command)
    command = click.option(
        "--max-roles",
        type=click.IntRange(1, 1023),
        default=DEFAULT_MAX_ROLES - 1,
        show_default=True,
        help="Maximum number of distinct roles.",
    )(command)
    command = click.option(
        "--ringbuf-pages",
        type=click.IntRange(1),
        default=DEFAULT_RINGBUF_PAGES,
        show_default=True,
        help="Ring buffer size in pages (a power of two).",
    )(command)
    return command


def validate_ringbuf_pages(value):
    """Reject a ring buffer size that is not a power of two."""
    if value & (value - 1):
        raise click.BadParameter(f"{value} is not a power of two", param_hint="--ringbuf-pages")


@main.command()
@program_option_flags
@click.option("--print-program", is_flag=True, help="Print the BPF program as compiled, then exit.")
def check(no_syscalls, max_roles, ringbuf_pages, print_program):
    """Compile, load and attach the BPF program, then detach and exit (needs root).

    A dry run: nothing is traced and no file is written.
    """
    from .probes import probe_kernel
    from .program import TracerProgram, program_text
    from .session import prepare_environment

    validate_ringbuf_pages(ringbuf_pages)
    options = program_options(no_syscalls, max_roles, ringbuf_pages)
    bcc, tracefs, warnings = prepare_environment()
    features = probe_kernel(tracefs, bcc.BPF, count_syscalls=options.count_syscalls)
    for warning in warnings + features.warnings:
        log.warning("%s", warning)

    if print_program:
        click.echo(program_text(options, features))
        return

    program = TracerProgram(bcc, options, features)
    program.close()
    flags = " ".join(features.cflags()) or "none"
    click.echo(f"ok: BPF program compiled, loaded and attached in {program.load_seconds:.2f} s (compat flags: {flags})")


@main.command()
def presets():
    """List the bundled presets and their role rules."""
    for name in preset_names():
        click.echo(f"{name}:")
        for rule in load_preset(name).rules:
            click.echo(f"  {rule.name:<18} {rule.describe()}")


def render_report(paths, report_format):
    """Build the report of streams and return it formatted as table, json or csv."""
    from .report import build_report
    from .report.command import FORMATTERS

    report = build_report(paths)
    for warning in report["warnings"]:
        log.warning("%s", warning)
    return FORMATTERS[report_format](report)


def register_optional_commands():
    """Add the commands that live in their own modules."""
    from .demo import demo
    from .doctor import doctor
    from .report.command import report_command
    from .trace_command import trace

    main.add_command(trace, "trace")
    main.add_command(report_command, "report")
    main.add_command(demo, "demo")
    main.add_command(doctor, "doctor")

    from .service import install_service

    main.add_command(install_service, "install-service")


register_optional_commands()
