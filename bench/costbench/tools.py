"""The tracers under comparison: how each is started, when it is ready, what it counted.

Two kinds:
- attaching tools (agent-tracer, syscount, bpftrace) start after their
  target exists and are pointed at it by pid or by role rule;
- wrapping tools (strace -f, perf trace) start their target themselves, as
  an operator runs them, so that they follow every child it forks.
"""

import json
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import BenchError, ProcessSample, start_process, stop_process

log = logging.getLogger(__name__)

READY_TIMEOUT = 120
# Seconds a tool may take to print its summary after SIGINT.
STOP_TIMEOUT = 30
SYSCOUNT = "/usr/sbin/syscount-bpfcc"

# The role every benchmark role process belongs to, by its argv[0] title.
ROLE_NAME = "bench"
ROLE_TITLE = "agent-bench-role"
ROLE_RULE = f"{ROLE_NAME}=^{ROLE_TITLE}"


@dataclass
class Scope:
    """The target of a tool: role roots by pid, and how agent-tracer finds them."""

    pids: list
    preset_roles: bool = False  # agent-tracer: the default (opsworks) preset instead of ROLE_RULE
    system_wide: bool = False  # syscount: trace every process instead of -p PID


@dataclass
class ToolSession:
    """A running attaching tool."""

    process: object
    stdout: object
    stderr: object
    startup_seconds: float
    sample: ProcessSample
    output_path: Path = None
    exit_code: int = None


class Tool:
    """One way of tracing: `key` names it in the JSON, `label` in the table."""

    key = ""
    label = ""
    wraps = False
    packages = ()
    stop_timeout = STOP_TIMEOUT

    def available(self):
        """Return None when the tool can run here, else the reason why not."""

    def start(self, scope, out_dir):
        raise NotImplementedError

    def wrap(self, argv, summary_path):
        raise NotImplementedError

    def stop(self, session):
        """Stop an attaching tool; return its output text."""
        session.exit_code = stop_process(session.process, timeout=self.stop_timeout)
        session.stdout.join()
        session.stderr.join()
        if session.exit_code != 0:
            log.warning(
                "%s exited with %d: %s", self.label, session.exit_code, session.stderr.text()[-500:]
            )
        return session.stdout.text()

    def seen(self, output, item):
        """Return the count of `item` (getppid, execve or fork) in the tool's output, or None where it has none."""

    def _launch(self, argv, ready, what, env=None):
        started = time.monotonic()
        process, stdout, stderr = start_process(argv, env=env)
        try:
            ready(stdout, stderr)
        except BenchError as error:
            stop_process(process)
            raise BenchError(
                f"{what}: {error}; its stderr: {stderr.text()[-800:] or 'empty'}"
            ) from None
        startup = time.monotonic() - started
        sample = ProcessSample(process.pid)
        sample.read()
        return ToolSession(process, stdout, stderr, startup, sample)


class Untraced(Tool):
    key = "untraced"
    label = "untraced"


class AgentTracer(Tool):
    """`agent-tracer trace`, full or with --no-syscalls."""

    # It builds its report from the whole stream when it stops.
    stop_timeout = 300

    def __init__(self, command, no_syscalls=False, extra_args=()):
        self.command = command
        self.no_syscalls = no_syscalls
        self.extra_args = list(extra_args)
        self.key = "agent_tracer_no_syscalls" if no_syscalls else "agent_tracer"
        self.label = "agent-tracer --no-syscalls" if no_syscalls else "agent-tracer"

    def available(self):
        if not os.access(self.command[0], os.X_OK):
            return f"{self.command[0]} not found; install the project (scripts/setup.sh) or pass --tracer"
        return None

    def start(self, scope, out_dir):
        stream = out_dir / f"{self.key}-{time.monotonic_ns()}.msgpack"
        argv = [*self.command, "trace", "--format", "json", "-o", str(stream), "--force"]
        if not scope.preset_roles:
            argv += ["--role", ROLE_RULE]
        if self.no_syscalls:
            argv.append("--no-syscalls")
        argv += self.extra_args

        def ready(_stdout, stderr):
            stderr.wait_for(
                lambda line: line.startswith("Tracing "), READY_TIMEOUT, "agent-tracer start line"
            )

        session = self._launch(argv, ready, self.label)
        session.output_path = stream
        return session

    def report(self, output):
        """Parse the JSON report printed at exit; None when there is none."""
        try:
            return json.loads(output)
        except ValueError:
            return None

    def seen(self, output, item):
        report = self.report(output)
        if report is None:
            return None
        roles = report.get("roles", {}).values()
        if item == "execve":
            return sum(role.get("execs", 0) for role in roles)
        if item == "fork":
            return sum(role.get("process_forks", 0) for role in roles)
        if self.no_syscalls:
            return None
        return sum(role.get("syscalls", {}).get(item, 0) for role in roles)


class Syscount(Tool):
    """bcc's syscount: -p PID for one process, system-wide otherwise."""

    key = "syscount"
    label = "syscount-bpfcc"
    packages = ("bpfcc-tools",)

    def available(self):
        if not os.access(SYSCOUNT, os.X_OK):
            return f"{SYSCOUNT} not found (Debian package bpfcc-tools)"
        return None

    def start(self, scope, out_dir):
        # --top: list every syscall seen, so that the one checked is there.
        argv = [SYSCOUNT, "--top", "1000"]
        if not scope.system_wide:
            if len(scope.pids) != 1:
                raise BenchError("syscount -p takes one pid")
            argv += ["-p", str(scope.pids[0])]
        # syscount prints its start line with print(); unbuffered, it
        # reaches the pipe at once.
        env = dict(os.environ, PYTHONUNBUFFERED="1")

        def ready(stdout, _stderr):
            stdout.wait_for(
                lambda line: line.startswith("Tracing "), READY_TIMEOUT, "syscount start line"
            )

        return self._launch(argv, ready, self.label, env=env)

    def seen(self, output, item):
        if item == "fork":
            return None
        match = re.search(rf"^{item}\s+(\d+)\s*$", output, re.MULTILINE)
        return int(match.group(1)) if match else 0


