"""The agent-tracer command line: a click group of small subcommands."""

import logging
import os
import sys
import tempfile

import click

from . import __version__
from .agentlog import DEFAULT_AGENT_LOGS
from .errors import TracerError
from .output import parse_size
from .redact import Redactor
from .program import DEFAULT_MAX_ROLES, DEFAULT_RINGBUF_PAGES, ProgramOptions
from .roles import RoleSet, compile_rule, load_preset, preset_names

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


def make_redactor(no_redact, patterns):
    """Build the Redactor that --no-redact and --redact describe."""
    try:
        return Redactor(enabled=not no_redact, extra_patterns=patterns)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--redact") from error


def rules_from_options(preset, role_specs):
    """Return the RoleSet that --role options (or else the preset) describe."""
    if not role_specs:
        return load_preset(preset)
    rules = []
    for spec in role_specs:
        name, separator, pattern = spec.partition("=")
        if not separator or not name or not pattern:
            raise click.BadParameter(f"'{spec}' is not NAME=REGEX", param_hint="--role")
        rules.append(compile_rule(name, pattern))
    return RoleSet(rules=tuple(rules))


@main.command()
@click.option("--preset", default="opsworks", show_default=True, help="Named set of role rules.")
@click.option(
    "--role",
    "role_specs",
    multiple=True,
    metavar="NAME=REGEX",
    help="Role rule on the full command line (repeatable; replaces the preset). "
    "A named group 'role' in REGEX names the role.",
)
@click.option(
    "--agent-log",
    type=click.Path(dir_okay=False),
    help="Agent command log to mark lifecycle commands from (default for the opsworks preset: "
    "/var/log/aws/opsworks/opsworks-agent.process_command.log, when it exists).",
)
@click.option("--no-redact", is_flag=True, help="Keep secret-looking values in exec arguments (they are redacted by default).")
@click.option("--redact", "redact_patterns", multiple=True, metavar="REGEX", help="Also redact text matching REGEX in arguments and command lines (repeatable).")
@click.option("--show-other", is_flag=True, help="Count every task outside the roles as role '(other)', so that totals add up to the machine's.")
@click.option("--max-cpu", type=click.FloatRange(min=0), default=5.0, show_default=True, metavar="PERCENT", help="CPU budget of the tracer, in percent of one core (BPF run time included); over it, argument capture stops and buckets lengthen. 0 turns the budget off.")
@click.option("--rescan-interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Seconds between scans of /proc for new role roots.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Seconds to trace; until Ctrl-C when absent.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Bucket length in seconds.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the msgpack stream to this file.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--rotate-size", metavar="SIZE", help="Start a new numbered output file (FILE.0001.msgpack, ...) when the current one reaches SIZE (e.g. 100M).")
@click.option("--rotate-interval", type=click.FloatRange(min=1), metavar="SECONDS", help="Start a new numbered output file every SECONDS.")
@click.option("--format", "report_format", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True, help="Format of the report printed on exit.")
@program_option_flags
def trace(preset, role_specs, agent_log, no_redact, redact_patterns, show_other, max_cpu, rescan_interval, duration, interval, output, force, rotate_size, rotate_interval, report_format, no_syscalls, max_roles, ringbuf_pages):
    """Trace the roles' process trees and print a report on exit (needs root).

    \b
    Examples:
      agent-tracer trace                       # OpsWorks roles, until Ctrl-C
      agent-tracer trace --duration 600 -o configure.msgpack
      agent-tracer trace --no-syscalls --interval 10
      agent-tracer trace --role 'chef=^/opt/chef/embedded/bin/ruby .*chef-client'
    """
    from .live import LiveSummary
    from .session import TraceOptions, TraceSession

    validate_ringbuf_pages(ringbuf_pages)
    rules = rules_from_options(preset, role_specs)
    if agent_log is None and rules.preset in DEFAULT_AGENT_LOGS and os.path.exists(DEFAULT_AGENT_LOGS[rules.preset]):
        agent_log = DEFAULT_AGENT_LOGS[rules.preset]
    if (rotate_size or rotate_interval) and output is None:
        raise click.UsageError("--rotate-size and --rotate-interval need -o FILE")
    try:
        rotate_bytes = parse_size(rotate_size) if rotate_size else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--rotate-size") from None
    temporary = None
    if output is None:
        handle, temporary = tempfile.mkstemp(prefix="agent-tracer-", suffix=".msgpack")
        os.close(handle)
        output, force = temporary, True

    live = LiveSummary(sys.stderr)
    options = TraceOptions(
        rules=rules,
        output=output,
        duration=duration,
        interval=interval,
        force=force,
        rescan_seconds=rescan_interval,
        agent_log=agent_log,
        rotate_size=rotate_bytes,
        max_cpu=max_cpu,
        show_other=show_other,
        rotate_seconds=rotate_interval,
        redactor=make_redactor(no_redact, redact_patterns),
        program=program_options(no_syscalls, max_roles, ringbuf_pages),
        on_ready=lambda table: live.started(rules, output if not temporary else None, duration),
        observers=[live.observe],
    )
    session = TraceSession(options)
    try:
        trailer = session.run()
        click.echo(render_report(session.output.paths, report_format), nl=False)
    finally:
        if temporary:
            os.unlink(temporary)
    if trailer.get("reason") == "error":
        sys.exit(1)


@main.command()
@program_option_flags
@click.option("--print-program", is_flag=True, help="Print the BPF program as compiled, then exit.")
def check(no_syscalls, max_roles, ringbuf_pages, print_program):
    """Compile, load and attach the BPF program, then detach and exit (needs root).

    A dry run: nothing is traced and no file is written.
    """
    from .program import TracerProgram, program_text
    from .probes import probe_kernel
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
    from .report.command import report_command

    from .demo import demo
    from .doctor import doctor

    main.add_command(report_command, "report")
    main.add_command(demo, "demo")
    main.add_command(doctor, "doctor")


register_optional_commands()
