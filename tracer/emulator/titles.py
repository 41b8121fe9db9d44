"""Set a process title the way Ruby's ``$0=`` does on Linux.

Ruby 3.1 (Debian 12) overwrites the process's own argv area with the new
title and NUL padding. ``/proc/PID/cmdline`` then reads as the title followed
only by NULs, and ``/proc/PID/comm`` keeps the interpreter's name. The area
cannot grow, so a process that wants a long title must start with a long
enough command line (a padding argument, for example).
"""

import os

# Fields 48 and 49 of /proc/PID/stat (see proc(5)), counted from 1.
ARG_START_FIELD = 48
ARG_END_FIELD = 49

# /proc/PID/stat fields are counted from 1. The text after the closing
# parenthesis of field 2 (comm) starts with field 3.
FIRST_FIELD_AFTER_COMM = 3


class TitleError(Exception):
    """A title that cannot be set in this process."""


def parse_argv_area(stat: bytes) -> tuple[int, int]:
    """Return (arg_start, arg_end), the argv area's bounds, from /proc/PID/stat text.

    comm may contain spaces and parentheses, so the fields are split after the
    last closing parenthesis.
    """
    close = stat.rfind(b")")
    if close < 0:
        raise TitleError("invalid /proc/PID/stat text: no closing parenthesis after comm")
    fields = stat[close + 1 :].split()

    try:
        arg_start = int(fields[ARG_START_FIELD - FIRST_FIELD_AFTER_COMM])
        arg_end = int(fields[ARG_END_FIELD - FIRST_FIELD_AFTER_COMM])
    except (IndexError, ValueError) as error:
        raise TitleError(f"invalid /proc/PID/stat text: no arg_start/arg_end fields ({error})")

    # The kernel shows 0 for both when the reader may not inspect the process.
    if arg_start == 0 or arg_end <= arg_start:
        raise TitleError(f"invalid argv area in /proc/PID/stat: {arg_start:#x}..{arg_end:#x}")
    return arg_start, arg_end


def read_argv_area() -> tuple[int, int]:
    """Return (arg_start, arg_end) of the calling process."""
    with open("/proc/self/stat", "rb") as stat_file:
        return parse_argv_area(stat_file.read())


def argv_area_size() -> int:
    """Return the size in bytes of the calling process's argv area."""
    arg_start, arg_end = read_argv_area()
    return arg_end - arg_start


def set_title(title: str) -> None:
    """Overwrite the calling process's argv area with ``title`` and NUL padding.

    comm is not changed. Raises TitleError when the title contains a NUL byte
    or does not fit the argv area with its terminating NUL.
    """
    encoded = title.encode()
    if b"\0" in encoded:
        raise TitleError(f"invalid process title {title!r}: it contains a NUL byte")

    arg_start, arg_end = read_argv_area()
    size = arg_end - arg_start
    if len(encoded) + 1 > size:
        raise TitleError(
            f"process title {title!r} needs {len(encoded) + 1} bytes but the argv area has "
            f"{size}. Start the process with a longer command line, e.g. a padding argument"
        )

    # The last byte of the area stays NUL: if it were not, the kernel would
    # read /proc/PID/cmdline on into the environment (setproctitle mode).
    padded = encoded + b"\0" * (size - len(encoded))
    memory = os.open("/proc/self/mem", os.O_WRONLY)
    try:
        written = os.pwrite(memory, padded, arg_start)
    finally:
        os.close(memory)
    if written != size:
        raise TitleError(f"short write to /proc/self/mem: {written} of {size} bytes")
