"""One tracing run: load the program, seed roles, drain events, write buckets."""

import logging
import os
import platform
import signal
import socket
import time
from dataclasses import dataclass, field

from . import __version__, environment, procfs
from .agentlog import AgentLogTail, marker_records
from .attribution import ProcessTable
from .budget import CpuBudget
from .counters import CounterReader
from .events import EventTranslator
from .probes import probe_kernel
from .program import ProgramOptions, TracerProgram
from .redact import Redactor
from .roles import RoleNumbers
from .output import RecordSink, StreamOutput
from .syscalls import abis_for_machine

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
RESCAN_SECONDS = 1.0
SCHEMA_VERSION = 1
OTHER_ROLE = "(other)"
OTHER_ROLE_NUMBER = 1  # the first number RoleNumbers hands out


@dataclass
class TraceOptions:
    """Everything that shapes one tracing run."""

    rules: object
    output: str
    duration: float = None
    interval: float = 1.0
    force: bool = False
    program: ProgramOptions = field(default_factory=ProgramOptions)
    rescan_seconds: float = RESCAN_SECONDS
    on_ready: object = None  # called once seeding is done
    on_bucket: object = None  # called with each bucket record
    stop_when: object = None  # polled each loop; a true result ends the run
    observers: list = field(default_factory=list)  # each called with every record written
    agent_log: str = None  # command log to read lifecycle markers from
    redactor: Redactor = field(default_factory=Redactor)
    rotate_size: int = None  # bytes per part of a rotated stream
    rotate_seconds: float = None  # seconds per part of a rotated stream
    show_other: bool = False  # count tasks outside every role as role "(other)"
    max_cpu: float = 5.0  # percent of one core the tracer may use; 0 turns the budget off


def monotonic_ns():
    """Return CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns()."""
    return time.monotonic_ns()


