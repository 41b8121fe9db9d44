"""The agent's master process: start the workers, hold them at the gate, collect the truth.

The master titles itself, forks the three workers and waits until each has
set its own title. It then writes the ready file and waits for SIGUSR1, the
gate. At the gate it writes a start line with the clock origin to every
worker's control pipe. The scenario ends when every worker has exited. On
SIGTERM or SIGINT the master closes the control pipes, which stops the
workers early.

The master handles its signals synchronously with sigwaitinfo, with the
signals blocked from the start, so no signal is lost and no handler runs
between two steps. Workers and everything they start ignore SIGINT and
SIGTERM. A Ctrl-C in a terminal therefore stops the run through the master
only, and each child's actions stay countable.
"""

import dataclasses
import json
import logging
import os
import select
import shutil
import signal
import tempfile
import time
from typing import NoReturn, Optional

from .clock import EmulatedClock, read_line
from .titles import set_title
from .truth import ROLES, Ledger, build_truth, write_json_atomically
from .workers import WORKER_ROLES, Scenario, WorkerError, run_worker, worker_title

logger = logging.getLogger(__name__)

MASTER_SIGNALS = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# Seconds the master waits for the workers to set their titles.
READY_TIMEOUT = 30.0


class EmulatorError(Exception):
    """A failure that ends the emulator with exit status 1."""


@dataclasses.dataclass
class WorkerProcess:
    """The master's view of one worker."""

    role: str
    pid: int
    control: Optional[int]
    exit_status: Optional[int] = None


def master_title(pid: int) -> str:
    """Return the master's process title."""
    return f"opsworks-agent: master {pid}"


def block_master_signals() -> None:
    """Block the signals that the master waits for with sigwaitinfo.

    Call it first thing, so that a SIGUSR1 or SIGTERM sent early stays
    pending instead of killing the process. The default dispositions are
    restored too, because a signal that the launcher set to be ignored is
    discarded instead of queued, and an ignored SIGCHLD would reap the
    workers before the master could collect their exit status.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
    for signal_number in MASTER_SIGNALS:
        signal.signal(signal_number, signal.SIG_DFL)


class Master:
    """The master process and its three workers."""

    def __init__(self, scenario: Scenario, ready_file: Optional[str], gate: bool):
        self.scenario = scenario
        self.ready_file = ready_file
        self.gate = gate
        self.workers: dict[str, WorkerProcess] = {}
        self.clock: Optional[EmulatedClock] = None
        self.stopped_early = False

    def run(self) -> dict:
        """Run the whole scenario and return the ground truth."""
        set_title(master_title(self.scenario.master_pid))
        self.start_workers()
        agents = {"master": self.scenario.master_pid}
        agents.update({role: worker.pid for role, worker in self.workers.items()})
        if self.ready_file is not None:
            write_json_atomically(self.ready_file, agents)
        logger.info("agent ready: %s", agents)

        if self.wait_for_gate():
            self.clock = EmulatedClock.start_now(self.scenario.speed)
            self.send_start()
            logger.info(
                "gate passed: scenario of %.0f emulated seconds started", self.scenario.duration
            )
        else:
            self.stop_workers()
        self.wait_for_workers()

        ledgers = self.collect_ledgers()
        gate_ns = self.clock.origin_ns if self.clock is not None else None
        return build_truth(
            ledgers,
            agents=agents,
            speed=self.scenario.speed,
            duration=self.scenario.duration,
            gate_ns=gate_ns,
            end_ns=time.monotonic_ns(),
            stopped_early=self.stopped_early,
            seed=self.scenario.seed,
        )

    def start_workers(self) -> None:
        """Fork the workers and wait until each one has set its title."""
        ready_read, ready_write = os.pipe()
        for role in WORKER_ROLES:
            control_read, control_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                # The master's ends of the pipes must close in the worker, or
                # the worker would never see end of file on its control pipe.
                masters_ends = [ready_read, control_write]
                masters_ends.extend(worker.control for worker in self.workers.values())
                worker_main(role, self.scenario, control_read, ready_write, masters_ends)
            os.close(control_read)
            self.workers[role] = WorkerProcess(role=role, pid=pid, control=control_write)
        os.close(ready_write)

        try:
            waiting = set(WORKER_ROLES)
            deadline = time.monotonic() + READY_TIMEOUT
            while waiting:
                if not select.select([ready_read], [], [], max(deadline - time.monotonic(), 0))[0]:
                    raise EmulatorError(
                        f"timed out after {READY_TIMEOUT:.0f} s waiting for workers to start: "
                        f"{', '.join(sorted(waiting))}"
                    )
                line = read_line(ready_read)
                if not line:
                    raise EmulatorError(
                        f"workers exited before they were ready: {', '.join(sorted(waiting))}"
                    )
                waiting.discard(line)
        finally:
            os.close(ready_read)

    def wait_for_gate(self) -> bool:
        """Wait for SIGUSR1 and return True, or False for SIGTERM or SIGINT."""
        if not self.gate:
            return True
        logger.info(
            "waiting for SIGUSR1 to start the scenario: kill -USR1 %d", self.scenario.master_pid
        )
        while True:
            info = signal.sigwaitinfo(MASTER_SIGNALS)
            if info.si_signo == signal.SIGUSR1:
                return True
            if info.si_signo in STOP_SIGNALS:
                logger.info("stopped by %s before the gate", signal.Signals(info.si_signo).name)
                self.stopped_early = True
                return False
            self.reap_workers()
            exited = [
                worker.role for worker in self.workers.values() if worker.exit_status is not None
            ]
            if exited:
                raise EmulatorError(f"workers exited before the gate: {', '.join(exited)}")

    def send_start(self) -> None:
        """Write the start line with the clock origin to every worker."""
        assert self.clock is not None
        line = f"start {self.clock.origin_ns} {self.clock.origin_wall_ns}\n".encode()
        for worker in self.workers.values():
            assert worker.control is not None
            os.write(worker.control, line)

    def stop_workers(self) -> None:
        """Close the control pipes so that every worker stops."""
        for worker in self.workers.values():
            if worker.control is not None:
                os.close(worker.control)
                worker.control = None

    def reap_workers(self) -> None:
        """Collect the exit status of every worker that has exited."""
        for worker in self.workers.values():
            if worker.exit_status is not None:
                continue
            pid, status = os.waitpid(worker.pid, os.WNOHANG)
            if pid == worker.pid:
                worker.exit_status = os.waitstatus_to_exitcode(status)
                logger.info(
                    "%s worker %d exited with status %d", worker.role, pid, worker.exit_status
                )

    def wait_for_workers(self) -> None:
        """Wait until every worker has exited, stopping them on SIGTERM or SIGINT."""
        while True:
            self.reap_workers()
            if all(worker.exit_status is not None for worker in self.workers.values()):
                break
            info = signal.sigwaitinfo(MASTER_SIGNALS)
            if info.si_signo in STOP_SIGNALS and not self.stopped_early:
                name = signal.Signals(info.si_signo).name
                logger.info("stopped by %s: stopping the workers", name)
                self.stopped_early = True
                self.stop_workers()
        self.stop_workers()

    def collect_ledgers(self) -> dict[str, Ledger]:
        """Merge the workers' reports into one ledger per role, with the exits seen here."""
        ledgers = {role: Ledger(role) for role in ROLES}
        gated = self.clock is not None
        failed = []
        for worker in self.workers.values():
            report_path = os.path.join(self.scenario.report_dir, f"{worker.role}.json")
            if worker.exit_status != 0 or not os.path.exists(report_path):
                failed.append(f"{worker.role} (exit status {worker.exit_status})")
                continue
            with open(report_path) as report_file:
                ledgers[worker.role].merge(json.load(report_file))
            if gated:
                ledgers[worker.role].record_exit(None, worker.exit_status)
        if failed:
            raise EmulatorError(
                f"workers failed, so the ground truth is incomplete: {', '.join(failed)}. "
                "See the errors logged above"
            )

        # The master exits right after it writes the truth.
        if gated:
            ledgers["master"].record_exit(None, 0)
        return ledgers


