"""The lines `trace` prints on stderr while it runs."""

import time


class LiveSummary:
    """Prints the start line, then one line per role per bucket."""

    def __init__(self, stream):
        self.stream = stream
        self.started_at = None

    def started(self, rules, output, duration):
        """Print what is traced and how to stop."""
        self.started_at = time.monotonic()
        roles = ", ".join(rule.name for rule in rules.rules)
        preset = f"preset {rules.preset}: " if rules.preset else ""
        until = f"for {duration:g} s or until Ctrl-C" if duration else "until Ctrl-C"
        target = f", writing {output}" if output else ""
        print(f"Tracing {preset}{roles}{target}; {until}.", file=self.stream, flush=True)

    def bucket(self, record):
        """Print one line per active role for a closed bucket."""
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        seconds = (record["end"] - record["start"]) / 1e9
        for role, entry in sorted(record["roles"].items()):
            syscalls = sum(entry.get("syscalls", {}).values()) + sum(entry.get("syscalls_compat", {}).values())
            cpu = entry.get("cpu_ns", 0) / 1e9 / seconds * 100 if seconds else 0.0
            print(f"[{elapsed:7.1f}s] {role:<18} syscalls {syscalls:>9}  cpu {cpu:5.1f}%", file=self.stream, flush=True)
