"""Root test: --pid and --comm rules, a config file, and the Prometheus endpoint, end to end."""

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from livetracer import wait_until

pytestmark = pytest.mark.root

GATED_SPAWNS = """
import os, subprocess, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
for _ in range(5):
    subprocess.run(['/bin/true'])
time.sleep(60)
"""

GATED_FORKS = """
import os, sys, time
with open('/proc/self/comm', 'w') as comm:
    comm.write('rulecomm')
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
time.sleep(60)
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def metric(text, name, role):
    found = re.search(rf'^{name}\{{role="{re.escape(role)}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_pid_comm_config_and_metrics(tmp_path):
    gate = tmp_path / "go"
    spawner = subprocess.Popen([sys.executable, "-c", GATED_SPAWNS, str(gate)])
    forker = subprocess.Popen([sys.executable, "-c", GATED_FORKS, str(gate)])
    port = free_port()
    config = tmp_path / "trace.toml"
    config.write_text(
        f'[trace]\ninterval = 0.5\nrescan_interval = 0.1\nduration = 6\nformat = "json"\n'
        f'metrics_address = "127.0.0.1:{port}"\noutput = "{tmp_path / "t.msgpack"}"\n'
    )
    stderr = tmp_path / "stderr"
    time.sleep(0.5)
    with open(stderr, "w") as errors:
        tracer = subprocess.Popen(
            [sys.executable, "-m", "tracer", "trace", "--config", str(config), "--max-cpu", "0",
             "--pid", f"spawner={spawner.pid}", "--comm", "rulecomm"],
            stdout=subprocess.PIPE, stderr=errors, text=True,
        )
    try:
        wait_until(lambda: "Tracing" in stderr.read_text() or tracer.poll() is not None, 120, "the start line")
        gate.touch()
        time.sleep(3)
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        out, _ = tracer.communicate(timeout=60)
    finally:
        spawner.kill()
        forker.kill()
        if tracer.poll() is None:
            tracer.kill()
    assert tracer.returncode == 0, stderr.read_text()

    report = json.loads(out)
    assert report["roles"]["spawner"]["process_forks"] == 5
    assert report["roles"]["spawner"]["execs"] == 5
    assert report["roles"]["rulecomm"]["process_forks"] == 3
    assert report["roles"]["rulecomm"]["execs"] == 0

    assert metric(scrape, "agent_tracer_process_forks_total", "spawner") == 5
    assert metric(scrape, "agent_tracer_execs_total", "spawner") == 5
    assert metric(scrape, "agent_tracer_process_forks_total", "rulecomm") == 3
