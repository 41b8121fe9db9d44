/* SPDX-License-Identifier: Apache-2.0 */
/*
 * agent-tracer's kernel side: role inheritance at fork, per-role syscall and
 * CPU counters, and fork/thread/exec/exit events for attributed tasks.
 *
 * Only tracepoint fields (as tracefs describes them) and BPF helpers are
 * read. Nothing reads task_struct, so the program stays right when BCC
 * compiles it against headers of another kernel version.
 *
 * Built by tracer/program.py with these -D flags:
 *   MAX_PID, MAX_ROLES, RINGBUF_PAGES, EXEC_STASH_SIZE, OVERFLOW_SIZE,
 *   ARGV_AREA_SIZE, OTHER_ROLE (role number of unattributed tasks, or 0)
 *   HAVE_EXIT_GROUP_DEAD, USE_RAW_TRACEPOINT, USE_PERF_BUFFER (compat.h)
 *   COUNT_SYSCALLS      attach raw_syscalls:sys_enter
 *   TRACE_EXEC_ATTEMPTS attach syscalls:sys_{enter,exit}_execve{,at}
 */
#include <asm/ptrace.h>

#include "tracer.h"
#include "compat.h"

#define CLONE_THREAD 0x00010000

/* Maps. Role numbers are 1..MAX_ROLES-1; 0 means "not attributed". */

/* tgid -> role number and ABI bits (tracer.h). Written by task_newtask
 * (child inherits), sys_enter (ABI bits), sched_process_exec (clears the ABI
 * bits) and user space (seeding, new roots); cleared by sched_process_exit
 * when the group dies. */
BPF_ARRAY(role_of_tgid, u16, MAX_PID);

#ifndef HAVE_EXIT_GROUP_DEAD
/* tgid -> live threads, for attributed processes only. Written by
 * task_newtask and sched_process_exec, seeded by user space, decremented by
 * sched_process_exit. */
BPF_ARRAY(thread_count, u32, MAX_PID);
#endif

/* role * SYSCALL_SLOTS + slot -> syscalls entered. Written by sys_enter;
 * read and never cleared by user space, which diffs successive reads. */
BPF_PERCPU_ARRAY(syscall_counts, u64, MAX_ROLES * SYSCALL_SLOTS);

/* (role, nr, compat) -> count for numbers outside the table. Written by
 * sys_enter; read by user space. */
BPF_HASH(syscall_overflow, struct syscall_overflow_key, u64, OVERFLOW_SIZE);

/* role -> on-CPU nanoseconds. Written by sched_switch; read by user space. */
BPF_PERCPU_ARRAY(cpu_ns, u64, MAX_ROLES);

/* 0 -> time of this CPU's last context switch. Written by sched_switch. */
BPF_PERCPU_ARRAY(last_switch_ns, u64, 1);

/*
 * 0 -> the task on this CPU whose process has just ended, and its role.
 * sched_process_exit clears the role before the task's last switch out, so
 * this keeps the role for that switch. Written by sched_process_exit; read
 * and cleared by sched_switch.
 */
struct exiting_task {
	u32 tid;
	u16 role;
};
BPF_PERCPU_ARRAY(exiting_task, struct exiting_task, 1);

/* tgid -> the process's argv area (arg_start and arg_end of /proc/PID/stat).
 * Written by user space for the processes it seeds, copied to the child by
 * task_newtask (a fork without exec shares its parent's layout), deleted by
 * sched_process_exec and sched_process_exit. */
BPF_HASH(argv_area, u32, struct argv_area, ARGV_AREA_SIZE);

/* thread id -> exec attempt. Written by sys_enter_execve(at); deleted by
 * sched_process_exec (success) or sys_exit_execve(at) (failure). */
BPF_HASH(exec_attempts, u32, struct exec_args, EXEC_STASH_SIZE);

/* 0 -> scratch space for an exec attempt or event, too big for the stack. */
BPF_PERCPU_ARRAY(exec_scratch, struct exec_event, 1);

