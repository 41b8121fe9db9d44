"""Turn run records into medians, ranges and ratios per workload and tool."""

import statistics


def spread(values):
    """Return {"median", "min", "max", "n"} of the values that are not None, or None when there are none."""
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def is_clean(run):
    """Tell whether a run started with no other tracing BPF program loaded on a quiet machine."""
    return not run.get("foreign_bpf_programs") and not run.get("disturbance")


def prefer_clean(runs):
    """Return (the clean runs, "clean"), or (all runs, "all") when none is clean."""
    clean = [run for run in runs if is_clean(run)]
    return (clean, "clean") if clean else (runs, "all")


def untraced_neighbours(runs, run, clean_only):
    """Return the per-operation ns of the untraced runs just before and after run in its round."""
    values = []
    for other in runs:
        if (
            other["round"] == run["round"]
            and other["workload"] == run["workload"]
            and other["tool"] == "untraced"
            and abs(other["position"] - run["position"]) == 1
            and other.get("per_operation_ns") is not None
            and (is_clean(other) or not clean_only)
        ):
            values.append(other["per_operation_ns"])
    return values


def round_baseline(runs, run, key, clean_only):
    """Return key of the untraced run of the same round and workload (the demo has one per round)."""
    for other in runs:
        if (
            other["round"] == run["round"]
            and other["workload"] == run["workload"]
            and other["tool"] == "untraced"
            and other.get(key) is not None
            and (is_clean(other) or not clean_only)
        ):
            return other[key]
    return None


def added_costs(runs, mine, clean_only):
    """Return [(added ns, ratio)] of each run in mine against its untraced neighbours."""
    pairs = []
    for run in mine:
        if run.get("per_operation_ns") is None or (clean_only and not is_clean(run)):
            continue
        neighbours = untraced_neighbours(runs, run, clean_only)
        if not neighbours:
            continue
        baseline = statistics.mean(neighbours)
        pairs.append((run["per_operation_ns"] - baseline, run["per_operation_ns"] / baseline))
    return pairs


def summarize_gated(runs, tool_key):
    """Summarize a getppid or spawn workload for one tool: per-operation ns, added ns and ratio.

    Only clean runs, compared with clean untraced runs, count where there
    are any; `basis` records which were used.
    """
    mine = [run for run in runs if run["tool"] == tool_key]
    chosen, basis = prefer_clean(mine)
    summary = {
        "basis": basis,
        "per_operation_ns": spread(run.get("per_operation_ns") for run in chosen),
        "operations": sorted({run["operations"] for run in mine if "operations" in run}),
        "errors": [run["error"] for run in mine if "error" in run],
    }
    if tool_key == "untraced":
        return summary

    pairs = added_costs(runs, mine, clean_only=True)
    summary["basis"] = "clean"
    if not pairs:
        pairs = added_costs(runs, mine, clean_only=False)
        summary["basis"] = "all"
    summary["added_ns"] = spread(added for added, _ in pairs)
    summary["ratio"] = spread(ratio for _, ratio in pairs)
    summary["startup_seconds"] = spread(run.get("startup_seconds") for run in mine)
    summary["seen"] = sorted({run["seen"] for run in mine if run.get("seen") is not None})
    summary["tool_peak_rss_bytes"] = spread(run.get("tool_peak_rss_bytes") for run in mine)
    return summary


def summarize_demo(runs, tool_key):
    """Summarize the demo for one tool: wall time, tool CPU and memory, the emulator's CPU."""
    mine = [run for run in runs if run["tool"] == tool_key]
    chosen, basis = prefer_clean(mine)
    summary = {
        "basis": basis,
        "wall_seconds": spread(run.get("wall_seconds") for run in chosen),
        "workload_cpu_seconds": spread(run.get("workload_cpu_seconds") for run in chosen),
        "errors": [run["error"] for run in mine if "error" in run],
        "expected_forks": sorted(
            {run["expected_forks"] for run in mine if "expected_forks" in run}
        ),
    }
    if tool_key == "untraced":
        return summary

    ratios = []
    for run in chosen:
        baseline = round_baseline(runs, run, "wall_seconds", clean_only=basis == "clean")
        if run.get("wall_seconds") is not None and baseline:
            ratios.append(run["wall_seconds"] / baseline)
    summary["wall_ratio"] = spread(ratios)
    summary["tool_cpu_seconds"] = spread(run.get("tool_cpu_seconds") for run in chosen)
    summary["tool_cpu_percent"] = spread(run.get("tool_cpu_percent") for run in chosen)
    summary["tool_rss_bytes"] = spread(run.get("tool_rss_bytes") for run in chosen)
    summary["tool_peak_rss_bytes"] = spread(run.get("tool_peak_rss_bytes") for run in chosen)
    summary["startup_seconds"] = spread(run.get("startup_seconds") for run in mine)
    summary["seen"] = sorted({run["seen"] for run in mine if run.get("seen") is not None})
    return summary


def disturbance_counts(runs):
    """Return how many runs had other tracing BPF programs loaded, and the median busy fraction of the CPUs."""
    measured = [run for run in runs if "error" not in run]
    return {
        "runs": len(measured),
        "runs_with_foreign_bpf_programs": sum(
            1 for run in measured if run.get("foreign_bpf_programs")
        ),
        "runs_started_not_quiet": sum(1 for run in measured if run.get("disturbance")),
        "cpu_busy_fraction": spread(run.get("cpu_busy_fraction") for run in measured),
    }


def summarize(runs, tools, workloads):
    """Return {workload key: {tool key: summary}} for every pair, run or not."""
    results = {}
    for workload in workloads:
        of_workload = [run for run in runs if run["workload"] == workload.key]
        results[workload.key] = {}
        for tool in tools:
            if workload.kind == "demo":
                results[workload.key][tool.key] = summarize_demo(of_workload, tool.key)
            else:
                results[workload.key][tool.key] = summarize_gated(of_workload, tool.key)
    return results


def tracer_figures(runs):
    """Return the agent-tracer start-up time and memory over every run that started it."""
    figures = {}
    for key in ("agent_tracer", "agent_tracer_no_syscalls"):
        mine = [run for run in runs if run["tool"] == key]
        figures[key] = {
            "startup_seconds": spread(run.get("startup_seconds") for run in mine),
            "rss_bytes": spread(run.get("tool_rss_bytes") for run in mine),
            "peak_rss_bytes": spread(run.get("tool_peak_rss_bytes") for run in mine),
        }
    return figures
