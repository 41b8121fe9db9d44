"""The tracer's own CPU budget: measure it, and shed work when it is over.

The cost of tracing is the run time of the BPF programs (in the kernel, on
the traced tasks' CPUs) plus this process's own CPU time. BPF run time is
only counted while statistics are enabled: BPF_ENABLE_STATS turns them on
for as long as its file descriptor stays open (Linux 5.8+). Statistics
cost every program run two clock reads (about +68 ns per syscall of every
process, measured with bench/sys_enter_cost.py), so they are on only for
one bucket in every SAMPLE_EVERY, and the BPF share measured then stands
for the buckets in between.
"""

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

BPF_ENABLE_STATS = 32  # enum bpf_cmd
BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type
# The bpf() syscall number on the architectures the tracer supports.
NR_BPF = {"x86_64": 321, "aarch64": 280}

# Maximum bucket interval the budget may stretch to, in seconds.
MAX_INTERVAL = 60.0
# BPF run time is sampled during one bucket in this many.
SAMPLE_EVERY = 10


def enable_bpf_stats():
    """Turn on BPF run-time statistics; return the fd that keeps them on, or None."""
    nr = NR_BPF.get(platform.machine())
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.c_uint32 * 30
    request = attr(BPF_STATS_RUN_TIME)
    fd = libc.syscall(nr, BPF_ENABLE_STATS, ctypes.byref(request), ctypes.sizeof(request))
    if fd < 0:
        log.warning("cannot enable BPF statistics (%s): the CPU budget counts this process only", os.strerror(ctypes.get_errno()))
        return None
    return fd


def program_run_time_ns(fds):
    """Sum run_time_ns over the programs' fdinfo entries."""
    total = 0
    for fd in fds:
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("run_time_ns:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def process_cpu_ns():
    """Return this process's user and system time in ns."""
    times = os.times()
    return int((times.user + times.system) * 1e9)


class CpuBudget:
    """Checks the tracer's CPU share once per bucket and sheds work when it is over budget.

    First argument capture goes (exec paths are still recorded), then each
    further overrun doubles the bucket interval, up to MAX_INTERVAL.
    """

    def __init__(self, program, percent, interval):
        self.program = program
        self.percent = percent
        self.interval = interval
        self.fds = program.program_fds()
        self.argv_capture = True
        self.buckets = 0
        self.stats_fd = None
        self.sample_start = None  # (BPF run-time ns, monotonic ns) when sampling began
        self.bpf_share = 0.0  # BPF run time per wall-clock ns, from the last sample
        self.last = None  # (own CPU ns, monotonic ns) at the previous check

    def _start_sample(self, now_ns):
        self.stats_fd = enable_bpf_stats()
        if self.stats_fd is not None:
            self.sample_start = (program_run_time_ns(self.fds), now_ns)

    def _end_sample(self, now_ns):
        if self.stats_fd is None:
            return
        run_time = program_run_time_ns(self.fds)
        os.close(self.stats_fd)
        self.stats_fd = None
        started_run_time, started_at = self.sample_start
        if now_ns > started_at:
            self.bpf_share = (run_time - started_run_time) / (now_ns - started_at)

    def check(self, now_ns):
        """Measure the last bucket; return notice records for what was shed (may be empty)."""
        self.buckets += 1
        if self.stats_fd is not None:
            self._end_sample(now_ns)
        elif self.buckets % SAMPLE_EVERY == 0:
            self._start_sample(now_ns)

        current = (process_cpu_ns(), now_ns)
        previous, self.last = self.last, current
        if previous is None or current[1] <= previous[1]:
            return []

        wall = current[1] - previous[1]
        own = current[0] - previous[0]
        bpf = int(self.bpf_share * wall)
        used = 100.0 * (own + bpf) / wall
        if used <= self.percent:
            return []

        detail = {"cpu_percent": round(used, 2), "budget_percent": self.percent, "own_ns": own, "bpf_ns": bpf}
        if self.argv_capture:
            self.argv_capture = False
            self.program.set_argv_capture(False)
            action = "exec argument capture turned off"
        elif self.interval < MAX_INTERVAL:
            self.interval = min(self.interval * 2, MAX_INTERVAL)
            action = f"bucket interval lengthened to {self.interval:g} s"
        else:
            return []
        detail["interval"] = self.interval
        log.warning("tracer CPU %.2f%% of one core is over the %g%% budget: %s", used, self.percent, action)
        return [{"type": "notice", "ts": now_ns, "kind": "cpu_budget", "message": action, "detail": detail}]

    def close(self):
        if self.stats_fd is not None:
            os.close(self.stats_fd)
            self.stats_fd = None
