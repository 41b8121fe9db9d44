"""One measurement: one workload under one tool, from start-up to the tool's summary."""

import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .interference import BusyMeter, tracing_programs
from .processes import (
    BenchError,
    GatedWorkload,
    ProcessSample,
    start_process,
    stop_process,
    tree_cpu_seconds,
)
from .settings import getppid_count
from .tools import ROLE_TITLE, Scope

log = logging.getLogger(__name__)

READY_TIMEOUT = 120
DONE_TIMEOUT = 1800
OTHER_TITLE = "agent-bench-other"
IDLE_TITLE = f"{ROLE_TITLE}-idle"


@dataclass
class Context:
    """Sizes, programs and output directory shared by every measurement."""

    settings: object
    binaries: dict
    python: str  # interpreter that can run `-m tracer.emulator`
    out_dir: Path
    sequence: int = 0

    def next_path(self, stem, suffix):
        self.sequence += 1
        return self.out_dir / f"{self.sequence:04d}-{stem}{suffix}"


def start_workload(tool, title, binary, count, summary_path):
    """Start a gated workload titled `title`, or under `tool` when the tool starts its target."""
    if tool.wraps:
        return GatedWorkload(tool.wrap([str(binary), str(count)], summary_path))
    return GatedWorkload([title, str(count)], executable=str(binary))


def attach(tool, scope, context, record, target_process):
    """Start an attaching tool on scope; return (session or None, sample of the tool's process or None)."""
    if tool.wraps:
        return None, ProcessSample(target_process.pid)
    if tool.key == "untraced":
        return None, None
    session = tool.start(scope, context.out_dir)
    record["startup_seconds"] = session.startup_seconds
    return session, session.sample


def record_tool_usage(record, sample, cpu_before):
    """Store the tool's CPU seconds since cpu_before and its memory, from a fresh sample."""
    sample.read()
    record["tool_cpu_seconds"] = sample.cpu_seconds - cpu_before
    record["tool_rss_bytes"] = sample.rss_bytes
    record["tool_peak_rss_bytes"] = sample.peak_rss_bytes


def measure_gated(context, tool, workload):
    """Run workload (a), (b) or (c) under tool; return the run record."""
    if workload.kind == "getppid":
        binary = context.binaries["getppid-loop"]
        count = getppid_count(context.settings, tool.key, workload)
    else:
        binary = context.binaries["spawn-loop"]
        count = context.settings.spawn_count
    summary_path = context.next_path(f"{workload.key}-{tool.key}", ".txt") if tool.wraps else None
    record = {"operations": count}
    foreign = tracing_programs()
    if foreign is not None:
        record["foreign_bpf_programs"] = len(foreign)
    busy = BusyMeter()
    session = measured = idle = None
    output = ""

    try:
        # The tool is pointed at the role process: the workload itself, or
        # for (b) an idle role process while the workload runs outside.
        if workload.in_role:
            measured = target = start_workload(tool, ROLE_TITLE, binary, count, summary_path)
        else:
            idle = target = start_workload(
                tool, IDLE_TITLE, context.binaries["getppid-loop"], 0, summary_path
            )
            measured = GatedWorkload([OTHER_TITLE, str(count)], executable=str(binary))
            measured.wait_ready(READY_TIMEOUT)
        target.wait_ready(READY_TIMEOUT)

        scope = Scope([target.pid], system_wide=workload.kind == "spawn")
        session, sample = attach(tool, scope, context, record, target.process)
        if sample:
            sample.read()
            cpu_before = sample.cpu_seconds

        busy.start()
        measured.open_gate()
        operations, elapsed_ns = measured.wait_done(
            DONE_TIMEOUT, on_poll=sample.read if sample else None
        )
        record["cpu_busy_fraction"] = busy.stop()
        if sample:
            record_tool_usage(record, sample, cpu_before)
        record["operations"] = operations
        record["elapsed_ns"] = elapsed_ns
        record["per_operation_ns"] = elapsed_ns / operations if operations else None

        if idle:
            idle.open_gate()
            idle.wait_done(READY_TIMEOUT)
    finally:
        if session:
            output = tool.stop(session)
            record["tool_exit_code"] = session.exit_code
        for process in (measured, idle):
            if process:
                process.finish()

    if tool.wraps:
        output = summary_path.read_text() if summary_path.exists() else ""
    if tool.key != "untraced":
        record["seen"] = tool.seen(output, "getppid" if workload.kind == "getppid" else "execve")
    return record


