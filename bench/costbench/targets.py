"""The project's cost targets, checked against one benchmark run."""

MIB = 1024 * 1024


def median(summary, key):
    """Return summary[key]["median"], or None when it was not measured."""
    value = (summary or {}).get(key)
    return value["median"] if value else None


def target(name, goal, measured, met):
    return {"name": name, "target": goal, "measured": measured, "met": met}


def check(name, goal, value, limit, text):
    """Build a target met when value <= limit; text(value) formats the measured figure."""
    if value is None:
        return target(name, goal, "not measured", None)
    return target(name, goal, text(value), value <= limit)


def evaluate(results, tracer, bpf_stats, event_rate):
    """Return the list of targets with the measured figure and whether each was met."""
    role = results.get("getppid_role", {})
    other = results.get("getppid_other", {})
    spawn = results.get("spawn_role", {})
    demo = results.get("demo", {})
    checks = []

    added_a = median(role.get("agent_tracer"), "added_ns")
    ratio_a = median(role.get("agent_tracer"), "ratio")
    checks.append(
        check(
            "a_added",
            "(a) role process: at most +110 ns per syscall",
            added_a,
            110,
            lambda v: f"{v:+.0f} ns",
        )
    )
    checks.append(
        check(
            "a_ratio",
            "(a) role process: at most 1.5x untraced",
            ratio_a,
            1.5,
            lambda v: f"{v:.2f}x",
        )
    )

    syscount_a = median(role.get("syscount"), "added_ns")
    if added_a is None or syscount_a is None:
        checks.append(target("a_below_syscount", "(a) below syscount -p", "not measured", None))
    else:
        checks.append(
            target(
                "a_below_syscount",
                "(a) below syscount -p",
                f"{added_a:+.0f} ns against {syscount_a:+.0f} ns",
                added_a < syscount_a,
            )
        )

    added_b = median(other.get("agent_tracer"), "added_ns")
    checks.append(
        check(
            "b_added",
            "(b) outside every role: at most +100 ns per syscall",
            added_b,
            100,
            lambda v: f"{v:+.0f} ns",
        )
    )

    ratio_c = median(spawn.get("agent_tracer"), "ratio")
    checks.append(
        check(
            "c_wall",
            "(c) spawn loop: at most 2% added wall time",
            None if ratio_c is None else (ratio_c - 1) * 100,
            2,
            lambda v: f"{v:+.1f}%",
        )
    )
    per_spawn = (bpf_stats or {}).get("bpf_ns_per_spawn")
    checks.append(
        check(
            "c_bpf",
            "(c) spawn loop: at most 3 µs of BPF run time per spawn",
            None if per_spawn is None else per_spawn / 1000,
            3,
            lambda v: f"{v:.2f} µs",
        )
    )

    for key, label, factor in (("strace", "strace -f", 300), ("perf_trace", "perf trace", 100)):
        theirs = median(role.get(key), "added_ns")
        name = f"a_vs_{key}"
        goal = f"(a) at least {factor}x less added per syscall than {label}"
        if added_a is None or theirs is None:
            checks.append(target(name, goal, "not measured", None))
        elif added_a <= 0:
            checks.append(
                target(
                    name,
                    goal,
                    f"agent-tracer {added_a:+.0f} ns (no measurable cost), {label} {theirs:+.0f} ns",
                    True,
                )
            )
        else:
            checks.append(
                target(name, goal, f"{theirs / added_a:.0f}x", theirs / added_a >= factor)
            )

    for key, summary in (("a", role), ("b", other)):
        value = median(summary.get("agent_tracer_no_syscalls"), "added_ns")
        checks.append(
            check(
                f"{key}_no_syscalls",
                f"--no-syscalls, ({key}): within noise, under +10 ns",
                None if value is None else value,
                10,
                lambda v: f"{v:+.1f} ns",
            )
        )

    startup = median(tracer.get("agent_tracer"), "startup_seconds")
    checks.append(check("startup", "start-up at most 0.5 s", startup, 0.5, lambda v: f"{v:.2f} s"))
    rss = median(tracer.get("agent_tracer"), "rss_bytes")
    checks.append(
        check(
            "rss",
            "RSS at most 150 MB",
            None if rss is None else rss / MIB,
            150,
            lambda v: f"{v:.0f} MiB",
        )
    )
    cpu = median(demo.get("agent_tracer"), "tool_cpu_percent")
    checks.append(
        check(
            "demo_cpu",
            "tracer CPU at most 1% of one core during the demo",
            cpu,
            1,
            lambda v: f"{v:.2f}%",
        )
    )

    if not event_rate or "lost" not in event_rate:
        checks.append(
            target("lost_events", "zero lost events, one spawner per CPU", "not measured", None)
        )
    else:
        lost = event_rate["lost"].get("events", 0)
        checks.append(
            target(
                "lost_events",
                f"zero lost events, one spawner per CPU for {event_rate['seconds']:.0f} s",
                f"{lost} lost of {event_rate['events_total']} ({event_rate['events_per_second']:.0f} events/s)",
                lost == 0,
            )
        )
    return checks
