"""A Chef run (chef-solo) as the agent's process_command starts it for a lifecycle command.

process_command forks and execs ``python -m tracer.emulator.chef``. The new
process titles itself ``chef-solo -j ...`` and sets its comm to
``chef-solo``, as a Ruby script of that name would show. Over 80 to 95
emulated seconds it profiles the system the way Ohai does, syncs cookbooks
with a few threads and converges: several hundred short programs and shell
scripts run one after the other. The plan depends only on the seed, the
command id and which package managers are installed.

When it ends it writes its Ledger to the report file for process_command.
It stops early, with exit status 1, when every writer of the control pipe
closes it.
"""

import argparse
import dataclasses
import glob
import hashlib
import logging
import os
import random
import shutil
import sys
import threading
from typing import Optional

from . import commands
from .clock import EmulatedClock, wait_readable
from .commands import Command
from .titles import set_title
from .truth import Ledger, write_json_atomically

logger = logging.getLogger("tracer.emulator.chef")

# Length of a Chef run in emulated seconds, as measured on an OpsWorks stack.
MIN_RUN_SECONDS = 80.0
MAX_RUN_SECONDS = 95.0

# Phases of a run, in emulated seconds since chef-solo started.
OHAI_START = 1.0
OHAI_END = 8.0
SYNC_AT = 9.0
CONVERGE_START = 12.0
CONVERGE_STOP_BEFORE_END = 5.0
HANDLERS_BEFORE_END = 3.0

# Ohai runs every probe once and some of them again from other plugins.
OHAI_REPEATS = 8

# Threads that download and check cookbook files in parallel.
SYNC_THREADS = 4

# Resources converged per run, and the chance that one has a guard.
MIN_RESOURCES = 130
MAX_RESOURCES = 150
GUARD_PROBABILITY = 0.5
MAX_ACTIONS_PER_RESOURCE = 3

# Gap in emulated seconds between the commands of one resource.
ACTION_GAP = 0.01

EXIT_STOPPED = 1

# Bytes of argv area that chef-solo's title needs at most, with a margin.
TITLE_PADDING = 160

COMM = "chef-solo"


@dataclasses.dataclass(frozen=True)
class ChefStep:
    """One step of a run: a command, or the cookbook sync when ``command`` is None."""

    at: float
    command: Optional[Command]


@dataclasses.dataclass(frozen=True)
class ChefPlan:
    """The steps of one Chef run, sorted by their emulated start time."""

    run_seconds: float
    steps: tuple[ChefStep, ...]


def plan_run(seed: str, shell: str, work_dir: str, probes: list[Command]) -> ChefPlan:
    """Return the plan of a Chef run, which depends only on the arguments."""
    rng = random.Random(seed)
    run_seconds = rng.uniform(MIN_RUN_SECONDS, MAX_RUN_SECONDS)
    steps = []

    ohai = [*commands.OHAI_COMMANDS, *probes, *rng.sample(commands.OHAI_COMMANDS, OHAI_REPEATS)]
    rng.shuffle(ohai)
    ohai_times = sorted(rng.uniform(OHAI_START, OHAI_END) for _ in ohai)
    steps.extend(ChefStep(at, command) for at, command in zip(ohai_times, ohai))

    steps.append(ChefStep(SYNC_AT, None))

    guards = commands.guard_scripts(shell, work_dir)
    actions = [*commands.action_scripts(shell, work_dir), *commands.DIRECT_COMMANDS]
    resource_count = rng.randint(MIN_RESOURCES, MAX_RESOURCES)
    converge_end = run_seconds - CONVERGE_STOP_BEFORE_END
    resource_times = sorted(
        rng.uniform(CONVERGE_START, converge_end) for _ in range(resource_count)
    )
    for start in resource_times:
        resource = []
        if rng.random() < GUARD_PROBABILITY:
            resource.append(rng.choice(guards))
        resource.extend(rng.choices(actions, k=rng.randint(1, MAX_ACTIONS_PER_RESOURCE)))
        for index, command in enumerate(resource):
            steps.append(ChefStep(start + index * ACTION_GAP, command))

    handlers_at = run_seconds - HANDLERS_BEFORE_END
    steps.append(ChefStep(handlers_at, Command(("uname", "-n"), search_path=True)))
    steps.append(ChefStep(handlers_at, Command(("/bin/cat", "/proc/self/stat"))))

    steps.sort(key=lambda step: step.at)
    return ChefPlan(run_seconds=run_seconds, steps=tuple(steps))