/* Never written: gives user space BCC's ctypes view of struct fork_event. */
BPF_PERCPU_ARRAY(fork_event_layout, struct fork_event, 1);

/* setting -> value. Written by user space (the CPU budget turns argument
 * capture off); read by the exec attempt hooks. */
BPF_ARRAY(settings, u32, SETTINGS);

/* lost_kind -> count. Written wherever something is dropped. */
BPF_PERCPU_ARRAY(lost_counts, u64, LOST_KINDS);

events_buffer_declare();

static __always_inline void count_lost(u32 kind)
{
	u64 *count = lost_counts.lookup(&kind);

	if (count)
		(*count)++;
}

/*
 * OTHER_ROLE is 0 unless --show-other gives the tasks outside every role a
 * role of their own, so that per-role totals add up to the machine's.
 */
#ifndef OTHER_ROLE
#define OTHER_ROLE 0
#endif

static __always_inline u16 role_of(u32 tgid)
{
	u16 *value = role_of_tgid.lookup(&tgid);
	u16 role = value ? *value & ROLE_MASK : 0;

	return role ? role : OTHER_ROLE;
}

static __always_inline u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline u32 current_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

#ifndef HAVE_EXIT_GROUP_DEAD
static __always_inline bool count_thread_exit(u32 tgid)
{
	u32 *threads = thread_count.lookup(&tgid);

	if (!threads || *threads <= 1) {
		if (threads)
			*threads = 0;
		return true;
	}
	__sync_fetch_and_add(threads, -1);
	return false;
}

static __always_inline void set_thread_count(u32 tgid, u32 value)
{
	u32 *threads = thread_count.lookup(&tgid);

	if (threads)
		*threads = value;
}

static __always_inline void add_thread(u32 tgid)
{
	u32 *threads = thread_count.lookup(&tgid);

	if (threads)
		__sync_fetch_and_add(threads, 1);
}
#else
static __always_inline void set_thread_count(u32 tgid, u32 value) {}
static __always_inline void add_thread(u32 tgid) {}
#endif

/* Event output: reserve, fill, submit. */

#ifdef USE_PERF_BUFFER
static __always_inline void *reserve_event(u32 size)
{
	u32 zero = 0;

	return exec_scratch.lookup(&zero);
}

static __always_inline void submit_event(void *ctx, void *ev, u32 size)
{
	if (events.perf_submit(ctx, ev, size) < 0)
		count_lost(LOST_EVENTS);
}
#else
static __always_inline void *reserve_event(u32 size)
{
	void *ev = events.ringbuf_reserve(size);

	if (!ev)
		count_lost(LOST_EVENTS);
	return ev;
}

/*
 * Never wake the reader: it drains the buffer on a short timer, and a
 * wake-up per event would cost more than the event itself.
 */
static __always_inline void submit_event(void *ctx, void *ev, u32 size)
{
	events.ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
}
#endif

static __always_inline void fill_event(struct event *ev, u32 kind, u32 pid,
				       u16 role)
{
	ev->ts = bpf_ktime_get_ns();
	ev->kind = kind;
	ev->pid = pid;
	ev->ppid = 0;
	ev->tid = current_tid();
	ev->role = role;
	ev->err = 0;
	ev->argc = 0;
	bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
}

/* Give the child the parent's role, and its ABI bits when they are known. */
static __always_inline void inherit_role(u32 parent, u32 child, u16 role)
{
	u16 *value = role_of_tgid.lookup(&parent);
	u16 inherited = value && (*value & ROLE_MASK) ? *value : role;

	role_of_tgid.update(&child, &inherited);
}

/*
 * Emit a fork event; when the parent's argv area is known, hand it to the
 * child and send the parent's current title along.
 */
