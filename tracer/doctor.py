"""`agent-tracer doctor`: check everything tracing needs and print what is ready."""

import logging
import os
import platform
from dataclasses import dataclass

import click

from . import environment, exit_codes, probes
from .errors import TracerError

log = logging.getLogger(__name__)


@dataclass
class Check:
    """The outcome of one check: status is "ok", "warn" or "fail"."""

    name: str
    status: str
    detail: str
    exit_code: int = exit_codes.UNAVAILABLE


def check_call(name, action, ok_detail):
    """Run action(); a TracerError becomes a failed check with its message and exit code."""
    try:
        result = action()
    except TracerError as error:
        return Check(name, "fail", str(error), error.exit_code), None
    return Check(name, "ok", ok_detail(result) if callable(ok_detail) else ok_detail), result


def run_checks(load_program=True):
    """Run every check in order; return the list of Checks."""
    checks = []

    check, _ = check_call("root", environment.require_root, "effective uid 0")
    checks.append(check)
    check, _ = check_call("capabilities", environment.require_bpf_capabilities, "CAP_SYS_ADMIN or CAP_BPF+CAP_PERFMON")
    checks.append(check)
    check, bcc = check_call("bcc", environment.import_bcc, lambda module: f"{module.__file__}")
    checks.append(check)
    check, tracefs = check_call("tracefs", environment.tracefs_root, lambda path: f"mounted at {path}")
    checks.append(check)

    check, warning = check_call("kernel headers", environment.prepare_kernel_headers, lambda w: "")
    if check.status == "ok":
        if warning:
            check = Check("kernel headers", "warn", warning)
        else:
            source = os.environ.get("BCC_KERNEL_SOURCE") or environment.running_kernel_headers() or "kheaders"
            check = Check("kernel headers", "ok", f"for {platform.release()}: {source}")
    checks.append(check)

    if tracefs is None:
        return checks

    for group, event in probes.REQUIRED + (probes.SYS_ENTER,):
        present = probes.tracepoint_exists(tracefs, group, event)
        checks.append(Check(f"{group}:{event}", "ok" if present else "fail", "present" if present else "missing: needs CONFIG_TRACEPOINTS"))

    execs = all(probes.tracepoint_exists(tracefs, *tp) for tp in probes.EXEC_ATTEMPTS)
    checks.append(
        Check(
            "syscalls:sys_*_execve(at)",
            "ok" if execs else "warn",
            "present: failed exec attempts are counted" if execs else "missing (CONFIG_FTRACE_SYSCALLS off): failed exec attempts are not counted",
        )
    )

    if all(check.status != "fail" for check in checks) and bcc is not None:
        features = probes.probe_kernel(tracefs, bcc.BPF)
        checks.append(Check("exit layout", "ok", "group_dead field" if features.exit_group_dead else "no group_dead: threads are counted per process"))
        checks.append(Check("event buffer", "ok" if features.ring_buffer else "warn", "BPF ring buffer" if features.ring_buffer else "perf buffer (kernel before 5.8)"))
        checks.append(Check("syscall hook", "ok", "raw tracepoint" if features.raw_tracepoint else "regular tracepoint (kernel before 4.17)"))
        checks.append(Check("pid_max", "ok", f"{open('/proc/sys/kernel/pid_max').read().strip()} (one role slot per pid)"))
        if load_program:
            checks.append(dry_run(bcc, features))
    return checks


def dry_run(bcc, features):
    """Compile, load, attach and detach the program."""
    from .program import ProgramOptions, TracerProgram

    try:
        program = TracerProgram(bcc, ProgramOptions(), features)
    except TracerError as error:
        return Check("compile, load, attach", "fail", str(error), error.exit_code)
    program.close()
    return Check("compile, load, attach", "ok", f"{program.load_seconds:.2f} s")


MARKS = {"ok": "ready", "warn": "warning", "fail": "MISSING"}


def format_checks(checks):
    """Return the checks as lines that fit 80 columns."""
    lines = []
    for check in checks:
        lines.append(f"{check.name:<28} {MARKS[check.status]:<8} {check.detail}".rstrip())
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--no-load", is_flag=True, help="Skip compiling and loading the BPF program.")
def doctor(no_load):
    """Check everything tracing needs and print what is ready.

    Exits 0 when tracing can start, else with the exit code of the first
    missing piece (77 for privileges, 69 for the rest).
    """
    checks = run_checks(load_program=not no_load)
    click.echo(format_checks(checks), nl=False)
    failed = [check for check in checks if check.status == "fail"]
    if failed:
        raise SystemExit(failed[0].exit_code)
