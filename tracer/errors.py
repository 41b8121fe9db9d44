"""Errors that agent-tracer expects and reports as one line, without a traceback."""

from __future__ import annotations


class TracerError(Exception):
    """Base of every expected error; its message states what failed and what to do.

    The command line prints the message and exits with `exit_code`.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class StreamError(TracerError):
    """An output stream cannot be created or written, or an input stream cannot be read."""
