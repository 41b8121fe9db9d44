"""Small, fast readers of /proc for the start-up scan and the periodic rescans."""

import os

from .roles import cmdline_text

PROC = "/proc"


def read_cmdline(pid, proc=PROC):
    """Return the command line of pid as one line, or None if it is gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as source:
            return cmdline_text(source.read())
    except OSError:
        return None


def read_comm(pid, proc=PROC):
    """Return the comm of pid, or None if it is gone."""
    try:
        with open(f"{proc}/{pid}/comm", "rb") as source:
            return source.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return None


def read_stat(pid, proc=PROC):
    """Return (ppid, num_threads, (arg_start, arg_end)) of pid from /proc/PID/stat, or None.

    The argv area's user addresses read as 0 for kernel threads and for
    processes whose memory this process may not inspect; None means the
    process is gone.
    """
    try:
        with open(f"{proc}/{pid}/stat", "rb") as source:
            text = source.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    # Field n of proc(5) is fields[n - 3].
    fields = text[text.rindex(b")") + 2 :].split()
    area = (int(fields[45]), int(fields[46])) if len(fields) > 46 else (0, 0)
    return int(fields[1]), int(fields[17]), area


def list_pids(proc=PROC):
    """Return the pids of all processes (thread group leaders) in /proc."""
    return [int(name) for name in os.listdir(proc) if name.isdigit()]
