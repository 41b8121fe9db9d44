"""Programs the emulated agent runs, with the processes each one starts by itself.

The emulator counts the forks and execs it makes, but a shell forks and execs
on its own. Each shell script here therefore states the children that the
shell starts. The statements hold for dash 0.5.12 (Debian 12's /bin/sh),
checked with ``strace -f``. dash forks once for every external command
(with vfork), once for every element of a pipeline (including one that runs
a builtin such as ``echo``), and never for a builtin outside a pipeline. It
finds a bare command name with stat(2), so it makes no failed exec attempt.
Every script ends with the ``exit`` builtin, so no external command is in
tail position, where a shell may exec without forking.

Only dash is trusted: find_shell rejects other shells rather than guess their
fork behaviour.
"""

import dataclasses
import logging
import os
import shlex
from typing import Optional

from . import spawn
from .truth import Ledger

logger = logging.getLogger(__name__)


class MissingProgramError(Exception):
    """A program that the emulated agent runs is not installed."""


@dataclasses.dataclass(frozen=True)
class ShellChild:
    """A process that a shell script forks.

    ``argv`` is what the child execs, or None for a subshell that runs a
    builtin and exits without exec.
    """

    argv: Optional[tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class Command:
    """A program to run and wait for.

    With ``search_path`` the program name is looked up in the agent's PATH by
    trying each directory in turn, so each miss is a failed exec attempt.
    ``children`` lists the processes that the program forks by itself.
    """

    argv: tuple[str, ...]
    search_path: bool = False
    children: tuple[ShellChild, ...] = ()


SUBSHELL = ShellChild(None)


def find_shell() -> str:
    """Return the path of a dash binary to run shell scripts with.

    Raises MissingProgramError when neither /bin/sh nor /bin/dash is dash.
    """
    if os.path.basename(os.path.realpath("/bin/sh")) == "dash":
        return "/bin/sh"
    if os.access("/bin/dash", os.X_OK):
        return "/bin/dash"
    raise MissingProgramError(
        "dash not found: the forks of the emulator's shell scripts are stated for dash only. "
        "Install the dash package"
    )


def shell_script(shell: str, script: str, *children: ShellChild) -> Command:
    """Return a Command that runs ``script`` with ``shell -c``."""
    return Command(argv=(shell, "-c", script), children=children)


def execs(*argv: str) -> ShellChild:
    """Return a ShellChild that execs ``argv``."""
    return ShellChild(tuple(argv))


def guard_scripts(shell: str, work_dir: str) -> list[Command]:
    """Return guard scripts (Chef's not_if and only_if), which use builtins only."""
    work = shlex.quote(work_dir)
    return [
        shell_script(shell, f"test -d {work} || exit 1; exit 0"),
        shell_script(shell, f"[ -w {work} ] && exit 0; exit 1"),
        shell_script(shell, f"test -e {work}/converged && exit 1; exit 0"),
    ]


def action_scripts(shell: str, work_dir: str) -> list[Command]:
    """Return scripts of Chef's execute and file resources, with the children they fork.

    They only read /proc and write inside ``work_dir``, so each one forks and
    execs the same way on every run.
    """
    work = shlex.quote(work_dir)
    return [
        shell_script(
            shell,
            f"/bin/cat /proc/loadavg > {work}/loadavg; exit 0",
            execs("/bin/cat", "/proc/loadavg"),
        ),
        shell_script(
            shell,
            f"/bin/cat /proc/meminfo | /bin/grep -c MemTotal > {work}/memtotal; exit 0",
            execs("/bin/cat", "/proc/meminfo"),
            execs("/bin/grep", "-c", "MemTotal"),
        ),
        shell_script(
            shell,
            f"echo configured | /bin/sed -e s/configured/converged/ > {work}/state; exit 0",
            SUBSHELL,
            execs("/bin/sed", "-e", "s/configured/converged/"),
        ),
        shell_script(
            shell,
            f"/bin/mkdir -p {work}/conf.d; /bin/touch {work}/conf.d/app.conf; exit 0",
            execs("/bin/mkdir", "-p", f"{work_dir}/conf.d"),
            execs("/bin/touch", f"{work_dir}/conf.d/app.conf"),
        ),
        shell_script(
            shell,
            f"/bin/ls -l {work} > /dev/null; /usr/bin/stat {work} > /dev/null; exit 0",
            execs("/bin/ls", "-l", work_dir),
            execs("/usr/bin/stat", work_dir),
        ),
        shell_script(
            shell,
            f"/bin/uname -r > {work}/kernel; /bin/cp {work}/kernel {work}/kernel.bak; exit 0",
            execs("/bin/uname", "-r"),
            execs("/bin/cp", f"{work_dir}/kernel", f"{work_dir}/kernel.bak"),
        ),
        shell_script(
            shell,
            f"/usr/bin/sha256sum /proc/version > {work}/checksum; exit 0",
            execs("/usr/bin/sha256sum", "/proc/version"),
        ),
        shell_script(
            shell,
            f"/bin/touch {work}/state; /bin/chmod 0644 {work}/state; exit 0",
            execs("/bin/touch", f"{work_dir}/state"),
            execs("/bin/chmod", "0644", f"{work_dir}/state"),
        ),
    ]


# Programs run without a shell.
DIRECT_COMMANDS = (
    Command(("/bin/true",)),
    Command(("/bin/cat", "/proc/self/stat")),
    Command(("/bin/cat", "/proc/self/status")),
)

# Commands that Ohai, Chef's system profiler, runs to describe the system,
# found through PATH. None of these programs forks or starts threads.
OHAI_COMMANDS = (
    Command(("uname", "-s"), search_path=True),
    Command(("uname", "-r"), search_path=True),
    Command(("uname", "-v"), search_path=True),
    Command(("uname", "-m"), search_path=True),
    Command(("hostname",), search_path=True),
    Command(("nproc",), search_path=True),
    Command(("cat", "/proc/cpuinfo"), search_path=True),
    Command(("cat", "/proc/meminfo"), search_path=True),
    Command(("cat", "/proc/version"), search_path=True),
    Command(("cat", "/proc/mounts"), search_path=True),
    Command(("ls", "/sys/class/net"), search_path=True),
    Command(("date", "+%z"), search_path=True),
)

# Ohai's probes for other distributions' package managers. Only those not
# installed are run (see missing_probes), so every PATH entry fails and the
# child exits with status 127 without exec.
PACKAGE_MANAGER_PROBES = (
    Command(("rpm", "--version"), search_path=True),
    Command(("yum", "--version"), search_path=True),
    Command(("zypper", "--version"), search_path=True),
    Command(("pacman", "--version"), search_path=True),
    Command(("apk", "--version"), search_path=True),
)


def is_found(program: str) -> bool:
    """Return True when ``program`` is an executable file in the agent's PATH."""
    return any(
        os.path.isfile(path) and os.access(path, os.X_OK)
        for path in spawn.exec_candidates(program, search_path=True)
    )


def missing_probes() -> list[Command]:
    """Return the package manager probes whose program is not installed here."""
    return [probe for probe in PACKAGE_MANAGER_PROBES if not is_found(probe.argv[0])]


def check_programs(shell: str) -> None:
    """Raise MissingProgramError unless every program with a fixed path is executable.

    A missing program inside a shell script would make the shell's own
    forks and exec attempts differ from what the script states. Programs
    found through PATH need no check, because the child counts its own
    failed attempts.
    """
    commands = [*guard_scripts(shell, "/"), *action_scripts(shell, "/"), *DIRECT_COMMANDS]
    paths = {command.argv[0] for command in commands}
    for command in commands:
        paths.update(child.argv[0] for child in command.children if child.argv)

    missing = sorted(
        path for path in paths if not (os.path.isfile(path) and os.access(path, os.X_OK))
    )
    if missing:
        raise MissingProgramError(
            f"programs not found or not executable: {', '.join(missing)}. "
            "Install coreutils, grep, sed and dash"
        )


def run_command(ledger: Ledger, command: Command, *, parent_argv: list[str]) -> int:
    """Run ``command`` to its end, record it and the children it states, and return its status."""
    record = spawn.start_program(
        ledger, command.argv, parent_argv=parent_argv, search_path=command.search_path
    )
    exit_status = spawn.wait_program(ledger, record)

    if record.execs and command.children:
        if exit_status != 0:
            logger.warning(
                "shell script %r exited with status %d, so its stated children may not "
                "match what it did",
                command.argv[-1],
                exit_status,
            )
        for child in command.children:
            child_record = ledger.record_fork(None, record.pid, list(command.argv), None)
            if child.argv is not None:
                ledger.record_exec(child_record, list(child.argv))
            ledger.record_exit(child_record, None)
    return exit_status
