"""The workloads of a benchmark run and their sizes, full and --quick."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    kind: str  # "getppid", "spawn" or "demo"
    in_role: bool


WORKLOADS = (
    Workload("getppid_role", "(a) getppid in a role process", "getppid", in_role=True),
    Workload("getppid_other", "(b) getppid outside every role", "getppid", in_role=False),
    Workload("spawn_role", "(c) fork+exec+wait of /bin/true in a role", "spawn", in_role=True),
    Workload("demo", "(d) demo scenario (OpsWorks emulator)", "demo", in_role=True),
)


@dataclass(frozen=True)
class Settings:
    """Sizes of the workloads; the defaults are the full benchmark."""

    rounds: int = 5
    getppid_count: int = 2_000_000
    # strace and perf trace stop or wake up on every syscall: fewer calls
    # keep their runs short, and the comparison is per call anyway.
    getppid_count_slow: int = 20_000
    spawn_count: int = 2_000
    demo_speed: float = 20.0
    demo_duration: float = 600.0
    demo_configure_at: float | None = 300.0
    demo_seed: int = 1
    events_seconds: int = 60
    bpf_stats_spawns: int = 2_000
    bpf_stats_syscalls: int = 2_000_000


QUICK = Settings(
    rounds=1,
    getppid_count=200_000,
    getppid_count_slow=2_000,
    spawn_count=100,
    demo_duration=20.0,
    demo_configure_at=None,
    events_seconds=3,
    bpf_stats_spawns=100,
    bpf_stats_syscalls=200_000,
)

SLOW_TOOLS = ("strace", "perf_trace")


def settings_for(quick, rounds=None, events_seconds=None):
    """Return the full or quick settings, with the overrides given on the command line."""
    settings = QUICK if quick else Settings()
    if rounds is not None:
        settings = replace(settings, rounds=rounds)
    if events_seconds is not None:
        settings = replace(settings, events_seconds=events_seconds)
    return settings


def getppid_count(settings, tool_key, workload):
    """Return the number of getppid calls for a tool: fewer for the slow tools inside the traced tree."""
    if workload.in_role and tool_key in SLOW_TOOLS:
        return settings.getppid_count_slow
    return settings.getppid_count
