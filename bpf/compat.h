/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel differences, each decided once in Python (tracer/probes.py) from
 * the running kernel and passed in as a -D flag. Program bodies use the
 * accessors below and contain no version tests.
 */
#ifndef AGENT_TRACER_COMPAT_H
#define AGENT_TRACER_COMPAT_H

/*
 * sched_process_exit has a `bool group_dead` field on newer kernels (6.18
 * has it, Debian 12's 6.1 does not). Without it the program counts the
 * live threads of each attributed process itself, in thread_count, and the
 * thread group is dead when its last thread exits.
 */
#ifdef HAVE_EXIT_GROUP_DEAD
#define exit_group_dead(args, tgid) ((args)->group_dead)
#else
#define exit_group_dead(args, tgid) count_thread_exit(tgid)
#endif

/*
 * Raw tracepoints (4.17+) skip the perf-event buffer set-up that a regular
 * tracepoint pays on every syscall. The regular raw_syscalls:sys_enter
 * tracepoint is the fallback; it has no pt_regs, so compat syscalls cannot
 * be told apart there.
 */
#ifdef USE_RAW_TRACEPOINT
#define SYS_ENTER_PROBE RAW_TRACEPOINT_PROBE(sys_enter)
#define sys_enter_nr() ((long)ctx->args[1])
#define sys_enter_regs() ((struct pt_regs *)ctx->args[0])
#else
#define SYS_ENTER_PROBE TRACEPOINT_PROBE(raw_syscalls, sys_enter)
#define sys_enter_nr() (args->id)
#define sys_enter_regs() ((struct pt_regs *)0)
#endif

/*
 * On x86_64 a syscall made from 32-bit code enters with the i386 number.
 * Its code segment tells it apart: __USER32_CS is 0x23, __USER_CS 0x33.
 * NOTE: an `int 0x80` issued from 64-bit code is a compat syscall made with
 * the 64-bit code segment and is counted under the native table. If its
 * number is 59 or 322, it is also stashed as an exec attempt that no exit
 * consumes, until the thread's next exec.
 */
#if defined(__x86_64__) && defined(USE_RAW_TRACEPOINT)
#define USER32_CS 0x23
static __always_inline int is_compat_syscall(struct pt_regs *regs)
{
	unsigned long cs = 0;

	bpf_probe_read_kernel(&cs, sizeof(cs), &regs->cs);
	return cs == USER32_CS;
}
#else
static __always_inline int is_compat_syscall(struct pt_regs *regs)
{
	return 0;
}
#endif

/*
 * Where the sys_enter program can read a syscall's arguments and tell
 * compat syscalls apart (x86_64 with a raw tracepoint), it stashes exec
 * attempts itself. Then no syscalls:sys_enter_* tracepoint is attached:
 * the kernel runs perf's syscall handler on every syscall entry of every
 * process while one is. Elsewhere syscalls:sys_enter_execve(at) do it.
 */
#if defined(__x86_64__) && defined(USE_RAW_TRACEPOINT)
#define EXEC_ENTRY_IN_SYS_ENTER
#define NR_EXECVE 59
#define NR_EXECVEAT 322

/* Returns argument i (0 to 2) of the syscall being entered. */
static __always_inline unsigned long syscall_arg(struct pt_regs *regs, int i)
{
	unsigned long value = 0;

	if (i == 0)
		bpf_probe_read_kernel(&value, sizeof(value), &regs->di);
	else if (i == 1)
		bpf_probe_read_kernel(&value, sizeof(value), &regs->si);
	else
		bpf_probe_read_kernel(&value, sizeof(value), &regs->dx);
	return value;
}
#endif

/*
 * Kernels older than 5.8 have no BPF ring buffer: events go through a
 * per-CPU perf buffer instead, built in a per-CPU scratch slot.
 */
#ifdef USE_PERF_BUFFER
#define events_buffer_declare() BPF_PERF_OUTPUT(events)
#else
#define events_buffer_declare() BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES)
#endif

#endif /* AGENT_TRACER_COMPAT_H */
