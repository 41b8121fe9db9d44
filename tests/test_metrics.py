"""Tests of the Prometheus exporter: records in, an HTTP scrape out. None needs root.

The exporter listens on 127.0.0.1 with a port the kernel picks, and each
test scrapes it with urllib and parses the text with prometheus_client's
own parser.
"""

import platform
import socket
import sys
import urllib.error
import urllib.request

import pytest

from tracer import syscalls
from tracer.metrics import MetricsError, MetricsExporter, format_address, parse_address

prometheus_parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus_client is not installed"
)

SCRAPE_TIMEOUT = 10.0

HEADER = {
    "type": "header",
    "schema": 1,
    "host": "web-1",
    "arch": "x86_64",
    "compat_arch": "i386",
    "start": 1_000,
    "interval": 1.0,
    "preset": "opsworks",
    "roles": [{"name": "keep_alive", "rule": "..."}, {"name": "process_command", "rule": "..."}],
}


def event(kind, role, **keys):
    return {"type": kind, "ts": 2_000, "pid": 100, "role": role, **keys}


def scrape(exporter):
    """Return {(metric sample name, sorted labels): value} from the exporter's /metrics."""
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def exporter():
    exporter = MetricsExporter("127.0.0.1:0")
    yield exporter
    exporter.close()


def feed_session(exporter):
    """Feed the records of a short session: 3 forks, 2 threads, 2 execs, 1 failed exec, 2 exits.

    Two buckets follow, and records that change no counter (root, marker, trailer).
    """
    exporter.observe(HEADER)
    exporter.observe(
        {"type": "root", "ts": 1_500, "pid": 100, "role": "keep_alive", "reason": "seed"}
    )

    for _ in range(3):
        exporter.observe(event("fork", "keep_alive", ppid=99, tid=99))
    exporter.observe(event("thread", "keep_alive", tid=101))
    exporter.observe(event("thread", "process_command", tid=102))
    exporter.observe(event("exec", "keep_alive", filename="/usr/bin/true"))
    exporter.observe(event("exec", "process_command", filename="/opt/chef/bin/chef-solo"))
    exporter.observe(
        event("exec_failed", "process_command", filename="/usr/local/bin/chef-solo", errno=2)
    )
    exporter.observe(event("exit", "keep_alive"))
    exporter.observe(event("exit", "keep_alive"))
    exporter.observe({"type": "marker", "ts": 2_500, "name": "configure"})

    exporter.observe(
        {
            "type": "bucket",
            "start": 1_000,
            "end": 2_000,
            "roles": {
                "keep_alive": {
                    "syscalls": {39: 5, 0: 2},
                    "syscalls_compat": {20: 1},
                    "cpu_ns": 1_500_000_000,
                },
                "process_command": {"syscalls": {59: 1}},
            },
            "lost": {"events": 4},
        }
    )

    exporter.observe(
        {
            "type": "bucket",
            "start": 2_000,
            "end": 3_000,
            "roles": {
                "keep_alive": {"syscalls": {39: 1, 999: 3}, "cpu_ns": 250_000_000},
                "unlisted": {"cpu_ns": 125_000_000},
            },
            "lost": {"events": 1, "pid_range": 2},
        }
    )

    exporter.observe(
        {"type": "trailer", "ts": 3_000, "end": 3_000, "lost": {"events": 5, "pid_range": 2}}
    )


def test_exporter_values_exact(exporter):
    feed_session(exporter)

    samples = scrape(exporter)

    assert value(samples, "agent_tracer_process_forks_total", role="keep_alive") == 3
    assert value(samples, "agent_tracer_process_forks_total", role="process_command") == 0
    assert value(samples, "agent_tracer_thread_creations_total", role="keep_alive") == 1
    assert value(samples, "agent_tracer_thread_creations_total", role="process_command") == 1
    assert value(samples, "agent_tracer_execs_total", role="keep_alive") == 1
    assert value(samples, "agent_tracer_execs_total", role="process_command") == 1
    assert value(samples, "agent_tracer_failed_execs_total", role="keep_alive") == 0
    assert value(samples, "agent_tracer_failed_execs_total", role="process_command") == 1
    assert value(samples, "agent_tracer_exits_total", role="keep_alive") == 2
    assert value(samples, "agent_tracer_exits_total", role="process_command") == 0

    assert value(samples, "agent_tracer_syscalls_total", role="keep_alive", syscall="getpid") == 6
    assert value(samples, "agent_tracer_syscalls_total", role="keep_alive", syscall="read") == 2
    assert (
        value(samples, "agent_tracer_syscalls_total", role="keep_alive", syscall="i386:getpid") == 1
    )
    assert (
        value(samples, "agent_tracer_syscalls_total", role="keep_alive", syscall="unknown(999)")
        == 3
    )
    assert (
        value(samples, "agent_tracer_syscalls_total", role="process_command", syscall="execve") == 1
    )
    syscall_series = [key for key in samples if key[0] == "agent_tracer_syscalls_total"]
    assert len(syscall_series) == 5

    assert value(samples, "agent_tracer_cpu_seconds_total", role="keep_alive") == 1.75
    assert value(samples, "agent_tracer_cpu_seconds_total", role="process_command") == 0
    assert value(samples, "agent_tracer_cpu_seconds_total", role="unlisted") == 0.125

    assert value(samples, "agent_tracer_lost_total", kind="events") == 5
    assert value(samples, "agent_tracer_lost_total", kind="pid_range") == 2
    assert value(samples, "agent_tracer_lost_total", kind="exec_stash") == 0
    assert value(samples, "agent_tracer_lost_total", kind="syscall_overflow") == 0


