"""`agent-tracer demo`: trace the bundled OpsWorks agent emulator and compare with its ground truth."""

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from .errors import TracerError
from .roles import RoleSet, compile_rule, load_preset
from .session import TraceOptions, TraceSession

log = logging.getLogger(__name__)

COMPARED = ("process_forks", "thread_creations", "execs", "failed_execs", "exits")
READY_TIMEOUT = 30
# Buckets to wait after the emulator has exited, so its last events and
# counters are in the stream.
GRACE_BUCKETS = 2


class Emulator:
    """The emulator process, from start to its ground truth."""

    def __init__(self, workdir, speed, duration, configure_at, seed):
        self.ready_file = workdir / "ready.json"
        self.truth_file = workdir / "truth.json"
        self.agent_log = workdir / "opsworks-agent.process_command.log"
        command = [
            sys.executable, "-m", "tracer.emulator",
            "--speed", str(speed),
            "--duration", str(duration),
            "--seed", str(seed),
            "--ready-file", str(self.ready_file),
            "--truth", str(self.truth_file),
            "--agent-log", str(self.agent_log),
        ]
        if configure_at is None:
            command.append("--no-configure")
        else:
            command += ["--configure-at", str(configure_at)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self.pids = None

    def wait_ready(self):
        """Wait until all four agent processes have their titles; return their pids."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise TracerError(f"the emulator exited with code {self.process.returncode} before it was ready")
            if time.monotonic() > deadline:
                self.stop()
                raise TracerError(f"the emulator was not ready after {READY_TIMEOUT} s")
            time.sleep(0.05)
        self.pids = json.loads(self.ready_file.read_text())
        return self.pids

    def start_scenario(self):
        """Open the emulator's gate: what happens from here on is in its ground truth."""
        os.kill(self.pids["master"], signal.SIGUSR1)

    def finished(self):
        return self.process.poll() is not None

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def truth(self):
        """Return the emulator's ground truth, or raise if it wrote none."""
        if self.process.returncode != 0 or not self.truth_file.exists():
            raise TracerError(f"the emulator exited with code {self.process.returncode} and wrote no ground truth")
        return json.loads(self.truth_file.read_text())


def rules_for_master(master_pid):
    """Return the opsworks preset narrowed to one agent: its titles end in the master's pid.

    Another agent (or another demo) on the machine then stays out of the
    comparison with this emulator's ground truth.
    """
    preset = load_preset("opsworks")
    rules = tuple(
        compile_rule(rule.name, rule.pattern.pattern.replace(r"\d+", str(master_pid)) + r"\b", rule.field)
        for rule in preset.rules
    )
    return RoleSet(rules=rules, preset=preset.preset)


def comparison_table(measured, expected):
    """Return measured and expected counts per role, side by side, in 80 columns."""
    lines = [f"{'role':<16} {'count':<17} {'measured':>10} {'expected':>10}  match", "-" * 62]
    for role in sorted(expected["roles"]):
        got = measured["roles"].get(role, {})
        for key in COMPARED:
            want = expected["roles"][role].get(key, 0)
            value = got.get(key, 0)
            lines.append(f"{role:<16} {key:<17} {value:>10} {want:>10}  {'yes' if value == want else 'NO'}")
    return "\n".join(lines) + "\n"


def all_forks_match(measured, expected):
    """Tell whether the measured process forks equal the expected ones for every role."""
    return all(
        measured["roles"].get(role, {}).get("process_forks", 0) == counts.get("process_forks", 0)
        for role, counts in expected["roles"].items()
    )


@click.command()
@click.option("--speed", type=click.FloatRange(min=1), default=20.0, show_default=True, help="How many times faster than real time the emulated agent runs.")
@click.option("--duration", type=click.FloatRange(min=10), default=600.0, show_default=True, help="Length of the scenario in emulated seconds.")
@click.option("--configure-at", type=click.FloatRange(min=0), default=300.0, show_default=True, help="Emulated second at which the configure command arrives.")
@click.option("--no-configure", is_flag=True, help="Run the scenario without a configure command.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the emulator's choices.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Bucket length in seconds.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Keep the msgpack stream in this file.")
@click.option("--json", "as_json", is_flag=True, help='Print {"measured": REPORT, "expected": GROUND_TRUTH} as JSON.')
def demo(speed, duration, configure_at, no_configure, seed, interval, output, as_json):
    """Trace the bundled OpsWorks agent emulator and compare with its ground truth (needs root).

    The emulator runs the agent's four processes, titled like the real
    agent, for ten emulated minutes (about 30 s) with one configure command
    in the middle. The report follows, with the emulator's own count of
    what it did beside what was measured.

    \b
    Examples:
      agent-tracer demo
      agent-tracer demo --json > demo.json
      agent-tracer demo --speed 5 -o demo.msgpack
    """
    from .cli import render_report
    from .environment import require_root
    from .report import build_report

    if not no_configure and configure_at >= duration:
        raise click.BadParameter(
            f"{configure_at:g} is not before the end of the scenario ({duration:g} s); "
            "choose a smaller --configure-at or a longer --duration",
            param_hint="--configure-at",
        )
    require_root()

    with tempfile.TemporaryDirectory(prefix="agent-tracer-demo-") as tmp:
        workdir = Path(tmp)
        stream = Path(output) if output else workdir / "demo.msgpack"
        emulator = Emulator(workdir, speed, duration, None if no_configure else configure_at, seed)
        try:
            emulator.wait_ready()
            print(f"Emulated agent ready (master pid {emulator.pids['master']}); tracing {duration / speed:.0f} s of wall time.", file=sys.stderr)
            finished_at = []

            def stop_when():
                if not emulator.finished():
                    return False
                if not finished_at:
                    finished_at.append(time.monotonic())
                return time.monotonic() - finished_at[0] > GRACE_BUCKETS * interval

            options = TraceOptions(
                rules=rules_for_master(emulator.pids["master"]),
                output=str(stream),
                interval=interval,
                force=True,
                on_ready=lambda _table: emulator.start_scenario(),
                stop_when=stop_when,
                agent_log=str(emulator.agent_log),
            )
            TraceSession(options).run()
        finally:
            emulator.stop()

        truth = emulator.truth()
        expected = {"roles": truth["roles"], "commands": truth.get("commands", [])}
        measured = build_report([str(stream)])

        if as_json:
            click.echo(json.dumps({"measured": measured, "expected": expected}, indent=2))
        else:
            click.echo(render_report([str(stream)], "table"), nl=False)
            click.echo("\nGround truth from the emulator beside the measured counts:\n")
            click.echo(comparison_table(measured, expected), nl=False)

    if not all_forks_match(measured, expected):
        raise TracerError("measured process forks differ from the emulator's ground truth (see the table above)")