def worker_main(
    role: str, scenario: Scenario, control: int, ready_write: int, masters_ends: list[int]
) -> NoReturn:
    """Run a worker in the forked child and exit. Never returns."""
    exit_status = 1
    try:
        for descriptor in masters_ends:
            os.close(descriptor)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        set_title(worker_title(role, scenario.master_pid))
        os.write(ready_write, f"{role}\n".encode())
        os.close(ready_write)

        start = read_line(control)
        if start:
            _, origin_ns, origin_wall_ns = start.split()
            clock = EmulatedClock(int(origin_ns), int(origin_wall_ns), scenario.speed)
            ledger = run_worker(role, scenario, control, clock)
        else:
            ledger = Ledger(role)
        write_json_atomically(os.path.join(scenario.report_dir, f"{role}.json"), ledger.to_json())
        exit_status = 0
    except (WorkerError, OSError) as error:
        logger.error("%s worker failed: %s", role, error)
    except Exception:
        logger.exception("%s worker failed", role)
    finally:
        logging.shutdown()
        os._exit(exit_status)


def run_emulator(
    scenario_options: dict,
    *,
    ready_file: Optional[str],
    truth_file: Optional[str],
    gate: bool,
) -> dict:
    """Run the emulated agent, write the ground truth and return it.

    ``scenario_options`` are the Scenario fields other than master_pid and
    report_dir. Without ``truth_file`` the caller prints the truth.
    """
    report_dir = tempfile.mkdtemp(prefix="opsworks-emulator-")
    try:
        scenario = Scenario(master_pid=os.getpid(), report_dir=report_dir, **scenario_options)
        master = Master(scenario, ready_file, gate)
        truth = master.run()
        if truth_file is not None:
            write_json_atomically(truth_file, truth)
        logger.info("scenario ended: %s", json.dumps(truth["roles"]))
        return truth
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
