"""The three workers of the agent and what each one does after the gate.

Observed on an OpsWorks stack: keep_alive forks 10 times every 30 s,
statistics 3 times a minute, and process_command polls every 30 s, forks
about 4 times a minute and runs Chef for lifecycle commands such as
``configure``. Each worker follows a schedule in emulated seconds since the
gate, drawn from a random generator seeded with the seed and its role.

A worker stops early when every writer of its control pipe has closed it.
"""

import dataclasses
import datetime
import functools
import json
import logging
import os
import random
import sys
import time
import uuid
from typing import Callable, Optional

from . import spawn
from .agentlog import (
    AgentLog,
    chef_finished_message,
    decoded_message,
    poll_message,
    processed_message,
    processing_message,
)
from .chef import TITLE_PADDING
from .clock import NS_PER_SECOND, EmulatedClock, wait_readable
from .commands import Command, run_command
from .truth import Ledger, ProcessRecord

logger = logging.getLogger(__name__)

WORKER_ROLES = ("keep_alive", "statistics", "process_command")

KEEP_ALIVE_PERIOD = 30.0
KEEP_ALIVE_CHILDREN = 10
STATISTICS_PERIOD = 20.0
POLL_PERIOD = 30.0

# Children per poll, drawn uniformly: 2 on average, so 4 a minute.
POLL_CHILDREN = (1, 2, 3)

# How long before it was decoded a command was sent, in emulated seconds.
MIN_SEND_DELAY = 1.0
MAX_SEND_DELAY = 5.0

CONFIGURE = "configure"


class WorkerError(Exception):
    """A failure that ends a worker, logged as one line."""


