"""bench/run: compare the cost of agent-tracer with untraced runs and the other tracers, in one run."""

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from . import machine, prerequisites
from .bpfstats import measure_bpf_stats
from .build import BENCH_DIR, build_workloads
from .eventrate import measure_event_rate
from .interference import QUIET_BUSY
from .measure import Context
from .processes import BenchError
from .render import render
from .schedule import run_rounds
from .settings import WORKLOADS, settings_for
from .summary import disturbance_counts, summarize, tracer_figures
from .targets import evaluate
from .tools import all_tools

log = logging.getLogger("bench")

REPO = BENCH_DIR.parent
JSON_SCHEMA = 1
# A 1-minute load average above this before the run means others compete for the CPUs.
BUSY_LOAD = 0.5


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=(
            "Measure what agent-tracer costs next to no tracing, agent-tracer --no-syscalls, "
            "syscount-bpfcc, bpftrace, perf trace -s and strace -f -c, on the same machine in one run "
            "(needs root; takes about half an hour, or under a minute with --quick)."
        ),
    )

    scope = parser.add_argument_group("what to run")
    scope.add_argument(
        "--quick",
        action="store_true",
        help="One round of small workloads and a 3 s event test: a smoke pass, not a measurement.",
    )
    scope.add_argument(
        "--rounds",
        type=int,
        help="Rounds of every workload under every tool (default: 5, or 1 with --quick).",
    )
    scope.add_argument(
        "--events-seconds",
        type=int,
        help="Length of the event throughput test in seconds (default: 60, or 3 with --quick).",
    )
    scope.add_argument(
        "--workloads",
        help=f"Comma-separated workloads to run (default: all): {', '.join(workload.key for workload in WORKLOADS)}.",
    )
    scope.add_argument(
        "--tools",
        help="Comma-separated tools to compare with untraced runs (default: all): "
        "agent_tracer, agent_tracer_no_syscalls, syscount, bpftrace, perf_trace, strace.",
    )
    scope.add_argument(
        "--skip-extras",
        action="store_true",
        help="Skip the BPF run-time and event throughput measurements.",
    )

    setup = parser.add_argument_group("how to run it")
    setup.add_argument(
        "--tracer",
        type=Path,
        default=REPO / ".venv" / "bin" / "agent-tracer",
        help="agent-tracer executable; the python beside it runs the emulator (default: .venv/bin/agent-tracer).",
    )
    setup.add_argument(
        "--tracer-arg",
        dest="tracer_args",
        action="append",
        default=[],
        metavar="ARG",
        help="Extra argument for every `agent-tracer trace` (repeatable), e.g. --tracer-arg=--max-cpu --tracer-arg=0.",
    )
    setup.add_argument(
        "--quiet-wait",
        type=float,
        default=0,
        help="Before each run, wait up to this many seconds until no other tracing BPF program is loaded "
        "and the CPUs are idle (default: 0, no wait). For shared machines.",
    )
    setup.add_argument(
        "--quiet-busy",
        type=float,
        default=QUIET_BUSY,
        help=f"Busy fraction of all CPUs under which --quiet-wait counts the machine as idle "
        f"(default: {QUIET_BUSY:g}; 1 waits for other BPF programs only).",
    )
    setup.add_argument(
        "--no-install",
        action="store_true",
        help="Never run apt-get; tools that are missing are skipped (also when AGENT_TRACER_OFFLINE=1).",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", dest="json_path", type=Path, help="Also write the results as JSON to this file."
    )
    output.add_argument(
        "--out",
        type=Path,
        help="Directory for the tools' outputs and streams (default: bench/out/TIMESTAMP).",
    )
    output.add_argument("-v", "--verbose", action="store_true", help="Log every process started.")
    return parser


