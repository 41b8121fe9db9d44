"""The command log of the OpsWorks agent's process_command worker, in the agent's format.

The real agent writes /var/log/aws/opsworks/opsworks-agent.process_command.log
with lines of this shape (times are local, "sent at" times UTC)::

    [2024-03-01 10:15:02]  INFO [opsworks-agent(1234)]: process_command: Processing command
"""

import datetime
from typing import Optional, TextIO

from .clock import EmulatedClock

LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
UTC_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def format_line(when: datetime.datetime, pid: int, message: str) -> str:
    """Return one log line, with ``when`` shown in the local time zone."""
    local = when.astimezone()
    return f"[{local.strftime(LOCAL_TIME_FORMAT)}]  INFO [opsworks-agent({pid})]: {message}\n"


def poll_message() -> str:
    """Return the message of the poll line written every 30 emulated seconds."""
    return "process_command: Polling for commands: nothing to process"


def decoded_message(command_id: str, command_type: str, sent_at: datetime.datetime) -> str:
    """Return the message that starts a command."""
    sent = sent_at.astimezone(datetime.timezone.utc).strftime(UTC_TIME_FORMAT)
    return f"Decoded RNA for command {command_id}: {command_type} sent at {sent}"


def processing_message() -> str:
    """Return the message written when the agent starts to run a command."""
    return "process_command: Processing command"


def chef_finished_message(exit_code: int, seconds: float) -> str:
    """Return the message written when a Chef run ends."""
    return f"Chef: Finished running chef solo with exitcode {exit_code}. ({seconds:.9f} sec)"


def processed_message(
    command_id: str,
    command_type: str,
    sent_at: datetime.datetime,
    exit_code: int,
    seconds: float,
) -> str:
    """Return the message that ends a command."""
    outcome = "success" if exit_code == 0 else "failed"
    sent = sent_at.astimezone(datetime.timezone.utc).strftime(UTC_TIME_FORMAT)
    return (
        f'process_command: [{outcome}] Command "{command_id}" for "{command_type}" sent at '
        f"{sent} processed with exitcode {exit_code}. ({seconds:.9f} sec)"
    )


class AgentLog:
    """The command log of one process_command worker, or nothing when no path is set.

    Line times are emulated (see EmulatedClock.emulated_datetime), so a
    10-minute scenario reads as 10 minutes of log whatever the speed.
    """

    def __init__(self, path: Optional[str], pid: int, clock: EmulatedClock):
        self.pid = pid
        self.clock = clock
        self.output: Optional[TextIO] = None
        if path is not None:
            self.output = open(path, "a", buffering=1)

    def write(self, emulated_seconds: float, message: str) -> None:
        """Append ``message`` with the emulated time ``emulated_seconds``."""
        if self.output is None:
            return
        when = self.clock.emulated_datetime(emulated_seconds)
        self.output.write(format_line(when, self.pid, message))

    def close(self) -> None:
        """Close the log file."""
        if self.output is not None:
            self.output.close()
            self.output = None
