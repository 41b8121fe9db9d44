"""Constants shared with the BPF program, read from bpf/tracer.h.

The header is the only place the numbers are written down; this module
parses its `#define NAME NUMBER` lines and the members of its enums, so
Python and C cannot drift apart.
"""

import re
from functools import lru_cache
from importlib import resources

_DEFINE = re.compile(r"^#define\s+([A-Z_][A-Z0-9_]*)\s+(0x[0-9a-fA-F]+|\d+)\s*$", re.MULTILINE)
_DEFINE_EXPR = re.compile(r"^#define\s+([A-Z_][A-Z0-9_]*)\s+\((\d+)\s*\*\s*([A-Z_]+)\)\s*$", re.MULTILINE)
_ENUM_MEMBER = re.compile(r"^\s*([A-Z_][A-Z0-9_]*)\s*=\s*(\d+),", re.MULTILINE)


def bpf_source_dir():
    """Return the directory that holds the BPF sources (tracer.c and its headers)."""
    return resources.files("tracer.bpf")


@lru_cache(maxsize=None)
def header_constants():
    """Parse bpf/tracer.h into a dict of constant name -> value."""
    text = (bpf_source_dir() / "tracer.h").read_text()
    constants = {name: int(value, 0) for name, value in _DEFINE.findall(text)}

    for name, factor, other in _DEFINE_EXPR.findall(text):
        constants[name] = int(factor) * constants[other]

    for name, value in _ENUM_MEMBER.findall(text):
        constants[name] = int(value)

    return constants


def constant(name):
    """Return one constant of bpf/tracer.h, e.g. constant("EVENT_FORK")."""
    return header_constants()[name]


EVENT_KINDS = {
    "EVENT_FORK": "fork",
    "EVENT_THREAD": "thread",
    "EVENT_EXEC": "exec",
    "EVENT_EXEC_FAILED": "exec_failed",
    "EVENT_EXIT": "exit",
}

LOST_KINDS = {
    "LOST_EVENTS": "events",
    "LOST_PID_RANGE": "pid_range",
    "LOST_EXEC_STASH": "exec_stash",
    "LOST_SYSCALL_OVERFLOW": "syscall_overflow",
    "LOST_ARGV_AREA": "argv_area",
}


def event_kind_names():
    """Map each event kind number to its record type, e.g. 1 -> "fork"."""
    return {constant(c_name): name for c_name, name in EVENT_KINDS.items()}


def lost_kind_names():
    """Map each lost_counts index to the key used in the stream."""
    return {constant(c_name): name for c_name, name in LOST_KINDS.items()}
