"""Fork, exec and reap child processes, recording each step in a Ledger.

Python's subprocess module cannot report how many exec attempts failed during
a PATH search, so children are started with os.fork and os.execve here. Each
child reports every failed attempt to its parent through a close-on-exec
pipe. The parent reads that pipe to end of file, which comes when the child
execs or exits. On Linux none of this starts a thread.
"""

import os
import signal
import time
from typing import Callable, Optional, Sequence

from .truth import Ledger, ProcessRecord

# The PATH of the real agent's children: Debian's default for root.
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Exit status of a child whose every exec attempt failed, as in a shell.
EXIT_NOT_EXECUTED = 127

# One byte per failed exec attempt on the status pipe.
FAILED_ATTEMPT = b"F"


def child_environment(**extra: str) -> dict[str, str]:
    """Return the fixed environment of every program the emulator execs.

    The caller's environment is not passed on, so that the PATH search and
    the behaviour of the programs do not depend on who started the emulator.
    """
    environment = {"PATH": AGENT_PATH, "LANG": "C"}
    environment.update(extra)
    return environment


def exec_candidates(program: str, search_path: bool) -> list[str]:
    """Return the paths that the child tries to exec, in order.

    With ``search_path`` a bare program name is tried in every directory of
    AGENT_PATH, as execvp(3) does, and each miss is a failed exec attempt.
    """
    if not search_path or "/" in program:
        return [program]
    return [os.path.join(directory, program) for directory in AGENT_PATH.split(":")]


def start_program(
    ledger: Ledger,
    argv: Sequence[str],
    *,
    parent_argv: list[str],
    search_path: bool = False,
    environment: Optional[dict[str, str]] = None,
    pass_fds: Sequence[int] = (),
    keep_stderr: bool = False,
) -> ProcessRecord:
    """Fork a child that execs ``argv``, and return its record once the exec is done or failed.

    ``parent_argv`` is the command line that the child inherits, recorded if
    no exec succeeds. The child's stdin and stdout, and its stderr unless
    ``keep_stderr``, are /dev/null. Descriptors in ``pass_fds`` stay open
    across the exec. The caller must reap the child with wait_program.
    """
    candidates = exec_candidates(argv[0], search_path)
    if environment is None:
        environment = child_environment()
    status_read, status_write = os.pipe()

    pid = os.fork()
    if pid == 0:
        _exec_in_child(candidates, list(argv), environment, status_write, pass_fds, keep_stderr)
    start_ns = time.monotonic_ns()
    os.close(status_write)
    record = ledger.record_fork(pid, os.getpid(), parent_argv, start_ns)

    reports = bytearray()
    try:
        while chunk := os.read(status_read, 64):
            reports += chunk
    finally:
        os.close(status_read)

    # NOTE: a child killed by a signal between two attempts would be counted
    # as having exec'd. Children ignore SIGINT and SIGTERM, so only a signal
    # aimed at that one child could do it.
    failed = len(reports)
    ledger.record_failed_execs(record, failed)
    if failed < len(candidates):
        ledger.record_exec(record, list(argv))
    return record


def _exec_in_child(
    candidates: list[str],
    argv: list[str],
    environment: dict[str, str],
    status_write: int,
    pass_fds: Sequence[int],
    keep_stderr: bool,
) -> None:
    """Exec the first candidate that works, in the forked child. Never returns."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        if not keep_stderr:
            os.dup2(null, 2)
        for descriptor in pass_fds:
            os.set_inheritable(descriptor, True)

        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored
        # across exec. SIGINT and SIGTERM stay ignored on purpose: only the
        # master reacts to them.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

        for path in candidates:
            try:
                os.execve(path, argv, environment)
            except OSError:
                os.write(status_write, FAILED_ATTEMPT)
    finally:
        os._exit(EXIT_NOT_EXECUTED)


def wait_program(ledger: Ledger, record: ProcessRecord) -> int:
    """Reap the child of ``record``, count its exit and return its exit status.

    The status is negative for a child killed by a signal, as in subprocess.
    """
    _, status = os.waitpid(record.pid, 0)
    exit_status = os.waitstatus_to_exitcode(status)
    ledger.record_exit(record, exit_status)
    return exit_status


def run_function(
    ledger: Ledger, function: Callable[[], None], *, parent_argv: list[str]
) -> ProcessRecord:
    """Fork a child that calls ``function`` and exits without exec, then reap it.

    The child exits with status 0, or 1 if ``function`` raised.
    """
    pid = os.fork()
    if pid == 0:
        exit_status = 1
        try:
            function()
            exit_status = 0
        finally:
            os._exit(exit_status)
    start_ns = time.monotonic_ns()
    record = ledger.record_fork(pid, os.getpid(), parent_argv, start_ns)
    wait_program(ledger, record)
    return record
