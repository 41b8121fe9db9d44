"""The text report of a benchmark run."""

MIB = 1024 * 1024


def fmt_range(summary, scale=1.0, signed=False, digits=0):
    """Format {"median", "min", "max"} as "median [min, max]" after dividing by scale."""
    if not summary:
        return "-"
    sign = "+" if signed else ""
    values = [summary[key] / scale for key in ("median", "min", "max")]
    return "{0:{s}.{d}f} [{1:{s}.{d}f}, {2:{s}.{d}f}]".format(*values, s=sign, d=digits)


def fmt_count(summary):
    return f"n={summary['n']}" if summary else ""


def fmt_median(summary, scale=1.0, digits=2, suffix=""):
    if not summary:
        return "-"
    return f"{summary['median'] / scale:.{digits}f}{suffix}"


def fmt_seen(seen):
    if not seen:
        return "-"
    return ",".join(str(value) for value in seen)


def gated_section(workload, summaries, labels, unit, scale, digits):
    """Return the lines of one getppid or spawn workload."""
    untraced = summaries["untraced"]
    counts = ", ".join(f"{count:,}" for count in untraced.get("operations", [])) or "-"
    lines = [
        f"{workload.label}: {counts} operations per untraced run; untraced {fmt_range(untraced['per_operation_ns'], scale, digits=digits)} {unit}",
        f"  {'tool':<28} {'ops/run':>9}  {'added ' + unit + ' median [min, max]':<34} {'runs':>5} {'x untraced':>10}  {'seen':>9}  {'start-up s':>10}",
    ]
    for key, summary in summaries.items():
        if key == "untraced":
            continue
        if summary["errors"] and not summary.get("added_ns"):
            lines.append(f"  {labels[key]:<28} error: {summary['errors'][0]}")
            continue
        operations = ",".join(f"{count:,}" for count in summary["operations"])
        label = labels[key] + ("*" if summary["basis"] == "all" else "")
        lines.append(
            f"  {label:<28} {operations:>9}  {fmt_range(summary['added_ns'], scale, signed=True, digits=digits):<34} "
            f"{fmt_count(summary['added_ns']):>5} "
            f"{fmt_median(summary['ratio'], suffix='x'):>10}  {fmt_seen(summary['seen']):>9}  "
            f"{fmt_median(summary['startup_seconds']):>10}"
        )
    return lines


def demo_section(workload, summaries, labels):
    untraced = summaries["untraced"]
    lines = [
        (
            f"{workload.label}: untraced wall {fmt_range(untraced['wall_seconds'], digits=2)} s, "
            f"emulator CPU {fmt_median(untraced['workload_cpu_seconds'])} s"
        ),
        (
            f"  {'tool':<28} {'wall s':>7} {'x untraced':>10} {'tool CPU s':>10} {'tool CPU %':>10} "
            f"{'RSS MiB':>7} {'peak MiB':>8} {'emulator CPU s':>14} {'forks seen':>10}"
        ),
    ]
    for key, summary in summaries.items():
        if key == "untraced":
            continue
        if summary["errors"] and not summary.get("wall_seconds"):
            lines.append(f"  {labels[key]:<28} error: {summary['errors'][0]}")
            continue
        label = labels[key] + ("*" if summary["basis"] == "all" else "")
        lines.append(
            f"  {label:<28} {fmt_median(summary['wall_seconds']):>7} {fmt_median(summary['wall_ratio'], digits=3, suffix='x'):>10} "
            f"{fmt_median(summary['tool_cpu_seconds']):>10} {fmt_median(summary['tool_cpu_percent']):>10} "
            f"{fmt_median(summary['tool_rss_bytes'], MIB, 0):>7} {fmt_median(summary['tool_peak_rss_bytes'], MIB, 0):>8} "
            f"{fmt_median(summary['workload_cpu_seconds']):>14} {fmt_seen(summary['seen']):>10}"
        )
    expected = fmt_seen(untraced.get("expected_forks"))
    lines.append(f"  (the emulator's ground truth: {expected} process forks per run)")
    return lines


