"""An emulator of the AWS OpsWorks Stacks agent that records exact ground truth.

It runs the agent's four titled processes and their children on the real
kernel and counts every fork, exec, failed exec attempt, thread creation and
exit per role, so that a tracer's measurements can be compared with it
exactly. Run it with ``python -m tracer.emulator``; the options and the
protocol are described in ``tracer/emulator/__main__.py``.
"""
