"""Drive a real `agent-tracer trace` run and the workloads it watches, for root tests.

One tracer process runs for the whole test session (BCC's compile is slow
under emulation), with a rule that makes every process titled
`agent-tracer-test: NAME ...` the root of role NAME. Each test starts its
workload with a unique NAME, waits until the tracer has seen the root, lets
the workload run, and reads the stream the tracer has written so far.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tracer.stream import read_stream

TITLE_PREFIX = "agent-tracer-test:"
WORKLOADS = Path(__file__).parent / "workloads"
ROLE_RULE = r"test=^agent-tracer-test: (?P<role>\w+)"


# Heavy workloads shrink by this factor where the machine is emulated (the
# VM stage sets it); their exact counts are checked either way.
SCALE = float(os.environ.get("AGENT_TRACER_TEST_SCALE", "1"))


def scaled(count):
    """Return a workload size shrunk by AGENT_TRACER_TEST_SCALE, never below 1."""
    return max(1, int(count * SCALE))


class Timeout(AssertionError):
    pass


def wait_until(predicate, timeout, what):
    """Poll predicate until it returns a true value; raise Timeout naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class LiveTracer:
    """An `agent-tracer trace` subprocess writing a stream to `path`."""

    def __init__(self, path, extra_args=(), env=None):
        self.path = Path(path)
        self.command = [
            sys.executable, "-m", "tracer", "trace",
            "--role", ROLE_RULE,
            "--interval", "0.2",
            "--rescan-interval", "0.1",
            # Exact-count tests must not see the budget shed argument capture.
            "--max-cpu", "0",
            "--format", "json",
            "-o", str(self.path), "--force",
            *extra_args,
        ]
        self.stderr_path = self.path.with_suffix(".stderr")
        self.stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True
        )
        self.records = []
        self.offset_records = 0

    def wait_ready(self, timeout=120):
        """Wait for the start line that names what is traced."""
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"tracer exited with {self.process.returncode}: {self.stderr_text()}")
            return "Tracing" in self.stderr_text()
        wait_until(ready, timeout, "the tracer's start line")

    def stderr_text(self):
        return self.stderr_path.read_text()

    def read(self):
        """Return every whole record written so far."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with read_stream(self.path) as reader:
            return [reader.header, *reader] if reader.header else list(reader)

    def wait_for_record(self, predicate, timeout=30, what="a record"):
        """Wait until a record matching predicate is in the stream; return it."""
        def find():
            for record in self.read():
                if predicate(record):
                    return record
            return None
        return wait_until(find, timeout, what)

    def stop(self, sig=signal.SIGINT, timeout=180):
        """Stop the tracer with sig; return (exit code, stdout)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=timeout)
        self.stderr.close()
        return self.process.returncode, out


class Workload:
    """A workload script started as the root of a test role, gated on stdin."""

    def __init__(self, role, script, *args, python=sys.executable):
        self.role = role
        self.argv = [f"{TITLE_PREFIX} {role}", str(WORKLOADS / script), *map(str, args)]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
        self.process = subprocess.Popen(
            self.argv, executable=python, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.pid = self.process.pid

    def open_gate(self, tracer, settle=0.0, close_stdin=True):
        """Wait until the tracer has seen the root, wait settle seconds, then open the gate.

        The gate opens at `gate_ns`. With close_stdin false, stdin stays open
        for a workload that reads more lines.
        """
        tracer.wait_for_record(
            lambda r: r.get("type") in ("root", "task") and r.get("pid") == self.pid and r.get("role") == self.role,
            what=f"the tracer to see root {self.pid} of role {self.role}",
        )
        time.sleep(settle)
        self.gate_ns = time.monotonic_ns()
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        if close_stdin:
            self.process.stdin.close()

    def run(self, tracer, timeout=600, settle=0.0):
        """Open the gate as open_gate does, wait for the end, and return the last JSON line.

        settle lets the CPU time that the root used before the gate fall in
        buckets that end before `gate_ns`.
        """
        self.open_gate(tracer, settle, close_stdin=False)
        out, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, f"workload {self.argv} exited with {self.process.returncode}"
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        return json.loads(last)


def role_summary(records, role):
    """Count what the stream records for one role."""
    summary = {
        "process_forks": 0, "thread_creations": 0, "execs": 0, "failed_execs": 0, "exits": 0,
        "syscalls": {}, "syscalls_compat": {}, "cpu_ns": 0,
        "exec_records": [], "failed_records": [], "exit_pids": [], "fork_records": [],
    }
    kinds = {"fork": "process_forks", "thread": "thread_creations", "exec": "execs",
             "exec_failed": "failed_execs", "exit": "exits"}
    for record in records:
        kind = record.get("type")
        if kind in kinds and record.get("role") == role:
            summary[kinds[kind]] += 1
            if kind == "exec":
                summary["exec_records"].append(record)
            elif kind == "exec_failed":
                summary["failed_records"].append(record)
            elif kind == "exit":
                summary["exit_pids"].append(record["pid"])
            elif kind == "fork":
                summary["fork_records"].append(record)
        elif kind == "bucket" and role in record["roles"]:
            entry = record["roles"][role]
            for table in ("syscalls", "syscalls_compat"):
                for nr, count in entry.get(table, {}).items():
                    summary[table][nr] = summary[table].get(nr, 0) + count
            summary["cpu_ns"] += entry.get("cpu_ns", 0)
    return summary


def settled(tracer, pid, role=None):
    """Wait until the exit of pid is recorded and a bucket closed after it; return all records.

    Give the role when the tracer has run long enough for pids to be reused.
    """
    exit_record = tracer.wait_for_record(
        lambda r: r.get("type") == "exit" and r.get("pid") == pid and role in (None, r.get("role")),
        what=f"the exit of {pid}",
    )
    tracer.wait_for_record(
        lambda r: r.get("type") == "bucket" and r["start"] > exit_record["ts"],
        what="a bucket closed after the exit",
    )
    return tracer.read()