def extras_section(tracer, bpf_stats, event_rate):
    lines = ["agent-tracer itself:"]
    full = tracer.get("agent_tracer", {})
    lines.append(
        f"  start-up to the 'Tracing' line: {fmt_range(full.get('startup_seconds'), digits=2)} s"
    )
    lines.append(
        f"  RSS while tracing: {fmt_range(full.get('rss_bytes'), MIB)} MiB; peak (VmHWM): {fmt_range(full.get('peak_rss_bytes'), MIB)} MiB"
    )
    if bpf_stats and "error" not in bpf_stats:
        lines.append(
            f"  BPF run time (kernel.bpf_stats_enabled): {bpf_stats['bpf_ns_per_spawn'] / 1000:.2f} µs per spawn over "
            f"{bpf_stats['spawns']:,} spawns; {bpf_stats['bpf_ns_per_getppid']:.0f} ns per getppid over {bpf_stats['getppid_calls']:,} calls"
        )
        for name, entry in sorted(bpf_stats["during_spawns"]["programs"].items()):
            per_run = (
                f"{entry['ns_per_run']:.0f} ns/run"
                if entry["ns_per_run"] is not None
                else "not run"
            )
            lines.append(
                f"    {name:<40} {entry['run_cnt']:>10,} runs  {entry['run_time_ns'] / 1e6:>9.2f} ms  {per_run}"
            )
    elif bpf_stats:
        lines.append(f"  BPF run time: error: {bpf_stats['error']}")
    if event_rate and "error" not in event_rate:
        events = event_rate["events"]
        lines.append(
            f"  events: {event_rate['spawners']} spawners for {event_rate['seconds']:.1f} s: {event_rate['spawns']:,} spawns, "
            f"{event_rate['events_total']:,} events ({event_rate['events_per_second']:,.0f}/s; forks {events['process_forks']:,}, "
            f"execs {events['execs']:,}, exits {events['exits']:,}), lost events {event_rate['lost'].get('events', 0)}, "
            f"tracer CPU {event_rate['tracer_cpu_percent']:.1f}%"
        )
    elif event_rate:
        lines.append(f"  events: error: {event_rate['error']}")
    return lines


def targets_section(targets):
    lines = ["Targets:"]
    for entry in targets:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[entry["met"]]
        lines.append(f"  {verdict:<6} {entry['target']}: {entry['measured']}")
    return lines


def header_section(document):
    """Return the lines that describe the run: machine, load, method, disturbances."""
    machine = document["machine"]
    lines = [
        (
            f"agent-tracer cost benchmark: {document['settings']['rounds']} round(s), {machine['nproc']} CPUs, "
            f"kernel {machine['kernel']}, {machine['cpu_model']}"
        ),
        f"Load average (1 min) before and after: {machine['load_before'][0]:.2f}, {machine['load_after'][0]:.2f}",
        "Added cost = traced run minus the untraced runs beside it; medians over rounds, [min, max].",
        "Runs that started with another tracing BPF program loaded or on a busy machine are left out",
        "where clean runs of the same pair exist; a '*' marks a row computed from all runs.",
    ]

    disturbance = document["disturbance"]
    if disturbance["runs_with_foreign_bpf_programs"] or disturbance["runs_started_not_quiet"]:
        lines.append(
            f"WARNING: {disturbance['runs_with_foreign_bpf_programs']} of {disturbance['runs']} runs started with "
            f"other tracing BPF programs loaded, {disturbance['runs_started_not_quiet']} on a busy machine: "
            "their figures include someone else's cost."
        )
    if document["tracer_args"]:
        lines.append(f"agent-tracer ran with: {' '.join(document['tracer_args'])}")
    return lines


def render(document, workloads, labels):
    """Return the whole text report."""
    lines = header_section(document)
    lines.append("")
    for tool_key, state in document["tools"].items():
        if not state["available"]:
            lines.append(f"{labels[tool_key]}: not run: {state['reason']}")

    for workload in workloads:
        summaries = document["results"][workload.key]
        if workload.kind == "getppid":
            lines += gated_section(workload, summaries, labels, "ns/syscall", 1, 0)
        elif workload.kind == "spawn":
            lines += gated_section(workload, summaries, labels, "µs/spawn", 1000, 1)
        else:
            lines += demo_section(workload, summaries, labels)
        lines.append("")

    lines += extras_section(
        document["tracer"], document.get("bpf_stats"), document.get("event_rate")
    )
    lines.append("")
    lines += targets_section(document["targets"])
    return "\n".join(lines) + "\n"