def test_exporter_labels_have_no_host(exporter):
    feed_session(exporter)

    samples = scrape(exporter)

    label_names = {name for _sample, labels in samples for name, _value in labels}
    assert label_names == {"role", "syscall", "kind"}
    assert all(name.startswith("agent_tracer_") for name, _labels in samples)


def test_exporter_counters_only_rise(exporter):
    exporter.observe(HEADER)
    exporter.observe(event("fork", "keep_alive", ppid=1, tid=1))
    first = scrape(exporter)

    exporter.observe(event("fork", "keep_alive", ppid=1, tid=1))
    exporter.observe(
        {"type": "bucket", "start": 0, "end": 1, "roles": {"keep_alive": {"cpu_ns": 500_000_000}}}
    )
    second = scrape(exporter)

    assert value(first, "agent_tracer_process_forks_total", role="keep_alive") == 1
    assert value(second, "agent_tracer_process_forks_total", role="keep_alive") == 2
    assert value(second, "agent_tracer_cpu_seconds_total", role="keep_alive") == 0.5
    for key, before in first.items():
        assert second[key] >= before, key


def test_exporter_aarch64_header(exporter):
    exporter.observe({**HEADER, "arch": "aarch64", "compat_arch": None})
    exporter.observe(
        {"type": "bucket", "start": 0, "end": 1, "roles": {"keep_alive": {"syscalls": {172: 2}}}}
    )

    samples = scrape(exporter)

    assert value(samples, "agent_tracer_syscalls_total", role="keep_alive", syscall="getpid") == 2


def test_exporter_without_header_names_by_this_machine(exporter):
    try:
        native, _compat = syscalls.abis_for_machine(platform.machine())
    except ValueError:
        pytest.skip(f"no syscall table for this machine ({platform.machine()})")
    getpid = syscalls.number("getpid", native)

    exporter.observe(
        {"type": "bucket", "start": 0, "end": 1, "roles": {"r": {"syscalls": {getpid: 1}}}}
    )

    samples = scrape(exporter)

    assert value(samples, "agent_tracer_syscalls_total", role="r", syscall="getpid") == 1


def test_exporter_close_stops_server():
    exporter = MetricsExporter("127.0.0.1:0")
    port = exporter.port
    exporter.close()
    exporter.close()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT)


def test_exporter_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(MetricsError) as raised:
            MetricsExporter(f"127.0.0.1:{port}")

    assert str(raised.value) == (
        f"cannot listen for metrics on 127.0.0.1:{port}: Address already in use; choose another address or port"
    )
    assert raised.value.exit_code == 1


def test_exporter_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        exporter = MetricsExporter("[::1]:0")
    except MetricsError as error:
        pytest.skip(f"no IPv6 loopback on this machine: {error}")
    try:
        exporter.observe(HEADER)
        with urllib.request.urlopen(
            f"http://[::1]:{exporter.port}/metrics", timeout=SCRAPE_TIMEOUT
        ) as response:
            text = response.read().decode()
        assert 'agent_tracer_process_forks_total{role="keep_alive"} 0.0' in text
        assert exporter.address == f"[::1]:{exporter.port}"
    finally:
        exporter.close()


def test_exporter_without_prometheus_client(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)

    with pytest.raises(MetricsError) as raised:
        MetricsExporter("127.0.0.1:0")

    assert "install it with 'pip install agent-tracer[metrics]'" in str(raised.value)
    assert raised.value.exit_code == 69


# --- addresses ---------------------------------------------------------------


@pytest.mark.parametrize(
    "address, expected",
    [
        ("9464", ("127.0.0.1", 9464)),
        (9464, ("127.0.0.1", 9464)),
        (" 9464 ", ("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9464", ("::1", 9464)),
        ("[fe80::1]:80", ("fe80::1", 80)),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    "address, message",
    [
        (
            ":9464",
            (
                "metrics address ':9464' has no host; give one, e.g. 127.0.0.1:9464, "
                "or 0.0.0.0:9464 to listen on every interface"
            ),
        ),
        (
            "::1:9464",
            "metrics address '::1:9464': put an IPv6 address in brackets, e.g. [::1]:9464",
        ),
        (
            "localhost",
            (
                "metrics address 'localhost' has no port; use PORT, HOST:PORT or [IPV6]:PORT, "
                "e.g. 9464 or 127.0.0.1:9464"
            ),
        ),
        (
            "127.0.0.1:http",
            "metrics address '127.0.0.1:http': port 'http' is not a number from 0 to 65535",
        ),
        (
            "127.0.0.1:65536",
            "metrics address '127.0.0.1:65536': port '65536' is not a number from 0 to 65535",
        ),
        (
            "[localhost]:80",
            (
                "metrics address '[localhost]:80': 'localhost' is not an IPv6 address; "
                "use PORT, HOST:PORT or [IPV6]:PORT, e.g. 9464 or 127.0.0.1:9464"
            ),
        ),
        (
            "my host:80",
            (
                "metrics address 'my host:80': host 'my host' contains white space; "
                "use PORT, HOST:PORT or [IPV6]:PORT, e.g. 9464 or 127.0.0.1:9464"
            ),
        ),
        (
            True,
            (
                "metrics address True is not a string or a port number; "
                "use PORT, HOST:PORT or [IPV6]:PORT, e.g. 9464 or 127.0.0.1:9464"
            ),
        ),
    ],
)
def test_parse_address_rejects(address, message):
    with pytest.raises(MetricsError) as raised:
        parse_address(address)

    assert str(raised.value) == message
    assert raised.value.exit_code == 2


def test_format_address():
    assert format_address("127.0.0.1", 9464) == "127.0.0.1:9464"
    assert format_address("::1", 9464) == "[::1]:9464"
