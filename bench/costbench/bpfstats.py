"""BPF run time of agent-tracer's programs from the kernel's own statistics (kernel.bpf_stats_enabled)."""

import json
import logging
import os
import subprocess
from pathlib import Path

from .measure import DONE_TIMEOUT, READY_TIMEOUT
from .processes import BenchError, GatedWorkload
from .tools import ROLE_TITLE, Scope

log = logging.getLogger(__name__)

STATS_SWITCH = Path("/proc/sys/kernel/bpf_stats_enabled")


def program_ids(pid):
    """Return (fd, program id) of every BPF program fd that process pid has open, from /proc/PID/fdinfo."""
    ids = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "bpf-prog" not in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
            fields = read_fdinfo(pid, fd)
        except OSError:
            continue
        if "prog_id" in fields:
            ids.append((fd, fields["prog_id"]))
    return ids


def read_fdinfo(pid, fd):
    """Return the integer fields of /proc/PID/fdinfo/FD."""
    fields = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as fdinfo:
        for line in fdinfo:
            key, _, value = line.partition(":")
            value = value.strip()
            if value.isdigit():
                fields[key] = int(value)
    return fields


def program_names():
    """Return program id -> name from bpftool, or {} when bpftool is missing or fails."""
    try:
        result = subprocess.run(
            ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True
        )
        return {entry["id"]: entry.get("name", "") for entry in json.loads(result.stdout)}
    except (OSError, subprocess.CalledProcessError, ValueError) as error:
        log.warning("bpftool prog show failed (%s); programs are named by id", error)
        return {}


def read_run_stats(pid, programs):
    """Return prog id -> (run_time_ns, run_cnt) for the program fds of pid."""
    stats = {}
    for fd, prog_id in programs:
        fields = read_fdinfo(pid, fd)
        stats[prog_id] = (fields.get("run_time_ns", 0), fields.get("run_cnt", 0))
    return stats


def difference(before, after, names):
    """Return per-program deltas of run time and run count, and their totals."""
    programs = {}
    for prog_id, (time_after, count_after) in after.items():
        time_before, count_before = before.get(prog_id, (0, 0))
        runs = count_after - count_before
        run_time = time_after - time_before
        programs[names.get(prog_id, f"id {prog_id}")] = {
            "run_time_ns": run_time,
            "run_cnt": runs,
            "ns_per_run": run_time / runs if runs else None,
        }
    total = sum(entry["run_time_ns"] for entry in programs.values())
    return {"programs": programs, "run_time_ns": total}


def measure_bpf_stats(context, tracer):
    """Run spawns, then getppid calls, in a role under agent-tracer with BPF statistics on; return BPF time per operation."""
    settings = context.settings
    previous = STATS_SWITCH.read_text().strip()
    spawner = getppid = session = None
    try:
        STATS_SWITCH.write_text("1\n")
        spawner = GatedWorkload(
            [ROLE_TITLE, str(settings.bpf_stats_spawns)],
            executable=str(context.binaries["spawn-loop"]),
        )
        getppid = GatedWorkload(
            [ROLE_TITLE, str(settings.bpf_stats_syscalls)],
            executable=str(context.binaries["getppid-loop"]),
        )
        spawner.wait_ready(READY_TIMEOUT)
        getppid.wait_ready(READY_TIMEOUT)
        session = tracer.start(Scope([spawner.pid, getppid.pid]), context.out_dir)

        programs = program_ids(session.process.pid)
        if not programs:
            raise BenchError(
                f"no BPF program fd found in /proc/{session.process.pid}/fd of agent-tracer: cannot read run times"
            )
        names = program_names()

        before = read_run_stats(session.process.pid, programs)
        spawner.open_gate()
        spawns, spawn_ns = spawner.wait_done(DONE_TIMEOUT)
        after_spawns = read_run_stats(session.process.pid, programs)
        getppid.open_gate()
        calls, calls_ns = getppid.wait_done(DONE_TIMEOUT)
        after_calls = read_run_stats(session.process.pid, programs)
    except OSError as error:
        raise BenchError(f"reading or switching BPF statistics failed: {error}") from error
    finally:
        if session:
            tracer.stop(session)
        for workload in (spawner, getppid):
            if workload:
                workload.finish()
        try:
            STATS_SWITCH.write_text(previous + "\n")
        except OSError as error:
            log.error("could not restore %s to %s: %s", STATS_SWITCH, previous, error)

    during_spawns = difference(before, after_spawns, names)
    during_calls = difference(after_spawns, after_calls, names)
    return {
        "spawns": spawns,
        "spawn_loop_ns": spawn_ns,
        "bpf_ns_per_spawn": during_spawns["run_time_ns"] / spawns if spawns else None,
        "during_spawns": during_spawns,
        "getppid_calls": calls,
        "getppid_loop_ns": calls_ns,
        "bpf_ns_per_getppid": during_calls["run_time_ns"] / calls if calls else None,
        "during_getppid": during_calls,
    }
