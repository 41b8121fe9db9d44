#!/usr/bin/python3
"""Check that BCC compiles, loads and attaches a program on this kernel.

Run by the VM test stage before agent-tracer is installed, so that a broken
BCC or kernel-header set-up shows as its own failure rather than as a tracer
failure. It counts the forks of this process on sched:sched_process_fork,
forks a known number of children and checks the exact count. It prints the
compile time, because BCC's clang step is what dominates under emulation.
"""

import os
import sys
import time

from bcc import BPF

FORKS = 3

PROGRAM = r"""
BPF_ARRAY(forks, u64, 1);

/* sched_process_fork fires in the parent's context, so the current tgid is
 * the forking process. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u32 key = 0;
	u64 *count;

	if (bpf_get_current_pid_tgid() >> 32 != TARGET_TGID)
		return 0;

	count = forks.lookup(&key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}
"""


def main() -> int:
    start = time.monotonic()
    bpf = BPF(text=PROGRAM, cflags=[f"-DTARGET_TGID={os.getpid()}"])
    print(f"bcc-smoke: compiled, loaded and attached in {time.monotonic() - start:.1f} s")

    for _ in range(FORKS):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    count = bpf["forks"][0].value
    bpf.cleanup()

    if count != FORKS:
        print(f"bcc-smoke: counted {count} forks, expected {FORKS}", file=sys.stderr)
        return 1

    print(f"bcc-smoke: counted exactly {FORKS} forks on kernel {os.uname().release}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