def progress(message):
    print(f"bench: [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def check_tools(tools, missing_packages):
    """Return {tool key: reason} for the tools that cannot run, and {key: state} for the report."""
    unavailable, states = {}, {}
    for tool in tools:
        reason = tool.available()
        if reason is None and set(tool.packages) & set(missing_packages):
            reason = f"package {' '.join(tool.packages)} is not installed"
        states[tool.key] = {"label": tool.label, "available": reason is None, "reason": reason}
        if reason:
            log.warning("%s: %s", tool.label, reason)
            unavailable[tool.key] = reason
    return unavailable, states


def run_extra(name, function, *arguments):
    """Run an extra measurement; an expected failure becomes {"error": message}."""
    progress(name)
    try:
        return function(*arguments)
    except BenchError as error:
        log.error("%s failed: %s", name, error)
        return {"error": str(error)}


def run(arguments):
    """Run the whole benchmark; return the JSON document."""
    if os.geteuid() != 0:
        raise BenchError(
            "bench/run must run as root: it loads BPF programs and installs packages; run it with sudo"
        )
    tracer_command = [str(arguments.tracer)]
    python = arguments.tracer.parent / "python"
    if not os.access(arguments.tracer, os.X_OK) or not os.access(python, os.X_OK):
        raise BenchError(
            f"{arguments.tracer} or {python} not found; run scripts/setup.sh or pass --tracer"
        )

    settings = settings_for(arguments.quick, arguments.rounds, arguments.events_seconds)
    out_dir = arguments.out or BENCH_DIR / "out" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()

    offline = os.environ.get("AGENT_TRACER_OFFLINE") == "1"
    missing = prerequisites.install_missing(allowed=not (arguments.no_install or offline))
    warning = prerequisites.prepare_bcc_headers()
    if warning:
        log.warning("%s", warning)
    binaries = build_workloads()
    getppid_number = read_getppid_number(binaries["getppid-loop"])

    tools = select(
        all_tools(tracer_command, getppid_number, arguments.tracer_args),
        arguments.tools,
        "tool",
        always="untraced",
    )
    workloads = select(WORKLOADS, arguments.workloads, "workload")
    unavailable, states = check_tools(tools, missing)
    context = Context(settings, binaries, str(python), out_dir)

    load_before = machine.load_average()
    if load_before[0] > BUSY_LOAD:
        log.warning(
            "load average %.2f before the run: other processes are busy, so the figures will be noisy",
            load_before[0],
        )
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    started = time.monotonic()
    runs = run_rounds(
        context, tools, workloads, unavailable, progress, arguments.quiet_wait, arguments.quiet_busy
    )
    tracer = next((tool for tool in tools if tool.key == "agent_tracer"), None)
    if arguments.skip_extras or tracer is None:
        bpf_stats = event_rate = None
    elif "agent_tracer" in unavailable:
        bpf_stats = event_rate = {"error": unavailable["agent_tracer"]}
    else:
        bpf_stats = run_extra(
            "BPF run time from kernel.bpf_stats_enabled", measure_bpf_stats, context, tracer
        )
        event_rate = run_extra(
            f"event throughput for {settings.events_seconds} s",
            measure_event_rate,
            context,
            tracer,
            settings.events_seconds,
        )

    load_after = machine.load_average()
    results = summarize(runs, tools, workloads)
    figures = tracer_figures(runs)
    return {
        "schema": JSON_SCHEMA,
        "command": sys.argv,
        "started": started_at,
        "seconds": time.monotonic() - started,
        "tracer_source": machine.tracer_source(str(python), REPO),
        "machine": dict(machine.describe_machine(), load_before=load_before, load_after=load_after),
        "settings": dataclasses.asdict(settings),
        "tools": states,
        "workloads": {workload.key: workload.label for workload in workloads},
        "tracer_args": arguments.tracer_args,
        "quiet_wait": {"seconds": arguments.quiet_wait, "busy_limit": arguments.quiet_busy},
        "results": results,
        "tracer": figures,
        "disturbance": disturbance_counts(runs),
        "bpf_stats": bpf_stats,
        "event_rate": event_rate,
        "targets": evaluate(results, figures, bpf_stats, event_rate),
        "out_dir": str(out_dir),
        "runs": runs,
    }


def select(items, wanted, what, always=None):
    """Return the items whose key is in the comma-separated `wanted` (all when None), plus `always`."""
    if wanted is None:
        return list(items)
    keys = {key.strip() for key in wanted.split(",") if key.strip()}
    known = {item.key for item in items}
    unknown = keys - known
    if unknown:
        raise BenchError(
            f"unknown {what} {', '.join(sorted(unknown))}; expected some of {', '.join(sorted(known))}"
        )
    return [item for item in items if item.key in keys or item.key == always]


def read_getppid_number(binary):
    """Return this ABI's getppid number as the workload reports it."""
    import subprocess

    result = subprocess.run(
        [str(binary), "0"], input="g", capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith("ready "):
            return int(line.split()[2])
    raise BenchError(f"{binary} printed no ready line: {result.stderr.strip()}")


class Interrupted(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so that every tool started is stopped."""


def handle_signals():
    """Make SIGINT and SIGTERM stop the run cleanly.

    A shell that starts the benchmark in the background may leave SIGINT
    ignored, and children inherit an ignored signal: the tools, which stop
    on SIGINT, would then never stop. A handled signal is reset to the
    default in every child at exec.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def terminate(number, _frame):
        raise Interrupted(signal.Signals(number).name)

    signal.signal(signal.SIGTERM, terminate)


def main(argv=None):
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="bench: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if arguments.rounds is not None and arguments.rounds < 1:
        build_parser().error(f"--rounds {arguments.rounds}: expected 1 or more")
    if arguments.quiet_wait < 0:
        build_parser().error(f"--quiet-wait {arguments.quiet_wait:g}: expected 0 or more seconds")
    if arguments.events_seconds is not None and arguments.events_seconds < 1:
        build_parser().error(f"--events-seconds {arguments.events_seconds}: expected 1 or more")

    handle_signals()
    try:
        document = run(arguments)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted):
        print("bench: interrupted; the tools started were stopped", file=sys.stderr)
        return 130

    labels = {key: state["label"] for key, state in document["tools"].items()}
    workloads = [workload for workload in WORKLOADS if workload.key in document["workloads"]]
    sys.stdout.write(render(document, workloads, labels))
    if arguments.json_path:
        arguments.json_path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        progress(f"wrote {arguments.json_path}")
    progress(f"tool outputs in {document['out_dir']}")
    return 0
