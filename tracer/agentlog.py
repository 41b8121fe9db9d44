"""Lifecycle markers from an agent's command log, read while tracing.

The OpsWorks agent's process_command worker logs each command it runs
(/var/log/aws/opsworks/opsworks-agent.process_command.log), in this shape:

    [2024-03-01 10:15:02]  INFO [opsworks-agent(1234)]: Decoded RNA for command ID: configure sent at 2024-03-01 10:15:00 UTC
    [2024-03-01 10:16:40]  INFO [opsworks-agent(1234)]: process_command: [success] Command "ID" for "configure" sent at 2024-03-01 10:15:00 UTC processed with exitcode 0. (83.373945245 sec)

The first line starts a command, the second ends it. Markers are stamped
with the time the tracer read the line, so that they fall in order with
the kernel's events; the log's own (local, one-second) time goes in their
detail.
"""

import logging
import os
import re

log = logging.getLogger(__name__)

DEFAULT_AGENT_LOGS = {
    "opsworks": "/var/log/aws/opsworks/opsworks-agent.process_command.log",
}

_LINE = re.compile(r"^\[(?P<time>[^\]]+)\]\s+(?P<level>[A-Z]+)\s+\[[^\]]*\]:\s(?P<message>.*)$")
_START = re.compile(r"Decoded RNA for command (?P<id>\S+): (?P<type>[\w-]+) sent at (?P<sent>.+? UTC)")
_END = re.compile(
    r'\[(?P<outcome>\w+)\] Command "(?P<id>[^"]+)" for "(?P<type>[^"]+)" sent at (?P<sent>.+? UTC) '
    r"processed with exitcode (?P<code>-?\d+)\. \((?P<seconds>[\d.]+) sec\)"
)

# A line longer than this is not an agent line: it is skipped, never kept.
MAX_LINE = 64 * 1024


def parse_line(line):
    """Return the command start or end a log line reports, as a dict, or None."""
    found = _LINE.match(line.rstrip("\n"))
    if not found:
        return None
    message = found.group("message")

    start = _START.search(message)
    if start:
        return {
            "phase": "start",
            "id": start.group("id"),
            "name": start.group("type"),
            "detail": {"log_time": found.group("time"), "sent_at": start.group("sent")},
        }

    end = _END.search(message)
    if end:
        return {
            "phase": "end",
            "id": end.group("id"),
            "name": end.group("type"),
            "detail": {
                "log_time": found.group("time"),
                "sent_at": end.group("sent"),
                "outcome": end.group("outcome"),
                "exit_code": int(end.group("code")),
                "seconds": float(end.group("seconds")),
            },
        }
    return None


class AgentLogTail:
    """Follows a log file from its end, across rotation and truncation."""

    def __init__(self, path):
        self.path = path
        self.handle = None
        self.inode = None
        self.partial = ""
        self._open(at_end=True)

    def _open(self, at_end):
        try:
            handle = open(self.path, "r", encoding="utf-8", errors="replace")
        except OSError:
            return
        if at_end:
            handle.seek(0, os.SEEK_END)
        self.handle = handle
        self.inode = os.fstat(handle.fileno()).st_ino
        self.partial = ""

    def _reopen_if_rotated(self):
        try:
            status = os.stat(self.path)
        except OSError:
            return
        if self.handle is None:
            self._open(at_end=False)
        elif status.st_ino != self.inode or status.st_size < self.handle.tell():
            log.info("agent log %s was rotated or truncated; reading it from the start", self.path)
            self.handle.close()
            self._open(at_end=False)

    def read_entries(self):
        """Return the commands started or ended in lines appended since the last call."""
        self._reopen_if_rotated()
        if self.handle is None:
            return []
        entries = []
        while True:
            chunk = self.handle.readline()
            if not chunk:
                break
            if not chunk.endswith("\n"):
                self.partial += chunk
                if len(self.partial) > MAX_LINE:
                    self.partial = ""
                break
            line, self.partial = self.partial + chunk, ""
            if len(line) > MAX_LINE:
                continue
            entry = parse_line(line)
            if entry:
                entries.append(entry)
        return entries

    def close(self):
        if self.handle is not None:
            self.handle.close()


def marker_records(entries, now_ns):
    """Turn parsed log entries into stream marker records stamped now_ns."""
    return [
        {"type": "marker", "ts": now_ns, "name": entry["name"], "phase": entry["phase"], "id": entry["id"], "detail": entry["detail"]}
        for entry in entries
    ]
