"""Run the OpsWorks agent emulator: ``python -m tracer.emulator [options]``.

Usage::

    python -m tracer.emulator [--speed N] [--duration SECONDS]
        [--configure-at SECONDS | --no-configure] [--seed N]
        [--ready-file FILE] [--truth FILE] [--agent-log FILE]
        [--foreground] [--no-gate]

The emulator runs four real processes titled like the AWS OpsWorks Stacks
agent's, with the master's pid in every title::

    opsworks-agent: master PID
    opsworks-agent: keep_alive of master PID
    opsworks-agent: statistics of master PID
    opsworks-agent: process_command of master PID

Titles are written into the argv area as Ruby's ``$0=`` does, so
/proc/PID/cmdline is the title followed by NULs and /proc/PID/comm stays the
interpreter's name (``python3`` or ``python``). The master is the process
started by the command. It keeps its pid, but it may exec itself once at
start-up, with a padding argument, when its command line is too short for
the titles.

Protocol for a tracer:

1. Start the emulator with ``--ready-file FILE --truth FILE``.
2. Wait for the ready file. It appears, written atomically, once all four
   processes carry their titles: ``{"master": PID, "keep_alive": PID,
   "statistics": PID, "process_command": PID}``.
3. Attach, then send SIGUSR1 to the master. That is the gate: nothing
   forks, execs or starts threads between the ready file and the gate, and
   the ground truth covers only what happens after it.
4. Wait for the master to exit. It exits with status 0 after it has
   written the truth file. SIGTERM or SIGINT to the master ends the run
   early and cleanly, with the truth written as usual. The other processes
   ignore SIGTERM and SIGINT.

Scenario after the gate, in emulated seconds, which last 1/``--speed``
wall-clock seconds each: keep_alive forks 10 children every 30 s,
statistics one every 20 s, process_command polls every 30 s (one line in
the agent log, 1 to 3 children). At ``--configure-at``, process_command
decodes a ``configure`` command and forks and execs chef-solo (``python -m
tracer.emulator.chef``, retitled ``chef-solo -j ...`` and with comm
``chef-solo``). For 80 to 95 emulated seconds, chef-solo runs several hundred
short programs, directly, through PATH (with failed exec attempts) and
through dash scripts, and starts 4 threads. Polling goes on meanwhile. The
run ends after ``--duration`` emulated seconds, or when a Chef run still in
progress then has finished. The same seed gives the same counts, except
after an early stop, and except that a package manager probe runs only
where that package manager is not installed.

Ground truth (``--truth FILE``, written atomically, or standard output
without the option)::

    {"roles": {ROLE: {"process_forks": N, "thread_creations": N, "execs": N,
                      "failed_execs": N, "exits": N}, ...},
     "processes": [{"pid": PID or null, "role": ROLE, "parent": PID,
                    "argv": [...], "start_ns": NS or null, "execs": N,
                    "failed_execs": N, "thread_creations": N,
                    "exit_status": N or null, "title": TITLE or null}, ...],
     "commands": [{"id": UUID, "type": "configure", "start_ns": NS,
                   "end_ns": NS, "exit_code": N, "chef_pid": PID}, ...],
     "agents": {ROLE: PID, ...}, "speed": N, "duration": SECONDS,
     "seed": N, "clock": "CLOCK_MONOTONIC", "gate_ns": NS or null,
     "end_ns": NS, "stopped_early": BOOL}

ROLE is master, keep_alive, statistics or process_command. A process belongs
to the role of the worker it descends from. Counts include what the shells
started by chef-solo do. Each process of ``processes`` was created after the
gate. pid and start_ns are null for the processes that a shell forked,
because the emulator does not see their pids. ``exits`` counts processes
(thread groups), not threads: each process in the list, plus the worker
itself, plus the master for the master role. ``failed_execs`` counts
execve calls that returned an error. Times are CLOCK_MONOTONIC nanoseconds,
the clock of bpf_ktime_get_ns.

Agent log (``--agent-log FILE``): process_command appends lines in the real
agent's format, with emulated times: the wall-clock time at the gate plus
emulated seconds.

Exit status: 0 when the truth was written, 1 when the run failed (the
message says why), 2 for invalid options.
"""

import argparse
import json
import logging
import math
import os
import sys
from typing import Optional

from . import agent, commands
from .titles import TitleError, argv_area_size

PROG = "python -m tracer.emulator"