class StopRequested:
    """Turns SIGINT, SIGTERM and SIGHUP into a flag the loop checks."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        for number in self.SIGNALS:
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, _frame):
        self.signal = number

    def __exit__(self, *_exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def __bool__(self):
        return self.signal is not None


def prepare_environment():
    """Run the checks every BPF-loading command needs; return (bcc module, tracefs path, warnings)."""
    environment.require_root()
    environment.require_bpf_capabilities()
    bcc = environment.import_bcc()
    tracefs = environment.tracefs_root()
    warning = environment.prepare_kernel_headers()
    return bcc, tracefs, [warning] if warning else []


def load_program(options, count_syscalls=True):
    """Check the machine, then compile, load and attach the program; return (program, warnings)."""
    bcc, tracefs, warnings = prepare_environment()
    features = probe_kernel(tracefs, bcc.BPF, count_syscalls=count_syscalls)
    for warning in warnings + features.warnings:
        log.warning("%s", warning)
    program = TracerProgram(bcc, options, features)
    return program, bcc, features


def scan_processes():
    """Return every process in /proc as pid -> (ppid, cmdline, comm, threads, argv_area)."""
    processes = {}
    for pid in procfs.list_pids():
        stat = procfs.read_stat(pid)
        if stat is None:
            continue
        ppid, threads, argv_area = stat
        processes[pid] = (ppid, procfs.read_cmdline(pid) or "", procfs.read_comm(pid) or "", threads, argv_area)
    return processes


class TraceSession:
    """A tracing run from load to trailer."""

    def __init__(self, options):
        self.options = options
        self.lost_totals = {}
        self.output = None

    def run(self):
        """Trace until the duration ends or a stop signal arrives; return the trailer record.

        Raises TracerError with the I/O exit code when the output could not
        be written in full; what was written stays readable.
        """
        options = self.options
        if options.show_other:
            options.program.other_role = OTHER_ROLE_NUMBER
        self.output = StreamOutput(options.output, options.force, options.rotate_size, options.rotate_seconds)
        self.output.check_path()

        # Signals are caught from here on, so that one that arrives while
        # the program compiles still ends the run cleanly, with a trailer.
        with StopRequested() as self.stop:
            program, bcc, features = load_program(options.program, options.program.count_syscalls)
            try:
                sink = RecordSink(self.output, options.observers, options.redactor)
                trailer = self._trace(program, bcc, features, sink)
            finally:
                self.output.close()
                program.close()
        self.output.raise_failure()
        return trailer

    def _header(self, features, start_ns):
        native, compat = abis_for_machine(platform.machine())
        options = self.options
        return {
            "type": "header",
            "schema": SCHEMA_VERSION,
            "tool": "agent-tracer",
            "version": __version__,
            "host": socket.gethostname(),
            "kernel": platform.release(),
            "cpus": os.cpu_count() or 1,
            "arch": native,
            "compat_arch": compat,
            "clock": {"monotonic_ns": monotonic_ns(), "realtime_ns": time.time_ns()},
            "start": start_ns,
            "interval": options.interval,
            "preset": options.rules.preset,
            "roles": options.rules.describe(),
            "syscalls": options.program.count_syscalls,
            "failed_execs": options.program.count_syscalls and features.exec_attempts,
            "options": {
                "duration": options.duration,
                "max_roles": options.program.max_roles,
                "ringbuf_pages": options.program.ringbuf_pages,
                "exit_group_dead": features.exit_group_dead,
                "raw_tracepoint": features.raw_tracepoint,
                "ring_buffer": features.ring_buffer,
                "redact": options.redactor.enabled,
            },
        }

    def _trace(self, program, bcc, features, sink):
        options = self.options
        numbers = RoleNumbers(options.program.max_roles)
        if options.show_other:
            numbers.number(OTHER_ROLE)
        table = ProcessTable(program, options.rules, numbers)
        translator = EventTranslator(table, numbers, sink)
        program.open_events(translator.handle)
        counters = CounterReader(program, bcc.libbcc.lib, numbers)

        start_ns = monotonic_ns()
        self.features = features
        header = self._header(features, start_ns)
        self.output.open(header)
        sink.show(header)

        # The program is attached: every fork from here on inherits a role in
        # the kernel. Two passes over /proc catch the processes forked while
        # the first pass was writing the map.
        for record in table.seed(scan_processes(), monotonic_ns()):
            sink.write(record)
        for record in table.seed(scan_processes(), monotonic_ns()):
            sink.write(record)
        sink.flush()
        if not any(proc.is_root for proc in table.procs.values()):
            log.warning(
                "no running process matches the role rules yet; new ones are looked for every %g s",
                options.rescan_seconds,
            )
        if options.on_ready:
            options.on_ready(table)

        agent_log = AgentLogTail(options.agent_log) if options.agent_log else None
        self.budget = CpuBudget(program, options.max_cpu, options.interval) if options.max_cpu else None
        try:
            reason = self._loop(program, table, counters, sink, agent_log, start_ns)
        finally:
            if agent_log:
                agent_log.close()
            if self.budget:
                self.budget.close()

        program.drain_events()
        end_ns = monotonic_ns()
        self._write_bucket(counters, numbers, sink, self.bucket_start, end_ns)
        trailer = self._trailer(end_ns, reason)
        sink.write(trailer)
        return trailer

    def _trailer(self, end_ns, reason):
        lost = dict(self.lost_totals)
        if self.output.unwritten:
            lost["unwritten_records"] = self.output.unwritten
        return {"type": "trailer", "ts": end_ns, "end": end_ns, "lost": lost, "reason": reason}

    def _loop(self, program, table, counters, sink, agent_log, start_ns):
        options = self.options
        self.interval_ns = int(options.interval * 1e9)
        deadline = start_ns + int(options.duration * 1e9) if options.duration else None
        self.bucket_start = start_ns
        next_rescan = time.monotonic() + options.rescan_seconds

        stop = self.stop
        while True:
            time.sleep(POLL_SECONDS)
            program.drain_events()
            now_ns = monotonic_ns()
            if agent_log:
                for record in marker_records(agent_log.read_entries(), now_ns):
                    sink.write(record)

            if now_ns - self.bucket_start >= self.interval_ns:
                self._close_bucket(counters, table, sink, now_ns)

            if time.monotonic() >= next_rescan:
                for record in table.rescan(now_ns):
                    sink.write(record)
                next_rescan = time.monotonic() + options.rescan_seconds

            if stop:
                log.info("stopping on signal %s", signal.Signals(stop.signal).name)
                return "signal"
            if options.stop_when and options.stop_when():
                return "done"
            if deadline and now_ns >= deadline:
                return "duration"

    def _close_bucket(self, counters, table, sink, now_ns):
        """Write the bucket that ends now, check the CPU budget, and rotate the output if it is due.

        Buckets end on a fixed grid (start + k * interval), so that streams
        line up; the counters are read up to 50 ms after the grid point. A
        loop that fell a whole interval behind ends the bucket now instead
        and counts an overrun.
        """
        end_ns = self.bucket_start + self.interval_ns
        overrun = now_ns - end_ns >= self.interval_ns
        if overrun:
            end_ns = now_ns
        self._write_bucket(counters, table.numbers, sink, self.bucket_start, end_ns, overrun)
        self.bucket_start = end_ns

        if self.budget:
            for notice in self.budget.check(now_ns):
                sink.write(notice)
            self.interval_ns = int(self.budget.interval * 1e9)
        sink.flush()

        if self.output.should_rotate(now_ns):
            carried = [
                {"type": "root", "ts": now_ns, "pid": proc.pid, "role": proc.role, "cmdline": proc.title or "", "reason": "carried"}
                for proc in table.procs.values()
                if proc.is_root
            ]
            header = self._header(self.features, now_ns)
            self.output.rotate(self._trailer(now_ns, "rotate"), header, carried)

    def _write_bucket(self, counters, numbers, sink, start_ns, end_ns, overrun=False):
        by_number, lost = counters.read_deltas()
        if overrun:
            # The loop fell behind: this bucket spans more than one interval.
            lost["bucket_overruns"] = 1
        roles = {}
        for number, entry in by_number.items():
            name = numbers.name(number)
            if name is not None:
                if not self.options.program.count_syscalls:
                    entry.pop("syscalls", None)
                    entry.pop("syscalls_compat", None)
                roles[name] = entry
        for kind, count in lost.items():
            self.lost_totals[kind] = self.lost_totals.get(kind, 0) + count
        record = {"type": "bucket", "start": start_ns, "end": end_ns, "roles": roles, "lost": lost}
        sink.write(record)
        if self.options.on_bucket:
            self.options.on_bucket(record)