def worker_title(role: str, master_pid: int) -> str:
    """Return the process title of a worker of the master ``master_pid``."""
    return f"opsworks-agent: {role} of master {master_pid}"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Settings of the scenario that the workers run after the gate, from the command line."""

    master_pid: int
    speed: float
    duration: float
    seed: int
    configure_at: Optional[float]
    agent_log: Optional[str]
    report_dir: str
    log_level: str


def periodic_times(rng: random.Random, period: float, duration: float) -> list[float]:
    """Return the emulated times of a periodic task with a random phase, up to ``duration``."""
    times = []
    at = rng.uniform(0.0, period)
    while at < duration:
        times.append(at)
        at += period
    return times


class Worker:
    """A worker that runs timed actions until the scenario ends or the control pipe closes."""

    role = ""

    def __init__(self, scenario: Scenario, control: int, clock: EmulatedClock):
        self.scenario = scenario
        self.control = control
        self.clock = clock
        self.title = worker_title(self.role, scenario.master_pid)
        self.ledger = Ledger(self.role)
        self.rng = random.Random(f"{scenario.seed}/{self.role}")
        self.stopped = False

    def schedule(self) -> list[tuple[float, Callable[[], None]]]:
        """Return the actions of the whole run with their emulated times."""
        raise NotImplementedError

    def wait_until(self, emulated_seconds: float) -> bool:
        """Wait until ``emulated_seconds``, and return False if the control pipe closed first."""
        if wait_readable([self.control], self.clock.deadline_ns(emulated_seconds)):
            self.stopped = True
            return False
        return True

    def run(self) -> Ledger:
        """Run the schedule and return the ledger of everything done."""
        actions = sorted(self.schedule(), key=lambda action: action[0])
        logger.info("%s started: %d timed actions", self.role, len(actions))
        for at, action in actions:
            if not self.wait_until(at):
                break
            action()
        if not self.stopped:
            self.wait_until(self.scenario.duration)

        self.finish()
        logger.info(
            "%s %s: %d forks, %d execs",
            self.role,
            "stopped" if self.stopped else "finished",
            self.ledger.counts["process_forks"],
            self.ledger.counts["execs"],
        )
        return self.ledger

    def finish(self) -> None:
        """End the work in progress before the worker exits."""

    def run_command(self, command: Command) -> None:
        run_command(self.ledger, command, parent_argv=[self.title])

    def run_function(self, function: Callable[[], None]) -> None:
        spawn.run_function(self.ledger, function, parent_argv=[self.title])


class KeepAlive(Worker):
    """Checks every 30 s that the master is alive, in 10 children.

    Even-numbered children check with kill(2) and exit. Odd-numbered ones
    exec cat on the master's /proc stat file.
    """

    role = "keep_alive"

    def schedule(self) -> list[tuple[float, Callable[[], None]]]:
        times = periodic_times(self.rng, KEEP_ALIVE_PERIOD, self.scenario.duration)
        return [(at, self.check_master) for at in times]

    def check_master(self) -> None:
        master = self.scenario.master_pid
        for index in range(KEEP_ALIVE_CHILDREN):
            if index % 2 == 0:
                self.run_function(lambda: os.kill(master, 0))
            else:
                self.run_command(Command(("/bin/cat", f"/proc/{master}/stat")))


class Statistics(Worker):
    """Collects system statistics 3 times a minute, in one child each time.

    The child execs cat on /proc/stat or /proc/meminfo, or reads
    /proc/loadavg itself without exec, in turn.
    """

    role = "statistics"

    def schedule(self) -> list[tuple[float, Callable[[], None]]]:
        times = periodic_times(self.rng, STATISTICS_PERIOD, self.scenario.duration)
        first = self.rng.randrange(3)
        return [
            (at, functools.partial(self.collect, (first + index) % 3))
            for index, at in enumerate(times)
        ]

    def collect(self, turn: int) -> None:
        if turn == 0:
            self.run_command(Command(("/bin/cat", "/proc/stat")))
        elif turn == 1:
            self.run_command(Command(("/bin/cat", "/proc/meminfo")))
        else:
            self.run_function(read_load_average)


def read_load_average() -> None:
    with open("/proc/loadavg") as load_average:
        load_average.read()


@dataclasses.dataclass
class ChefRun:
    """A Chef run in progress for one command."""

    command_id: str
    sent_at: datetime.datetime
    decoded_at: float
    decoded_ns: int
    record: ProcessRecord
    pidfd: int
    report_path: str


class ProcessCommand(Worker):
    """Polls for commands every 30 s and runs Chef for the configure command.

    Each poll writes a poll line to the agent log and forks 1 to 3 children.
    The first reads /proc/uptime itself, the others exec cat on it. Polling
    goes on while Chef runs.
    """

    role = "process_command"

    def __init__(self, scenario: Scenario, control: int, clock: EmulatedClock):
        super().__init__(scenario, control, clock)
        self.log = AgentLog(scenario.agent_log, os.getpid(), clock)
        self.chef: Optional[ChefRun] = None

    def schedule(self) -> list[tuple[float, Callable[[], None]]]:
        times = periodic_times(self.rng, POLL_PERIOD, self.scenario.duration)
        actions: list[tuple[float, Callable[[], None]]] = []
        for at in times:
            children = self.rng.choice(POLL_CHILDREN)
            actions.append((at, functools.partial(self.poll, children)))
        if self.scenario.configure_at is not None:
            actions.append((self.scenario.configure_at, self.start_configure))
        return actions

    def wait_until(self, emulated_seconds: float) -> bool:
        deadline_ns = self.clock.deadline_ns(emulated_seconds)
        while True:
            descriptors = [self.control]
            if self.chef is not None:
                descriptors.append(self.chef.pidfd)
            readable = wait_readable(descriptors, deadline_ns)

            if self.chef is not None and self.chef.pidfd in readable:
                self.finish_chef()
            if self.control in readable:
                self.stopped = True
                return False
            if not readable:
                return True

    def poll(self, children: int) -> None:
        # Log times are those of the writing, so they never go backwards
        # when an action starts late.
        self.log.write(self.clock.elapsed(), poll_message())
        self.run_function(read_uptime)
        for _ in range(children - 1):
            self.run_command(Command(("/bin/cat", "/proc/uptime")))

    def start_configure(self) -> None:
        """Decode a configure command and start chef-solo for it, without waiting."""
        if self.chef is not None:
            logger.warning("configure command skipped: a Chef run is still in progress")
            return

        command_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        decoded_at = self.clock.elapsed()
        sent_at = self.clock.emulated_datetime(
            decoded_at - self.rng.uniform(MIN_SEND_DELAY, MAX_SEND_DELAY)
        )
        decoded_ns = time.monotonic_ns()
        self.log.write(decoded_at, decoded_message(command_id, CONFIGURE, sent_at))
        self.log.write(decoded_at, processing_message())

        report_path = os.path.join(self.scenario.report_dir, f"chef-{command_id}.json")
        record = spawn.start_program(
            self.ledger,
            chef_argv(self.scenario, command_id, report_path, self.control),
            parent_argv=[self.title],
            environment=spawn.child_environment(PYTHONPATH=package_root()),
            pass_fds=(self.control,),
            keep_stderr=True,
        )
        if not record.execs:
            raise WorkerError(f"could not exec {sys.executable} to start chef-solo")
        self.chef = ChefRun(
            command_id=command_id,
            sent_at=sent_at,
            decoded_at=decoded_at,
            decoded_ns=decoded_ns,
            record=record,
            pidfd=os.pidfd_open(record.pid),
            report_path=report_path,
        )
        logger.info("configure command %s: chef-solo started as pid %d", command_id, record.pid)

    def finish_chef(self) -> None:
        """Wait for chef-solo to exit, merge its ledger and log the end of the command."""
        chef = self.chef
        assert chef is not None
        self.chef = None
        os.close(chef.pidfd)
        exit_status = spawn.wait_program(self.ledger, chef.record)
        end_ns = time.monotonic_ns()
        finished_at = self.clock.elapsed()

        try:
            with open(chef.report_path) as report_file:
                report = json.load(report_file)
        except FileNotFoundError:
            raise WorkerError(
                f"chef-solo {chef.record.pid} exited with status {exit_status} and wrote no "
                "report. See its errors above"
            ) from None
        self.ledger.merge(report["ledger"])
        chef.record.thread_creations += report["own_thread_creations"]
        chef.record.title = report["title"]

        chef_seconds = (end_ns - chef.record.start_ns) * self.scenario.speed / NS_PER_SECOND
        self.log.write(finished_at, chef_finished_message(exit_status, chef_seconds))
        self.log.write(
            finished_at,
            processed_message(
                chef.command_id, CONFIGURE, chef.sent_at, exit_status, finished_at - chef.decoded_at
            ),
        )
        self.ledger.commands.append(
            {
                "id": chef.command_id,
                "type": CONFIGURE,
                "start_ns": chef.decoded_ns,
                "end_ns": end_ns,
                "exit_code": exit_status,
                "chef_pid": chef.record.pid,
            }
        )
        logger.info("configure command %s ended with exit status %d", chef.command_id, exit_status)

    def finish(self) -> None:
        # A Chef run still in progress at the end of the scenario runs to its
        # end. When the control pipe closed, chef-solo reads end of file on it
        # too and stops.
        if self.chef is not None:
            self.finish_chef()
        self.log.close()


def read_uptime() -> None:
    with open("/proc/uptime") as uptime:
        uptime.read()


def package_root() -> str:
    """Return the directory that contains the tracer package, for chef-solo's PYTHONPATH."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def chef_argv(scenario: Scenario, command_id: str, report_path: str, control: int) -> list[str]:
    """Return the command line that starts chef-solo for ``command_id``."""
    return [
        sys.executable,
        "-m",
        "tracer.emulator.chef",
        "--seed",
        str(scenario.seed),
        "--speed",
        repr(scenario.speed),
        "--command-id",
        command_id,
        "--work-dir",
        os.path.join(scenario.report_dir, f"chef-work-{command_id}"),
        "--report",
        report_path,
        "--control-fd",
        str(control),
        "--log-level",
        scenario.log_level,
        f"--title-padding={'-' * TITLE_PADDING}",
    ]


WORKERS = {worker.role: worker for worker in (KeepAlive, Statistics, ProcessCommand)}


def run_worker(role: str, scenario: Scenario, control: int, clock: EmulatedClock) -> Ledger:
    """Run the worker of ``role`` after the gate and return its ledger."""
    return WORKERS[role](scenario, control, clock).run()
