"""Rounds of measurements in alternating order, so that drift hits every tool alike."""

import logging

from .interference import QUIET_BUSY, wait_for_quiet
from .measure import measure_demo, measure_gated
from .processes import BenchError

log = logging.getLogger(__name__)


def round_order(round_index, tools, workload):
    """Return the tools of one round for workload, untraced included, in the order to run them.

    The traced tools run forward in even rounds and backward in odd ones.
    For the short workloads an untraced run sits between every two traced
    runs, so each traced run is compared with the untraced runs just before
    and after it. The demo lasts tens of seconds, so it gets one untraced
    run per round, first or last in turn.
    """
    untraced = next(tool for tool in tools if tool.key == "untraced")
    traced = [tool for tool in tools if tool.key != "untraced"]
    if round_index % 2:
        traced.reverse()

    if workload.kind == "demo":
        return [untraced, *traced] if round_index % 2 == 0 else [*traced, untraced]

    order = [untraced]
    for tool in traced:
        order += [tool, untraced]
    return order


def run_rounds(
    context, tools, workloads, unavailable, progress, quiet_wait=0, quiet_busy=QUIET_BUSY
):
    """Run every round; return the list of run records, each tagged with round, workload, tool and position.

    With quiet_wait, each run first waits up to that many seconds for the
    machine to be quiet, with quiet_busy as the CPUs' busy limit (see
    interference.wait_for_quiet).
    """
    runs = []
    for round_index in range(context.settings.rounds):
        for workload in workloads:
            for position, tool in enumerate(round_order(round_index, tools, workload)):
                record = {
                    "round": round_index,
                    "workload": workload.key,
                    "tool": tool.key,
                    "position": position,
                }
                if tool.key in unavailable:
                    record["error"] = unavailable[tool.key]
                    runs.append(record)
                    continue

                progress(
                    f"round {round_index + 1}/{context.settings.rounds}: {workload.key} under {tool.label}"
                )
                if quiet_wait:
                    disturbance = wait_for_quiet(quiet_wait, quiet_busy)
                    if disturbance:
                        log.warning("machine not quiet after %g s: %s", quiet_wait, disturbance)
                        record["disturbance"] = disturbance
                try:
                    if workload.kind == "demo":
                        record.update(measure_demo(context, tool))
                    else:
                        record.update(measure_gated(context, tool, workload))
                except BenchError as error:
                    log.error("%s under %s failed: %s", workload.key, tool.label, error)
                    record["error"] = str(error)
                runs.append(record)
    return runs