static __always_inline int emit_fork(void *ctx, u32 parent, u32 child, u16 role)
{
	struct argv_area *area = argv_area.lookup(&parent);
	struct argv_area copy;
	struct fork_event *titled;
	struct event *ev;

	if (!area) {
		ev = reserve_event(sizeof(*ev));
		if (!ev)
			return 0;
		fill_event(ev, EVENT_FORK, child, role);
		ev->ppid = parent;
		submit_event(ctx, ev, sizeof(*ev));
		return 0;
	}

	copy = *area;
	if (argv_area.update(&child, &copy))
		count_lost(LOST_ARGV_AREA);

	titled = reserve_event(sizeof(*titled));
	if (!titled)
		return 0;
	fill_event(&titled->hdr, EVENT_FORK, child, role);
	titled->hdr.ppid = parent;
	titled->title_len = copy.len;
	titled->pad = 0;
	if (bpf_probe_read_user(titled->title, sizeof(titled->title), (void *)copy.start))
		titled->title_len = 0;
	submit_event(ctx, titled, sizeof(*titled));
	return 0;
}

/*
 * task:task_newtask fires in the parent's context for every new task once
 * copy_process() can no longer fail, with the new task's id and clone
 * flags. One hook therefore separates threads from processes and hands the role
 * to a new process before it can run.
 * format: pid_t pid; char comm[16]; u64 clone_flags (unsigned long on 6.1)
 */
TRACEPOINT_PROBE(task, task_newtask)
{
	u32 tgid = current_tgid();
	u32 child = args->pid;
	u16 role = role_of(tgid);
	struct event *ev;

	if (!role)
		return 0;

	if (args->clone_flags & CLONE_THREAD) {
		add_thread(tgid);
		ev = reserve_event(sizeof(*ev));
		if (!ev)
			return 0;
		fill_event(ev, EVENT_THREAD, tgid, role);
		ev->ppid = current_tid();
		ev->tid = child;
		submit_event(args, ev, sizeof(*ev));
		return 0;
	}

	if (child >= MAX_PID) {
		count_lost(LOST_PID_RANGE);
		return 0;
	}
	inherit_role(tgid, child, role);
	set_thread_count(child, 1);

	return emit_fork(args, tgid, child, role);
}

static __always_inline void remember_exiting_task(u16 role)
{
	u32 zero = 0;
	struct exiting_task *task = exiting_task.lookup(&zero);

	if (!task)
		return;
	task->tid = current_tid();
	task->role = role;
}

/*
 * sched:sched_process_exit fires for every exiting thread. Only the end of
 * the thread group clears the role, so that a main thread that calls
 * pthread_exit() leaves its process attributed while other threads run.
 * format: char comm[16]; pid_t pid; int prio; bool group_dead (6.18, not 6.1)
 */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u32 tgid = current_tgid();
	u16 role = role_of(tgid);
	u16 none = 0;
	struct event *ev;

	if (!role)
		return 0;

	if (!exit_group_dead(args, tgid))
		return 0;

	role_of_tgid.update(&tgid, &none);
	argv_area.delete(&tgid);
	remember_exiting_task(role);

	ev = reserve_event(sizeof(*ev));
	if (!ev)
		return 0;
	fill_event(ev, EVENT_EXIT, tgid, role);
	submit_event(args, ev, sizeof(*ev));
	return 0;
}

/* A new program may run under another ABI: let its first syscall show it. */
static __always_inline void forget_abi(u32 tgid)
{
	u16 *value = role_of_tgid.lookup(&tgid);

	if (value)
		*value &= ROLE_MASK;
}

/*
 * sched:sched_process_exec fires once an exec has succeeded, in the new
 * program's context (its comm is already the new one). It fires for compat
 * execs too, which the syscalls:* tracepoints miss.
 * format: __data_loc char[] filename; pid_t pid; pid_t old_pid
 */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 tgid = current_tgid();
	u32 old_tid = args->old_pid;
	u16 role = role_of(tgid);
	struct exec_args *attempt;
	struct exec_event *ev;
	u16 offset;

	if (!role)
		return 0;

	set_thread_count(tgid, 1);
	argv_area.delete(&tgid);
	forget_abi(tgid);

	ev = reserve_event(sizeof(*ev));
	if (!ev)
		goto out;
	fill_event(&ev->hdr, EVENT_EXEC, tgid, role);
	ev->hdr.tid = old_tid;

	attempt = exec_attempts.lookup(&old_tid);
	if (attempt) {
		bpf_probe_read_kernel(&ev->args, sizeof(ev->args), attempt);
		ev->hdr.argc = attempt->argc;
	} else {
		ev->args.argc = 0;
		ev->args.fd = -1;
		ev->args.argv[0] = 0;
	}

	/* The kernel's resolved name replaces the attempt's (e.g. /dev/fd/3). */
	offset = args->data_loc_filename & 0xFFFF;
	bpf_probe_read_kernel_str(&ev->args.filename, sizeof(ev->args.filename),
				  (void *)args + offset);
	submit_event(args, ev, sizeof(*ev));
