"""Probe the running kernel and decide the BPF program's build flags.

Every kernel difference the program handles is decided here, once, from
tracefs and BCC, and passed to bpf/compat.h as a -D flag.
"""

import logging
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from .environment import EnvironmentProblem

log = logging.getLogger(__name__)

# Tracepoint groups and fields an operator (or a test) can make the tracer
# believe are absent, to run the code paths of other kernels here:
# AGENT_TRACER_HIDE_TRACEPOINTS=syscalls (a kernel built without
# CONFIG_FTRACE_SYSCALLS), AGENT_TRACER_HIDE_FIELDS=sched_process_exit.group_dead
# (a kernel before group_dead, such as 6.1).
HIDE_ENV = "AGENT_TRACER_HIDE_TRACEPOINTS"
HIDE_FIELDS_ENV = "AGENT_TRACER_HIDE_FIELDS"

# Tracepoints the program cannot do without.
REQUIRED = (
    ("task", "task_newtask"),
    ("sched", "sched_process_exec"),
    ("sched", "sched_process_exit"),
    ("sched", "sched_switch"),
)
SYS_ENTER = ("raw_syscalls", "sys_enter")
EXEC_ATTEMPTS = (
    ("syscalls", "sys_enter_execve"),
    ("syscalls", "sys_enter_execveat"),
    ("syscalls", "sys_exit_execve"),
    ("syscalls", "sys_exit_execveat"),
)

_FIELD = re.compile(r"field:(?:[^;]*?)\s+\**(\w+)(?:\[\d*\])?;")


def _environment_list(name):
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def hidden_groups():
    """Return the tracepoint groups hidden through AGENT_TRACER_HIDE_TRACEPOINTS."""
    return _environment_list(HIDE_ENV)


def tracepoint_exists(tracefs, group, event):
    """Tell whether tracefs lists the tracepoint group:event."""
    if group in hidden_groups():
        return False
    return (Path(tracefs) / "events" / group / event / "format").is_file()


def tracepoint_fields(tracefs, group, event):
    """Return the field names of a tracepoint, from its format file."""
    text = (Path(tracefs) / "events" / group / event / "format").read_text()
    hidden = _environment_list(HIDE_FIELDS_ENV)
    return [
        name
        for name in _FIELD.findall(text)
        if not name.startswith("common_") and f"{event}.{name}" not in hidden
    ]


def kernel_version(release=None):
    """Return the running kernel's (major, minor)."""
    match = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@dataclass
class KernelFeatures:
    """The features of the running kernel that the program uses, decided at start-up."""

    exit_group_dead: bool
    raw_tracepoint: bool
    ring_buffer: bool
    exec_attempts: bool
    warnings: list = field(default_factory=list)

    def cflags(self):
        """Return the -D flags that select the compat.h variants."""
        flags = []
        if self.exit_group_dead:
            flags.append("-DHAVE_EXIT_GROUP_DEAD")
        if self.raw_tracepoint:
            flags.append("-DUSE_RAW_TRACEPOINT")
        if not self.ring_buffer:
            flags.append("-DUSE_PERF_BUFFER")
        return flags


def probe_kernel(tracefs, bpf_class, count_syscalls=True):
    """Inspect tracefs and BCC, raise for what is missing, and return KernelFeatures."""
    for group, event in REQUIRED:
        if not tracepoint_exists(tracefs, group, event):
            raise EnvironmentProblem(
                f"the kernel has no tracepoint {group}:{event}, which agent-tracer needs; "
                "it needs a kernel with CONFIG_TRACEPOINTS (Linux 4.9 or newer)"
            )
    if count_syscalls and not tracepoint_exists(tracefs, *SYS_ENTER):
        raise EnvironmentProblem(
            "the kernel has no tracepoint raw_syscalls:sys_enter; run with --no-syscalls "
            "to trace forks, execs and exits without syscall counts"
        )

    warnings = []
    exit_fields = tracepoint_fields(tracefs, "sched", "sched_process_exit")
    # BPF_PROG_TYPE_RAW_TRACEPOINT arrived in 4.17; asking BCC reads all of kallsyms.
    raw = kernel_version() >= (4, 17)
    # "ringbuf" in AGENT_TRACER_HIDE_TRACEPOINTS runs the perf buffer path of older kernels.
    ring = kernel_version() >= (5, 8) and "ringbuf" not in hidden_groups()
    if not ring:
        warnings.append(
            "kernel older than 5.8 has no BPF ring buffer: using a perf buffer, "
            "whose per-CPU order can differ from time order"
        )

    exec_attempts = count_syscalls and all(tracepoint_exists(tracefs, *tp) for tp in EXEC_ATTEMPTS)
    if count_syscalls and not exec_attempts:
        warnings.append(
            "the kernel has no syscalls:sys_enter_execve tracepoints (CONFIG_FTRACE_SYSCALLS "
            "off): failed exec attempts and exec arguments are not recorded"
        )

    return KernelFeatures(
        exit_group_dead="group_dead" in exit_fields,
        raw_tracepoint=raw,
        ring_buffer=ring,
        exec_attempts=exec_attempts,
        warnings=warnings,
    )
