"""The lines `trace` prints on stderr while it runs."""

import time
from collections import Counter

EVENT_COUNTS = {"fork": "forks", "exec": "execs", "exec_failed": "failed", "exit": "exits"}


class LiveSummary:
    """Prints the start line, then one line per active role for each bucket.

    It observes every record the tracer writes: events are counted per role
    until the bucket that closes them arrives.
    """

    def __init__(self, stream):
        self.stream = stream
        self.started_at = None
        self.events = {}

    def started(self, rules, output, duration):
        """Print what is traced and how to stop."""
        self.started_at = time.monotonic()
        roles = ", ".join(rule.name for rule in rules.rules)
        preset = f"preset {rules.preset}: " if rules.preset else ""
        until = f"for {duration:g} s or until Ctrl-C" if duration else "until Ctrl-C"
        target = f", writing {output}" if output else ""
        print(f"Tracing {preset}{roles}{target}; {until}.", file=self.stream, flush=True)

    def observe(self, record):
        """Count an event, or print the lines of a closed bucket."""
        kind = record.get("type")
        if kind in EVENT_COUNTS:
            self.events.setdefault(record["role"], Counter())[EVENT_COUNTS[kind]] += 1
        elif kind == "bucket":
            self._print_bucket(record)

    def _print_bucket(self, record):
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        seconds = (record["end"] - record["start"]) / 1e9
        roles = set(record["roles"]) | set(self.events)
        for role in sorted(roles):
            entry = record["roles"].get(role, {})
            counts = self.events.get(role, Counter())
            syscalls = sum(entry.get("syscalls", {}).values()) + sum(entry.get("syscalls_compat", {}).values())
            cpu = entry.get("cpu_ns", 0) / 1e9 / seconds * 100 if seconds else 0.0
            print(
                f"[{elapsed:6.1f}s] {role[:16]:<16} forks {counts['forks']:>5} execs {counts['execs']:>5} "
                f"syscalls {syscalls:>8} cpu {cpu:5.1f}%",
                file=self.stream,
                flush=True,
            )
        self.events = {}