def emulator_command(context, workdir):
    """Return the emulator's command line with the demo's default scenario."""
    settings = context.settings
    command = [
        context.python,
        "-m",
        "tracer.emulator",
        "--speed",
        f"{settings.demo_speed:g}",
        "--duration",
        f"{settings.demo_duration:g}",
        "--seed",
        str(settings.demo_seed),
        "--ready-file",
        str(workdir / "ready.json"),
        "--truth",
        str(workdir / "truth.json"),
        "--agent-log",
        str(workdir / "agent.log"),
    ]
    if settings.demo_configure_at is None:
        command.append("--no-configure")
    else:
        command += ["--configure-at", f"{settings.demo_configure_at:g}"]
    return command


def wait_for_file(path, process, timeout, what):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise BenchError(f"{what}: the process exited with {process.returncode} first")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: timed out after {timeout} s")
        time.sleep(0.05)


def process_running(pid):
    """Tell whether pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_tree_rusage(path):
    """Parse the line tree-rusage writes: returns a dict of its integer fields."""
    words = path.read_text().split()
    return {key: int(value) for key, value in zip(words[::2], words[1::2])}


def measure_demo(context, tool):
    """Run the emulator scenario under tool; return the run record with wall time, tool CPU and RSS."""
    settings = context.settings
    workdir = context.next_path(f"demo-{tool.key}", "")
    workdir.mkdir()
    rusage_path = workdir / "tree-rusage.txt"
    summary_path = workdir / "summary.txt"
    command = [
        str(context.binaries["tree-rusage"]),
        str(rusage_path),
        *emulator_command(context, workdir),
    ]
    if tool.wraps:
        command = tool.wrap(command, summary_path)
    record = {}
    foreign = tracing_programs()
    if foreign is not None:
        record["foreign_bpf_programs"] = len(foreign)
    busy = BusyMeter()
    session = pids = None
    output = ""

    process, _stdout, stderr = start_process(command)
    try:
        wait_for_file(workdir / "ready.json", process, READY_TIMEOUT, "emulator ready file")
        pids = json.loads((workdir / "ready.json").read_text())

        scope = Scope(list(pids.values()), preset_roles=True, system_wide=True)
        session, sample = attach(tool, scope, context, record, process)
        if sample:
            sample.read()
            cpu_before = sample.cpu_seconds
        workload_cpu_before = tree_cpu_seconds(pids.values())

        busy.start()
        gate_ns = time.monotonic_ns()
        os.kill(pids["master"], signal.SIGUSR1)
        wait_for_exit(pids["master"], settings.demo_duration / settings.demo_speed, sample)
        record["cpu_busy_fraction"] = busy.stop()
        if sample:
            record_tool_usage(record, sample, cpu_before)

        code = process.wait(DONE_TIMEOUT)
        if code != 0:
            raise BenchError(f"the emulator run exited with {code}: {stderr.text()[-800:]}")
    finally:
        if session:
            output = tool.stop(session)
            record["tool_exit_code"] = session.exit_code
        if process.poll() is None and pids:
            # SIGTERM to the master ends the scenario early, with its truth written.
            os.kill(pids["master"], signal.SIGTERM)
        stop_process(process, signal.SIGTERM)

    rusage = read_tree_rusage(rusage_path)
    record["wall_seconds"] = (rusage["exit_ns"] - gate_ns) / 1e9
    record["workload_cpu_seconds"] = (
        rusage["user_ns"] + rusage["system_ns"]
    ) / 1e9 - workload_cpu_before
    if "tool_cpu_seconds" in record:
        record["tool_cpu_percent"] = 100 * record["tool_cpu_seconds"] / record["wall_seconds"]

    truth = json.loads((workdir / "truth.json").read_text())
    record["expected_forks"] = sum(role["process_forks"] for role in truth["roles"].values())
    if tool.wraps:
        output = summary_path.read_text() if summary_path.exists() else ""
    if tool.key != "untraced":
        record["seen"] = tool.seen(output, "fork")
    return record


def wait_for_exit(pid, scenario_seconds, sample):
    """Poll until pid has exited, reading the tool's sample meanwhile; give up long after the scenario's length."""
    timeout = 10 * scenario_seconds + 300
    deadline = time.monotonic() + timeout
    while process_running(pid):
        if sample:
            sample.read()
        if time.monotonic() > deadline:
            raise BenchError(f"the emulator master {pid} still runs {timeout:.0f} s after the gate")
        time.sleep(0.2)
