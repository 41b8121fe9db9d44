"""`agent-tracer trace`: the command that traces, with its options."""

import os
import sys
import tempfile

import click

from .agentlog import DEFAULT_AGENT_LOGS
from .cli import program_option_flags, program_options, render_report, validate_ringbuf_pages
from .output import parse_size
from .redact import Redactor
from .roles import RoleSet, compile_rule, load_preset


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


@click.command()
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
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file with role rules and trace options; options given here win over it.")
@click.option("--pid", "pid_specs", multiple=True, metavar="[NAME=]PID", help="Make running process PID and its descendants a role, named NAME or pid-PID (repeatable).")
@click.option("--comm", "comm_specs", multiple=True, metavar="[NAME=]COMM", help="Make processes whose comm (/proc/PID/comm) is exactly COMM roots of a role, named NAME or COMM (repeatable).")
@click.option("--metrics-address", metavar="[HOST:]PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 127.0.0.1); needs agent-tracer[metrics].")
@program_option_flags
@click.pass_context
def trace(ctx, preset, role_specs, agent_log, no_redact, redact_patterns, show_other, max_cpu, rescan_interval, duration, interval, output, force, rotate_size, rotate_interval, report_format, config_path, pid_specs, comm_specs, metrics_address, no_syscalls, max_roles, ringbuf_pages):
    """Trace the roles' process trees and print a report on exit (needs root).

    \b
    Examples:
      agent-tracer trace                       # OpsWorks roles, until Ctrl-C
      agent-tracer trace --duration 600 -o configure.msgpack
      agent-tracer trace --no-syscalls --interval 10
      agent-tracer trace --role 'chef=^/opt/chef/embedded/bin/ruby .*chef-client'
    """
    from .live import LiveSummary
    from .rules_config import (
        choose_role_set,
        comm_rule_from_spec,
        load_config,
        merge_trace_options,
        pid_rule_from_spec,
    )
    from .session import TraceOptions, TraceSession

    config = load_config(config_path) if config_path else None
    params = merge_trace_options(ctx, ctx.params, config)
    (interval, duration, rescan_interval, output, force, report_format, no_syscalls, max_roles, ringbuf_pages,
     rotate_size, rotate_interval, metrics_address) = (
        params[name] for name in ("interval", "duration", "rescan_interval", "output", "force", "report_format",
                                  "no_syscalls", "max_roles", "ringbuf_pages", "rotate_size", "rotate_interval",
                                  "metrics_address"))

    validate_ringbuf_pages(ringbuf_pages)
    command_line_rules = list(rules_from_options(preset, role_specs).rules) if role_specs else []
    command_line_rules += [comm_rule_from_spec(spec) for spec in comm_specs]
    command_line_rules += [pid_rule_from_spec(spec) for spec in pid_specs]
    preset_given = ctx.get_parameter_source("preset") == click.core.ParameterSource.COMMANDLINE
    rules = choose_role_set(command_line_rules, preset, preset_given, config)
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

    exporter = None
    if metrics_address:
        from .metrics import MetricsExporter

        # Created before tracing starts, so that a bad address or a port in use stops the run at once.
        exporter = MetricsExporter(metrics_address)

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
        observers=[live.observe] + ([exporter.observe] if exporter else []),
    )
    session = TraceSession(options)
    try:
        trailer = session.run()
        click.echo(render_report(session.output.paths, report_format), nl=False)
    finally:
        if exporter:
            exporter.close()
        if temporary:
            os.unlink(temporary)
    if trailer.get("reason") == "error":
        sys.exit(1)
