"""Emulated time: seconds of the real agent's life, run ``speed`` times faster."""

import dataclasses
import datetime
import os
import select
import time
from typing import Sequence

NS_PER_SECOND = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class EmulatedClock:
    """Map emulated seconds since an origin to CLOCK_MONOTONIC and to wall-clock time.

    ``origin_ns`` is CLOCK_MONOTONIC at emulated second 0 and ``origin_wall_ns``
    the wall-clock time (time.time_ns) at the same moment.
    """

    origin_ns: int
    origin_wall_ns: int
    speed: float

    @classmethod
    def start_now(cls, speed: float) -> "EmulatedClock":
        """Return a clock whose emulated second 0 is now."""
        return cls(origin_ns=time.monotonic_ns(), origin_wall_ns=time.time_ns(), speed=speed)

    def deadline_ns(self, emulated_seconds: float) -> int:
        """Return the CLOCK_MONOTONIC time at which ``emulated_seconds`` is reached."""
        return self.origin_ns + round(emulated_seconds * NS_PER_SECOND / self.speed)

    def elapsed(self) -> float:
        """Return the emulated seconds since the origin."""
        return (time.monotonic_ns() - self.origin_ns) * self.speed / NS_PER_SECOND

    def emulated_datetime(self, emulated_seconds: float) -> datetime.datetime:
        """Return the emulated wall-clock time, in UTC, of ``emulated_seconds``.

        The agent's log shows emulated times so that it reads like a log of
        the real agent: wall-clock time at the origin plus emulated seconds.
        """
        wall_seconds = self.origin_wall_ns / NS_PER_SECOND + emulated_seconds
        return datetime.datetime.fromtimestamp(wall_seconds, tz=datetime.timezone.utc)


def wait_readable(descriptors: Sequence[int], deadline_ns: int) -> list[int]:
    """Wait until a descriptor is readable or CLOCK_MONOTONIC reaches ``deadline_ns``.

    Returns the readable descriptors, or an empty list at the deadline. Uses
    select, so no thread or timer signal is involved.
    """
    while True:
        timeout = max(deadline_ns - time.monotonic_ns(), 0) / NS_PER_SECOND
        readable, _, _ = select.select(list(descriptors), [], [], timeout)
        if readable:
            return readable

        # select may return a little before the deadline because it rounds.
        if time.monotonic_ns() >= deadline_ns:
            return []


def writers_closed(descriptor: int) -> bool:
    """Return True when the pipe read end ``descriptor`` is readable right now.

    The control pipes carry no data after the start line, so readable means
    that every writer closed its end.
    """
    readable, _, _ = select.select([descriptor], [], [], 0)
    return bool(readable)


def read_line(descriptor: int) -> str:
    """Read one line from a pipe byte by byte, so nothing after it is consumed.

    Returns an empty string at end of file.
    """
    data = bytearray()
    while True:
        byte = os.read(descriptor, 1)
        if not byte:
            return ""
        if byte == b"\n":
            return data.decode()
        data += byte
