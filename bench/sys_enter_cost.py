"""Break the per-syscall cost of agent-tracer's hooks into parts (needs root and bench/bin).

Usage: sudo .venv/bin/python bench/sys_enter_cost.py [ROUNDS]

Loads one variant of a raw sys_enter program at a time with BCC, each a
step closer to what agent-tracer attaches. Under each, it times
GETPPID_CALLS getppid calls in a role process (its tgid set in the role
map) and in an outside process. Untraced runs sit between the variants,
and rounds alternate the order. Prints the median ns per call of each
variant and what it adds to the untraced median. Run bench/run once
first: it builds bench/bin. Kernel headers are prepared as agent-tracer
does. docs/benchmarks.md has the figures of one run.
"""

import ctypes
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bcc import BPF

from tracer.environment import prepare_kernel_headers

GETPPID_LOOP = Path(__file__).resolve().parent / "bin" / "getppid-loop"
GETPPID_CALLS = 2_000_000
STATS_SWITCH = Path("/proc/sys/kernel/bpf_stats_enabled")

PRELUDE = r"""
#include <asm/ptrace.h>
BPF_ARRAY(role_of_tgid, u16, 4194304);
BPF_PERCPU_ARRAY(counts, u64, 32 * 1024);
"""
EMPTY = "RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }"
# With READ_CS defined, the count also reads regs->cs on every call to tell
# compat syscalls apart; agent-tracer reads it once per process instead.
COUNT = r"""
static __always_inline u32 compat_offset(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef READ_CS
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	unsigned long cs = 0;

	bpf_probe_read_kernel(&cs, sizeof(cs), &regs->cs);
	return (cs == 0x23) * 512;
#else
	return 0;
#endif
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u16 *role;
	u64 *count;
	u32 slot;
	long nr;

	if (tgid >= 4194304)
		return 0;
	role = role_of_tgid.lookup(&tgid);
	if (!role || !*role)
		return 0;
	nr = ctx->args[1];
	if (nr < 0 || nr >= 512)
		return 0;
	slot = *role * 1024 + compat_offset(ctx) + nr;
	count = counts.lookup(&slot);
	if (count)
		(*count)++;
	return 0;
}
"""
COUNT_WITH_COMPAT = "#define READ_CS\n" + COUNT
EXEC_EXIT_TRACEPOINT = r"""
TRACEPOINT_PROBE(syscalls, sys_exit_execve) { return 0; }
"""
EXEC_TRACEPOINTS = EXEC_EXIT_TRACEPOINT + r"""
TRACEPOINT_PROBE(syscalls, sys_enter_execve) { return 0; }
"""

# (name, program, BPF statistics on)
VARIANTS = [
    ("empty raw sys_enter", EMPTY, False),
    ("+ tgid lookup and count", COUNT, False),
    ("+ regs->cs read (compat check)", COUNT_WITH_COMPAT, False),
    ("+ syscalls:sys_exit_execve only", COUNT_WITH_COMPAT + EXEC_EXIT_TRACEPOINT, False),
    ("+ syscalls:sys_{enter,exit}_execve", COUNT_WITH_COMPAT + EXEC_TRACEPOINTS, False),
    ("+ BPF statistics on", COUNT_WITH_COMPAT + EXEC_TRACEPOINTS, True),
    ("empty raw sys_enter, statistics on", EMPTY, True),
]


def time_getppid(role_map=None):
    """Run getppid-loop once; return ns per call. With role_map, its tgid is put in role 1 first."""
    process = subprocess.Popen(
        [str(GETPPID_LOOP), str(GETPPID_CALLS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(process.stdout.readline().split()[1])
    if role_map is not None:
        role_map[ctypes.c_int(pid)] = ctypes.c_uint16(1)

    process.stdin.write("g")
    process.stdin.flush()
    done = process.stdout.readline().split()
    process.wait()
    return int(done[2]) / GETPPID_CALLS


def measure_variant(text, statistics_on, results, name):
    """Load one variant and time a role and an outside process under it."""
    bpf = BPF(text=PRELUDE + text)
    previous = STATS_SWITCH.read_text()
    try:
        if statistics_on:
            STATS_SWITCH.write_text("1\n")
        results.setdefault((name, "role"), []).append(time_getppid(bpf["role_of_tgid"]))
        results.setdefault((name, "outside"), []).append(time_getppid())
    finally:
        STATS_SWITCH.write_text(previous)
        bpf.cleanup()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if os.geteuid() != 0 or not GETPPID_LOOP.exists():
        sys.exit("sys_enter_cost.py: run as root, after bench/run has built bench/bin/getppid-loop")

    prepare_kernel_headers()
    results = {}
    untraced = []
    for round_index in range(rounds):
        order = VARIANTS if round_index % 2 == 0 else list(reversed(VARIANTS))
        for name, text, statistics_on in order:
            untraced.append(time_getppid())
            measure_variant(text, statistics_on, results, name)
    untraced.append(time_getppid())

    baseline = statistics.median(untraced)
    print(f"{'untraced':48} {baseline:6.1f} ns/call (median of {len(untraced)})")
    for (name, where), values in results.items():
        median = statistics.median(values)
        print(
            f"{name + ', ' + where:48} {median:6.1f} ns/call  added {median - baseline:+6.1f}  "
            f"[{min(values):.1f}, {max(values):.1f}]"
        )


if __name__ == "__main__":
    main()
