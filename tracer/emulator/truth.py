"""Ground truth: what each role's processes did after the gate, counted where it happened.

Every process of the emulator that forks, execs or starts threads keeps a
Ledger for its role and records each action as it makes it. A worker hands
its ledger to the master as JSON when it ends, and chef-solo hands its ledger
to process_command, which merges it into its own.
"""

import dataclasses
import json
import os
import tempfile
from typing import Any, Optional

ROLES = ("master", "keep_alive", "statistics", "process_command")

COUNT_NAMES = ("process_forks", "thread_creations", "execs", "failed_execs", "exits")


@dataclasses.dataclass
class ProcessRecord:
    """One process created after the gate.

    pid and start_ns are None for processes that a shell started, because the
    emulator does not see their pids. argv is the argv of the process's
    successful exec, or the command line it inherited if it did not exec.
    start_ns is CLOCK_MONOTONIC, taken by the parent right after fork returned.
    """

    pid: Optional[int]
    role: str
    parent: int
    argv: list[str]
    start_ns: Optional[int]
    execs: int = 0
    failed_execs: int = 0
    thread_creations: int = 0
    exit_status: Optional[int] = None
    title: Optional[str] = None


class Ledger:
    """Counts and process records of one role, kept by one process."""

    def __init__(self, role: str):
        self.role = role
        self.counts = dict.fromkeys(COUNT_NAMES, 0)
        self.processes: list[ProcessRecord] = []
        self.commands: list[dict[str, Any]] = []

    def record_fork(
        self,
        pid: Optional[int],
        parent: int,
        argv: list[str],
        start_ns: Optional[int],
    ) -> ProcessRecord:
        """Count a new process and return its record for the actions that follow."""
        record = ProcessRecord(pid=pid, role=self.role, parent=parent, argv=argv, start_ns=start_ns)
        self.counts["process_forks"] += 1
        self.processes.append(record)
        return record

    def record_exec(self, record: ProcessRecord, argv: list[str]) -> None:
        """Count a successful exec by the process of ``record``."""
        self.counts["execs"] += 1
        record.execs += 1
        record.argv = argv

    def record_failed_execs(self, record: ProcessRecord, attempts: int) -> None:
        """Count exec attempts that failed in the process of ``record``."""
        self.counts["failed_execs"] += attempts
        record.failed_execs += attempts

    def record_thread_creations(self, record: Optional[ProcessRecord], threads: int) -> None:
        """Count threads started by the process of ``record``.

        ``record`` is None when the process is one of the four agent
        processes, which have no record because they started before the gate.
        """
        self.counts["thread_creations"] += threads
        if record is not None:
            record.thread_creations += threads

    def record_exit(self, record: Optional[ProcessRecord], exit_status: Optional[int]) -> None:
        """Count the exit of a process (a whole thread group, not a thread).

        ``record`` is None for one of the four agent processes.
        """
        self.counts["exits"] += 1
        if record is not None:
            record.exit_status = exit_status

    def merge(self, report: dict[str, Any]) -> None:
        """Add a ledger of the same role, as returned by to_json, to this one."""
        if report["role"] != self.role:
            raise ValueError(f"cannot merge a {report['role']} ledger into a {self.role} ledger")
        for name in COUNT_NAMES:
            self.counts[name] += report["counts"][name]
        self.processes.extend(ProcessRecord(**process) for process in report["processes"])
        self.commands.extend(report["commands"])

    def to_json(self) -> dict[str, Any]:
        """Return the ledger as JSON-ready data."""
        return {
            "role": self.role,
            "counts": dict(self.counts),
            "processes": [dataclasses.asdict(process) for process in self.processes],
            "commands": list(self.commands),
        }


def write_json_atomically(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename.

    A reader that polls for ``path`` finds either no file or the whole file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        # mkstemp creates the file with mode 0600. Give it the mode that
        # open() would, so that a tracer running as another user can read it.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(descriptor, 0o666 & ~umask)
        with os.fdopen(descriptor, "w") as output:
            json.dump(data, output, indent=1)
            output.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def build_truth(
    ledgers: dict[str, Ledger],
    *,
    agents: dict[str, int],
    speed: float,
    duration: float,
    gate_ns: Optional[int],
    end_ns: int,
    stopped_early: bool,
    seed: int,
) -> dict[str, Any]:
    """Assemble the ground truth document from one merged ledger per role."""
    processes = []
    commands = []
    for role in ROLES:
        processes.extend(dataclasses.asdict(record) for record in ledgers[role].processes)
        commands.extend(ledgers[role].commands)

    return {
        "roles": {role: dict(ledgers[role].counts) for role in ROLES},
        "processes": processes,
        "commands": commands,
        "agents": agents,
        "speed": speed,
        "duration": duration,
        "seed": seed,
        "clock": "CLOCK_MONOTONIC",
        "gate_ns": gate_ns,
        "end_ns": end_ns,
        "stopped_early": stopped_early,
    }