out:
	exec_attempts.delete(&old_tid);
	return 0;
}

#ifdef COUNT_SYSCALLS
#ifdef TRACE_EXEC_ATTEMPTS
static __always_inline bool capture_argv(void)
{
	u32 key = SETTING_CAPTURE_ARGV;
	u32 *value = settings.lookup(&key);

	return value && *value;
}

/* Copy the path and the first arguments of an exec attempt into the stash. */
static __always_inline int stash_exec_attempt(const char *filename,
					      const char *const *argv, s32 fd)
{
	u32 tid = current_tid();
	u32 zero = 0;
	struct exec_event *scratch = exec_scratch.lookup(&zero);
	struct exec_args *attempt;
	const char *arg;
	int i;

	if (!scratch)
		return 0;
	attempt = &scratch->args;

	attempt->fd = fd;
	attempt->argc = 0;
	attempt->argv[0] = 0;
	bpf_probe_read_user_str(attempt->filename, sizeof(attempt->filename),
				filename);

	if (!capture_argv())
		goto stash;

#pragma unroll
	for (i = 0; i < ARGV_MAX; i++) {
		attempt->argv[i * ARG_LEN] = 0;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			goto stash;
		bpf_probe_read_user_str(&attempt->argv[i * ARG_LEN], ARG_LEN, arg);
		attempt->argc = i + 1;
	}
	/* One more pointer shows whether the list was cut. */
	if (!bpf_probe_read_user(&arg, sizeof(arg), &argv[ARGV_MAX]) && arg)
		attempt->argc = ARGV_MAX + 1;

stash:
	if (exec_attempts.update(&tid, attempt))
		count_lost(LOST_EXEC_STASH);
	return 0;
}

#ifdef EXEC_ENTRY_IN_SYS_ENTER
/* execve(filename, argv, envp) and execveat(fd, filename, argv, envp, flags) */
static __always_inline void stash_exec_entry(struct pt_regs *regs, long nr)
{
	if (nr == NR_EXECVE)
		stash_exec_attempt((const char *)syscall_arg(regs, 0),
				   (const char *const *)syscall_arg(regs, 1), -1);
	else
		stash_exec_attempt((const char *)syscall_arg(regs, 1),
				   (const char *const *)syscall_arg(regs, 2),
				   (s32)syscall_arg(regs, 0));
}
#endif
#endif /* TRACE_EXEC_ATTEMPTS */

/*
 * raw_syscalls:sys_enter fires for every syscall of every task, so the
 * unattributed case returns after one array lookup. Counts stay in per-CPU
 * slots; user space reads and diffs them once per bucket.
 */
