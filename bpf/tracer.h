/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The contract between the BPF program and Python: sizes, enums and the
 * event layouts. tracer/bpfdefs.py reads the enums from this file, and
 * Python reads events through BCC's ctypes view of these structs, so
 * nothing here is declared twice.
 */
#ifndef AGENT_TRACER_H
#define AGENT_TRACER_H

#define COMM_LEN 16
#define FILENAME_LEN 256
#define ARGV_MAX 6
#define ARG_LEN 48
#define TITLE_LEN 128

/*
 * Syscall counter slots per role: native numbers in [0, ABI_SLOTS), compat
 * (i386 on x86_64) numbers in [ABI_SLOTS, 2 * ABI_SLOTS). Numbers outside
 * the table go to syscall_overflow.
 */
#define ABI_SLOTS 512
#define SYSCALL_SLOTS (2 * ABI_SLOTS)

/*
 * A role_of_tgid value is the role number in its low bits, plus the
 * process's syscall ABI once its first syscall has shown it, so that the
 * code segment is read once per process, not once per syscall. Fork keeps
 * the ABI bits (the child runs the same program); exec clears them.
 */
#define ROLE_MASK 0x0fff
#define ABI_KNOWN 0x4000
#define ABI_COMPAT 0x8000

enum event_kind {
	EVENT_FORK = 1,
	EVENT_THREAD = 2,
	EVENT_EXEC = 3,
	EVENT_EXEC_FAILED = 4,
	EVENT_EXIT = 5,
};

/* Indexes of lost_counts: what the kernel side could not record. */
enum lost_kind {
	LOST_EVENTS = 0,	/* ring or perf buffer full: event dropped */
	LOST_PID_RANGE = 1,	/* a pid at or above MAX_PID: no role slot */
	LOST_EXEC_STASH = 2,	/* exec attempt not stashed: map full */
	LOST_SYSCALL_OVERFLOW = 3,	/* out-of-table syscall not counted: map full */
	LOST_ARGV_AREA = 4,	/* a child's argv area not recorded: map full */
	LOST_KINDS = 5,
};

/*
 * fork:        pid = new process, ppid = parent process, tid = parent thread
 * thread:      pid = process, tid = new thread, ppid = creating thread
 * exec:        pid = process, tid = thread that called exec (old pid)
 * exec_failed: pid = process, tid = calling thread, err = errno
 * exit:        pid = process whose last thread ended
 */
struct event {
	__u64 ts;
	__u32 kind;
	__u32 pid;
	__u32 ppid;
	__u32 tid;
	__u16 role;
	__u16 err;
	__u32 argc;
	char comm[COMM_LEN];
};

/*
 * An exec attempt, stashed at syscall entry until its outcome is known.
 * argv contains ARGV_MAX strings of ARG_LEN bytes each, one after the
 * other, because BCC's ctypes view cannot express a two-dimensional array.
 */
struct exec_args {
	char filename[FILENAME_LEN];
	char argv[ARGV_MAX * ARG_LEN];
	__u32 argc;	/* arguments seen; ARGV_MAX + 1 when there were more */
	__s32 fd;	/* execveat's dirfd; -1 for execve */
};

/*
 * A fork event from a parent whose argv area is known carries the first
 * TITLE_LEN bytes of that area as they were at the fork. A worker that set
 * its title after its own fork (Ruby's `$0=` rewrites argv) is recognised
 * from them, even when it is gone before user space could read /proc.
 */
struct fork_event {
	struct event hdr;
	__u32 title_len;	/* bytes of the argv area; may exceed TITLE_LEN */
	__u32 pad;
	char title[TITLE_LEN];
};

/* The location of a process's argv area: arg_start and arg_end - arg_start. */
struct argv_area {
	__u64 start;
	__u64 len;
};

/* exec and exec_failed events carry the attempt after the header. */
struct exec_event {
	struct event hdr;
	struct exec_args args;
};

/* Indexes of settings: switches user space flips while tracing. */
enum setting {
	SETTING_CAPTURE_ARGV = 0,	/* 1: copy exec arguments; 0: the path only */
	SETTINGS = 1,
};

struct syscall_overflow_key {
	__u32 role;
	__s32 nr;	/* as the kernel saw it: may be negative or huge */
	__u32 compat;
};

#endif /* AGENT_TRACER_H */