# Bytes of argv area that the longest title needs with its NUL, with a
# margin: "opsworks-agent: process_command of master 4194304" is 49 bytes.
TITLE_CAPACITY = 64

logger = logging.getLogger("tracer.emulator")


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser that reports a bad option in one line instead of the usage text."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=PROG,
        description="Emulate the AWS OpsWorks Stacks agent's processes, with exact ground truth.",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=20.0,
        help="Emulated seconds per wall-clock second (default: 20).",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=600.0,
        help="Length of the scenario after the gate, in emulated seconds (default: 600).",
    )
    parser.add_argument(
        "--configure-at",
        type=float,
        default=300.0,
        help="Emulated second at which a configure command starts a Chef run (default: 300).",
    )
    parser.add_argument(
        "--no-configure",
        action="store_true",
        help="Run no configure command.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of every random choice of the scenario (default: 0).",
    )
    parser.add_argument(
        "--ready-file",
        help="JSON file that receives the four pids once the titles are set.",
    )
    parser.add_argument(
        "--truth",
        help="JSON file that receives the ground truth (default: standard output).",
    )
    parser.add_argument(
        "--agent-log",
        help="File to which process_command appends its log lines (default: no log).",
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="Log progress to standard error. Without it, only warnings and errors are logged.",
    )
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="Start the scenario at once instead of waiting for SIGUSR1.",
    )
    # Grows the argv area so that the titles fit. Its value is never read.
    parser.add_argument("--title-padding", help=argparse.SUPPRESS)
    return parser


def validate(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    """Exit through parser.error when an option value cannot be used."""
    for option, value in (("--speed", arguments.speed), ("--duration", arguments.duration)):
        if not (math.isfinite(value) and value > 0):
            parser.error(f"invalid {option} {value:g}: expected a number greater than 0")

    if not arguments.no_configure:
        if not (math.isfinite(arguments.configure_at) and arguments.configure_at >= 0):
            parser.error(f"invalid --configure-at {arguments.configure_at:g}: expected 0 or more")
        if arguments.configure_at >= arguments.duration:
            parser.error(
                f"--configure-at {arguments.configure_at:g} is not before the end of the scenario "
                f"(--duration {arguments.duration:g}). Lower it or use --no-configure"
            )

    for option, path in (
        ("--ready-file", arguments.ready_file),
        ("--truth", arguments.truth),
        ("--agent-log", arguments.agent_log),
    ):
        if path is None:
            continue
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            parser.error(f"{option} {path}: directory {directory} not found")
        if not os.access(directory, os.W_OK):
            parser.error(f"{option} {path}: directory {directory} is not writable")
        if os.path.isdir(path):
            parser.error(f"{option} {path}: is a directory, expected a file path")


def ensure_title_capacity(arguments: argparse.Namespace) -> None:
    """Exec this program again with a padding argument if its argv area is too small.

    The pid stays the same. Returns only when the argv area is large enough
    or was already padded.
    """
    if arguments.title_padding is not None or argv_area_size() >= TITLE_CAPACITY:
        return
    original = getattr(sys, "orig_argv", None)
    if original:
        interpreter_arguments = original[1:]
    else:
        interpreter_arguments = ["-m", "tracer.emulator", *sys.argv[1:]]
    padding = f"--title-padding={'-' * TITLE_CAPACITY}"
    os.execv(sys.executable, [sys.executable, *interpreter_arguments, padding])


def main(argv: Optional[list[str]] = None) -> int:
    """Run the emulator from the command line and return its exit status."""
    agent.block_master_signals()
    parser = build_parser()
    arguments = parser.parse_args(argv)
    validate(parser, arguments)
    if argv is None:
        ensure_title_capacity(arguments)

    log_level = "INFO" if arguments.foreground else "WARNING"
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )

    try:
        commands.check_programs(commands.find_shell())
        truth = agent.run_emulator(
            {
                "speed": arguments.speed,
                "duration": arguments.duration,
                "seed": arguments.seed,
                "configure_at": None if arguments.no_configure else arguments.configure_at,
                "agent_log": arguments.agent_log,
                "log_level": log_level,
            },
            ready_file=arguments.ready_file,
            truth_file=arguments.truth,
            gate=not arguments.no_gate,
        )
    except (agent.EmulatorError, commands.MissingProgramError, TitleError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1

    if arguments.truth is None:
        json.dump(truth, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