SYS_ENTER_PROBE
{
	u32 tgid = current_tgid();
	u16 *value, role;
	long nr;
	u32 compat, slot;
	u64 *count;

	value = role_of_tgid.lookup(&tgid);
	if (!value)
		return 0;
	role = *value & ROLE_MASK;
	if (!role)
		role = OTHER_ROLE;
	if (!role || role >= MAX_ROLES)
		return 0;

	nr = sys_enter_nr();
	if (*value & ABI_KNOWN) {
		compat = !!(*value & ABI_COMPAT);
	} else {
		compat = is_compat_syscall(sys_enter_regs());
		if (*value & ROLE_MASK)
			*value |= ABI_KNOWN | (compat ? ABI_COMPAT : 0);
	}

#if defined(TRACE_EXEC_ATTEMPTS) && defined(EXEC_ENTRY_IN_SYS_ENTER)
	if (!compat && (nr == NR_EXECVE || nr == NR_EXECVEAT))
		stash_exec_entry(sys_enter_regs(), nr);
#endif

	if (nr >= 0 && nr < ABI_SLOTS) {
		slot = role * SYSCALL_SLOTS + compat * ABI_SLOTS + nr;
		count = syscall_counts.lookup(&slot);
		if (count)
			(*count)++;
		return 0;
	}

	struct syscall_overflow_key key = {
		.role = role, .nr = nr, .compat = compat
	};
	u64 one = 1;

	count = syscall_overflow.lookup(&key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	if (syscall_overflow.insert(&key, &one))
		count_lost(LOST_SYSCALL_OVERFLOW);
	return 0;
}
#endif /* COUNT_SYSCALLS */

#ifdef TRACE_EXEC_ATTEMPTS
/*
 * Exec attempts: the entry (the sys_enter program, or these tracepoints)
 * stashes the path and arguments; the outcome is sched_process_exec
 * (success) or a negative return here. A successful execveat can return
 * through sys_exit_execve, so the two exits share one handler that keys on
 * the thread, never on the syscall.
 */
#ifndef EXEC_ENTRY_IN_SYS_ENTER
/* format: const char *filename; const char *const *argv; ... */
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
	if (!role_of(current_tgid()))
		return 0;
	return stash_exec_attempt(args->filename, args->argv, -1);
}

/* format: int fd; const char *filename; const char *const *argv; ... */
TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
	if (!role_of(current_tgid()))
		return 0;
	return stash_exec_attempt(args->filename, args->argv, args->fd);
}
#endif /* !EXEC_ENTRY_IN_SYS_ENTER */

static __always_inline int finish_exec_attempt(void *ctx, long ret)
{
	u32 tid = current_tid();
	u16 role = role_of(current_tgid());
	struct exec_args *attempt = exec_attempts.lookup(&tid);
	struct exec_event *ev;

	if (!attempt)
		return 0;

	if (ret >= 0 || !role)
		goto out;

	ev = reserve_event(sizeof(*ev));
	if (!ev)
		goto out;
	fill_event(&ev->hdr, EVENT_EXEC_FAILED, current_tgid(), role);
	ev->hdr.err = -ret;
	ev->hdr.argc = attempt->argc;
	bpf_probe_read_kernel(&ev->args, sizeof(ev->args), attempt);
	submit_event(ctx, ev, sizeof(*ev));
out:
	exec_attempts.delete(&tid);
	return 0;
}

/* format: long ret */
TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
	return finish_exec_attempt(args, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
	return finish_exec_attempt(args, args->ret);
}
#endif /* TRACE_EXEC_ATTEMPTS */

/*
 * Returns the role of the task switching out. A task whose process has ended
 * runs the rest of its exit until this switch, and that time is its role's.
 */
static __always_inline u32 switching_role(void)
{
	u32 zero = 0;
	struct exiting_task *exiting = exiting_task.lookup(&zero);

	if (exiting && exiting->tid) {
		u32 tid = exiting->tid;

		exiting->tid = 0;
		if (tid == current_tid())
			return exiting->role;
	}
	return role_of(current_tgid());
}

/*
 * sched:sched_switch runs in the context of the task switching out, so the
 * time since this CPU's previous switch is that task's time on the CPU.
 */
TRACEPOINT_PROBE(sched, sched_switch)
{
	u32 zero = 0;
	u64 now = bpf_ktime_get_ns();
	u64 *last = last_switch_ns.lookup(&zero);
	u64 delta, *total;
	u32 role;

	if (!last)
		return 0;
	delta = *last ? now - *last : 0;
	*last = now;
	if (!delta)
		return 0;

	role = switching_role();
	if (!role)
		return 0;

	total = cpu_ns.lookup(&role);
	if (total)
		*total += delta;
	return 0;
}