def chef_title(command_id: str) -> str:
    """Return chef-solo's process title for the command ``command_id``."""
    return (
        f"chef-solo -j /var/lib/aws/opsworks/chef/{command_id}.json "
        "-c /var/lib/aws/opsworks/client.stage2.rb"
    )


def sync_cookbooks(ledger: Ledger) -> None:
    """Hash the emulator's own source files in SYNC_THREADS threads, as a cookbook sync."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*.py")))

    def hash_files(paths: list[str]) -> None:
        for path in paths:
            with open(path, "rb") as source:
                hashlib.sha256(source.read()).hexdigest()

    threads = [
        threading.Thread(
            target=hash_files, args=(files[index::SYNC_THREADS],), name=f"sync-{index}"
        )
        for index in range(SYNC_THREADS)
    ]
    for thread in threads:
        thread.start()
        ledger.record_thread_creations(None, 1)

    # Joined before the next fork, so that no fork happens with threads alive.
    for thread in threads:
        thread.join()


def run_plan(
    plan: ChefPlan, ledger: Ledger, clock: EmulatedClock, control: int, title: str
) -> bool:
    """Run the steps of ``plan`` on time, and return False if the control pipe stopped it.

    NOTE: a step that comes due while the previous one still runs starts
    late. At high speeds the run then lasts longer than planned, and the
    agent log reports the longer time. The counts do not change.
    """
    for step in plan.steps:
        if wait_readable([control], clock.deadline_ns(step.at)):
            return False
        if step.command is None:
            sync_cookbooks(ledger)
        else:
            commands.run_command(ledger, step.command, parent_argv=[title])

    return not wait_readable([control], clock.deadline_ns(plan.run_seconds))


def parse_arguments(argv: Optional[list[str]]) -> argparse.Namespace:
    """Parse chef-solo's internal command line, which only process_command writes."""
    parser = argparse.ArgumentParser(prog="python -m tracer.emulator.chef")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--command-id", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--title-padding", default="")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Run one Chef run, write its report and return the exit status."""
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )

    # The children of chef-solo must not keep the control pipe open.
    os.set_inheritable(arguments.control_fd, False)
    title = chef_title(arguments.command_id)
    set_title(title)
    with open("/proc/self/comm", "w") as comm:
        comm.write(COMM)

    ledger = Ledger("process_command")
    shell = commands.find_shell()
    os.mkdir(arguments.work_dir)
    clock = EmulatedClock.start_now(arguments.speed)
    plan = plan_run(
        f"{arguments.seed}/chef/{arguments.command_id}",
        shell,
        arguments.work_dir,
        commands.missing_probes(),
    )
    logger.info(
        "chef-solo started: %d steps over %.1f emulated seconds", len(plan.steps), plan.run_seconds
    )

    finished = run_plan(plan, ledger, clock, arguments.control_fd, title)
    shutil.rmtree(arguments.work_dir)
    logger.info(
        "chef-solo %s: %d forks, %d execs, %d failed exec attempts",
        "finished" if finished else "stopped",
        ledger.counts["process_forks"],
        ledger.counts["execs"],
        ledger.counts["failed_execs"],
    )

    write_json_atomically(
        arguments.report,
        {
            "ledger": ledger.to_json(),
            # Only chef-solo itself starts threads. The programs it runs start none.
            "own_thread_creations": ledger.counts["thread_creations"],
            "title": title,
            "finished": finished,
        },
    )
    return 0 if finished else EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
