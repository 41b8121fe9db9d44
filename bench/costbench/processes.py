"""Processes the benchmark starts: line readers, gated workloads, /proc samples, stopping."""

import logging
import os
import signal
import subprocess
import threading
import time

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT = 60
TERM_TIMEOUT = 10


class BenchError(Exception):
    """An expected failure of the benchmark: printed as one line, never as a traceback."""


class LineTimeout(BenchError):
    """No matching line arrived in time."""


class LineReader:
    """Reads a text stream line by line in a thread, so that a pipe never fills up."""

    def __init__(self, stream, name):
        self.lines = []
        self.name = name
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, predicate, timeout, what):
        """Return the first line for which predicate is true; raise BenchError after timeout seconds.

        The stream's end (every writer has exited) also raises, at once.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            checked = 0
            while True:
                for line in self.lines[checked:]:
                    if predicate(line):
                        return line
                checked = len(self.lines)
                if self.closed:
                    raise BenchError(f"{what}: the process ended first")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LineTimeout(f"{what}: timed out after {timeout:g} s")
                self._changed.wait(min(remaining, 0.2))

    def text(self):
        """Return everything read so far."""
        with self._changed:
            return "\n".join(self.lines)

    def join(self, timeout=10):
        self._thread.join(timeout)


def start_process(argv, executable=None, stdin=subprocess.DEVNULL, env=None, cwd=None):
    """Start argv with stdout and stderr read by LineReaders; return (Popen, stdout reader, stderr reader)."""
    log.debug("starting %s", " ".join(argv))
    try:
        process = subprocess.Popen(
            argv,
            executable=executable,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
    except OSError as error:
        raise BenchError(f"starting {argv[0]} failed: {error}") from error
    name = os.path.basename(executable or argv[0])
    return (
        process,
        LineReader(process.stdout, f"{name}-stdout"),
        LineReader(process.stderr, f"{name}-stderr"),
    )


def stop_process(process, sig=signal.SIGINT, timeout=STOP_TIMEOUT):
    """Send sig and wait for the exit; after timeout seconds send SIGTERM, then SIGKILL. Return the exit code."""
    for current, wait_seconds in ((sig, timeout), (signal.SIGTERM, TERM_TIMEOUT)):
        if process.poll() is not None:
            return process.returncode
        process.send_signal(current)
        try:
            return process.wait(wait_seconds)
        except subprocess.TimeoutExpired:
            log.warning("pid %d still runs %g s after %s", process.pid, wait_seconds, current.name)
    process.kill()
    return process.wait()


class GatedWorkload:
    """A workload from bench/workloads: prints "ready PID ...", waits for a byte on stdin, prints "done N NS".

    When a tracer that starts its target (strace, perf trace) wraps the
    workload, `process` is the tracer and the workload is its child. The
    protocol stays the same, because the child inherits the pipes.
    """

    def __init__(self, argv, executable=None):
        self.process, self.stdout, self.stderr = start_process(
            argv, executable, stdin=subprocess.PIPE
        )
        self.argv = argv
        self.pid = None

    def wait_ready(self, timeout):
        """Wait for the ready line; return its fields after "ready" (the first is the workload's pid)."""
        line = self.stdout.wait_for(
            lambda text: text.startswith("ready "), timeout, f"ready line of {self.argv[0]}"
        )
        fields = [int(word) for word in line.split()[1:]]
        self.pid = fields[0]
        return fields

    def open_gate(self):
        """Let the workload start its timed loop."""
        self.process.stdin.write("g")
        self.process.stdin.flush()

    def wait_done(self, timeout, on_poll=None):
        """Wait for the done line; return (operations, elapsed ns). on_poll runs about every 0.2 s meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stdout.wait_for(
                    lambda text: text.startswith("done "), 0.2, f"result of {self.argv[0]}"
                )
                break
            except LineTimeout:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{self.argv[0]} did not finish within {timeout:g} s"
                    ) from None
                if on_poll:
                    on_poll()
            except BenchError:
                message = self.stderr.text() or "no message"
                raise BenchError(f"{self.argv[0]} ended without its result: {message}") from None
        operations, elapsed_ns = (int(word) for word in line.split()[1:3])
        return operations, elapsed_ns

    def alive(self):
        return self.process.poll() is None

    def finish(self, timeout=STOP_TIMEOUT):
        """Close stdin and wait for the exit (a wrapping tool writes its summary first); return the exit code.

        A workload still waiting for its gate exits when stdin closes. After
        timeout seconds the process is terminated.
        """
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s still running %g s after its stdin closed; terminating it",
                self.argv[0],
                timeout,
            )
            return stop_process(self.process, signal.SIGTERM)


class ProcessSample:
    """CPU seconds and memory of one process, read from /proc."""

    def __init__(self, pid):
        self.pid = pid
        self.cpu_seconds = None
        self.rss_bytes = None
        self.peak_rss_bytes = None

    def read(self):
        """Update the sample; return False when the process is gone (the last values stay)."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat_file:
                stat = stat_file.read()
            with open(f"/proc/{self.pid}/status") as status_file:
                status = status_file.read()
        except OSError:
            return False
        # Fields after "(comm)": state is index 0, utime 11 and stime 12.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return False
        self.cpu_seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.rss_bytes = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                self.peak_rss_bytes = int(line.split()[1]) * 1024
        return True


def tree_cpu_seconds(pids):
    """Return the CPU seconds used so far by pids and the children they have reaped."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                fields = stat_file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total