class Bpftrace(Tool):
    """A bpftrace program that follows the role tree from its roots and counts syscalls by number."""

    key = "bpftrace"
    label = "bpftrace"
    packages = ("bpftrace",)
    # NOTE: bpftrace 0.17 here now and then ignores SIGINT after a demo run
    # (cause unknown); the SIGTERM that follows this timeout stops it, maps
    # printed.
    stop_timeout = 5

    def __init__(self, getppid_number):
        self.getppid_number = getppid_number

    def available(self):
        if not _on_path("bpftrace"):
            return "bpftrace not found (Debian package bpftrace)"
        return probe_command(["bpftrace", "-e", "BEGIN { exit(); }"], "bpftrace")

    @staticmethod
    def program(pids):
        """Return the bpftrace program: the role map seeded with pids, inherited at fork, cleared at exit.

        @role is keyed by thread id at fork and exit and read by process id
        (pid in bpftrace is the tgid) at sys_enter, as agent-tracer's map is.
        """
        seeds = " ".join(f"@role[{pid}] = 1;" for pid in pids)
        return (
            f'BEGIN {{ {seeds} printf("ready\\n"); }}\n'
            "tracepoint:sched:sched_process_fork /@role[args->parent_pid]/ "
            "{ @role[args->child_pid] = 1; @forks = count(); }\n"
            "tracepoint:sched:sched_process_exec /@role[pid]/ { @execs = count(); }\n"
            "tracepoint:sched:sched_process_exit /@role[tid]/ { delete(@role[tid]); @exits = count(); }\n"
            "tracepoint:raw_syscalls:sys_enter /@role[pid]/ { @syscalls[args->id] = count(); }\n"
            "END { clear(@role); }\n"
        )

    def start(self, scope, out_dir):
        argv = ["bpftrace", "-e", self.program(scope.pids)]

        def ready(stdout, _stderr):
            # BEGIN fires before the other probes are attached, but bpftrace
            # (0.17) prints its printf output from the poll loop that starts
            # after them, so the line means every probe is attached.
            stdout.wait_for(lambda line: line == "ready", READY_TIMEOUT, "bpftrace BEGIN line")

        return self._launch(argv, ready, self.label)

    def seen(self, output, item):
        if item == "execve":
            pattern = r"^@execs: (\d+)"
        elif item == "fork":
            pattern = r"^@forks: (\d+)"
        else:
            pattern = rf"^@syscalls\[{self.getppid_number}\]: (\d+)"
        match = re.search(pattern, output, re.MULTILINE)
        return int(match.group(1)) if match else 0


class Strace(Tool):
    """strace -f -c, started with its target."""

    key = "strace"
    label = "strace -f -c"
    wraps = True
    packages = ("strace",)

    def available(self):
        if not _on_path("strace"):
            return "strace not found (Debian package strace)"
        return probe_command(self.wrap(["/bin/true"], "/dev/null"), "strace")

    def wrap(self, argv, summary_path):
        return ["strace", "-f", "-c", "-o", str(summary_path), "--", *argv]

    def seen(self, output, item):
        if item == "fork":
            return None
        # Columns: % time, seconds, usecs/call, calls, [errors,] syscall
        match = re.search(
            rf"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?{item}\s*$", output, re.MULTILINE
        )
        return int(match.group(1)) if match else 0


class PerfTrace(Tool):
    """perf trace -s, started with its target (perf trace -p follows no children)."""

    key = "perf_trace"
    label = "perf trace -s"
    wraps = True
    packages = ("linux-perf",)

    def available(self):
        if not _on_path("perf"):
            return "perf not found (Debian package linux-perf)"
        return probe_command(self.wrap(["/bin/true"], "/dev/null"), "perf trace")

    def wrap(self, argv, summary_path):
        return ["perf", "trace", "-s", "-o", str(summary_path), "--", *argv]

    def seen(self, output, item):
        if item == "fork":
            return None
        # One table per thread: "   getppid   CALLS   ERRORS   ...".
        return sum(
            int(count) for count in re.findall(rf"^\s+{item}\s+(\d+)\s", output, re.MULTILINE)
        )


def probe_command(argv, label):
    """Run a trivial command under a tool; return None when it works, else why it does not."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{label} does not run here: {error}"
    if result.returncode != 0:
        return f"{label} does not run on this kernel ({' '.join(argv)} exited with {result.returncode}: {result.stderr.strip()[-300:]})"
    return None


def _on_path(name):
    return any(
        os.access(os.path.join(directory, name), os.X_OK)
        for directory in os.environ.get("PATH", "").split(":")
    )


def all_tools(tracer_command, getppid_number, tracer_args=()):
    """Return every tool of the comparison, untraced first, in the order of the report."""
    return [
        Untraced(),
        AgentTracer(tracer_command, extra_args=tracer_args),
        AgentTracer(tracer_command, no_syscalls=True, extra_args=tracer_args),
        Syscount(),
        Bpftrace(getppid_number),
        PerfTrace(),
        Strace(),
    ]
