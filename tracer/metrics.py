"""Serve the tracer's per-role counts as Prometheus metrics.

`MetricsExporter.observe` takes each stream record as the tracer writes it
(docs/format.md) and adds it to counters in a registry of its own, which an
HTTP server thread serves at /metrics. Events count as they arrive.
Syscalls, CPU time and losses count once per bucket, when the tracer reads
the kernel's counters. The header, when the exporter receives it, names
the syscall ABIs and the configured roles.

prometheus_client is an optional dependency: `pip install agent-tracer[metrics]`.
"""

from __future__ import annotations

import ipaddress
import logging
import platform
import re
import socket
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import exit_codes, syscalls
from .errors import TracerError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
NS_PER_SECOND = 1_000_000_000

# Event record type → attribute of MetricsExporter that counts it.
EVENT_COUNTERS = {
    "fork": "process_forks",
    "thread": "thread_creations",
    "exec": "execs",
    "exec_failed": "failed_execs",
    "exit": "exits",
}

# Loss kinds that the kernel side counts (docs/format.md). They are exported
# as zeros from the start, so that every query on them finds a series.
LOST_KINDS = ("events", "pid_range", "exec_stash", "syscall_overflow")


class MetricsError(TracerError):
    """The metrics endpoint cannot be set up."""


def parse_address(address):
    """Return (host, port) for a metrics address: PORT, HOST:PORT or [IPV6]:PORT.

    A bare port listens on 127.0.0.1. Port 0 picks a free port. Raise
    MetricsError (exit code 2) naming the address and the accepted forms.
    """
    forms = "use PORT, HOST:PORT or [IPV6]:PORT, e.g. 9464 or 127.0.0.1:9464"
    if type(address) is int:
        text = str(address)
    elif isinstance(address, str):
        text = address.strip()
    else:
        raise MetricsError(
            f"metrics address {address!r} is not a string or a port number; {forms}",
            exit_codes.USAGE,
        )

    bracketed = re.fullmatch(r"\[([^\]]+)\]:(\w+)", text)
    if text.isdigit():
        host, port_text = DEFAULT_HOST, text
    elif bracketed:
        host, port_text = bracketed.groups()
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise MetricsError(
                f"metrics address '{text}': '{host}' is not an IPv6 address; {forms}",
                exit_codes.USAGE,
            ) from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not host:
            raise MetricsError(
                f"metrics address '{text}' has no host; give one, e.g. 127.0.0.1{text}, "
                f"or 0.0.0.0{text} to listen on every interface",
                exit_codes.USAGE,
            )
    elif text.count(":") > 1:
        raise MetricsError(
            f"metrics address '{text}': put an IPv6 address in brackets, e.g. [::1]:9464",
            exit_codes.USAGE,
        )
    else:
        raise MetricsError(f"metrics address '{text}' has no port; {forms}", exit_codes.USAGE)

    if not port_text.isdigit() or int(port_text) > 65535:
        raise MetricsError(
            f"metrics address '{text}': port '{port_text}' is not a number from 0 to 65535",
            exit_codes.USAGE,
        )
    if re.search(r"\s", host):
        raise MetricsError(
            f"metrics address '{text}': host '{host}' contains white space; {forms}",
            exit_codes.USAGE,
        )
    return host, int(port_text)


def format_address(host, port):
    """Return HOST:PORT, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def import_prometheus_client():
    """Import and return prometheus_client, or raise MetricsError saying how to install it."""
    try:
        import prometheus_client
    except ImportError as error:
        raise MetricsError(
            f"the Prometheus client library is not installed ({error}); install it with "
            "'pip install agent-tracer[metrics]' (or the distribution's python3-prometheus-client)",
            exit_codes.UNAVAILABLE,
        ) from error
    return prometheus_client


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server that serves each scrape in its own thread."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Sends the request log to the debug log instead of stderr."""

    def log_message(self, format, *args):
        log.debug("metrics request from %s: %s", self.address_string(), format % args)


class MetricsExporter:
    """Per-role Prometheus counters fed from stream records and served over HTTP."""

    def __init__(self, address):
        prometheus = import_prometheus_client()
        self.host, requested_port = parse_address(address)

        self.registry = prometheus.CollectorRegistry()
        self._make_counters(prometheus.Counter)

        # The header names the ABIs of the syscall numbers. Until one arrives,
        # the numbers are those of this machine, where the tracer runs.
        try:
            self._arch, self._compat_arch = syscalls.abis_for_machine(platform.machine())
        except ValueError:
            self._arch = self._compat_arch = None
        self._syscall_names = {}

        self._server = self._bind(prometheus.make_wsgi_app(self.registry), requested_port)
        self.port = self._server.server_port
        self.address = format_address(self.host, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agent-tracer-metrics", daemon=True
        )
        self._thread.start()
        log.info("serving Prometheus metrics at http://%s/metrics", self.address)

    def _make_counters(self, counter):
        def make(name, documentation, labels=("role",)):
            return counter(name, documentation, labels, registry=self.registry)

        self.process_forks = make(
            "agent_tracer_process_forks",
            "New processes (fork, or clone without CLONE_THREAD), by role.",
        )
        self.thread_creations = make("agent_tracer_thread_creations", "New threads, by role.")
        self.execs = make("agent_tracer_execs", "Successful execs, by role.")
        self.failed_execs = make(
            "agent_tracer_failed_execs",
            "Exec attempts that returned an error (a shell searching PATH), by role.",
        )
        self.exits = make("agent_tracer_exits", "Processes whose last thread ended, by role.")
        self.syscalls = make(
            "agent_tracer_syscalls",
            "System calls, by role and name; compat calls are named ABI:name, e.g. i386:getpid.",
            ("role", "syscall"),
        )
        self.cpu_seconds = make(
            "agent_tracer_cpu_seconds", "CPU time of the role's tasks, in seconds."
        )
        self.lost = make(
            "agent_tracer_lost",
            "Counts that went missing, by kind: events (buffer full), pid_range, exec_stash, "
            "syscall_overflow.",
            ("kind",),
        )
        for kind in LOST_KINDS:
            self.lost.labels(kind=kind)

    def _bind(self, app, port):
        try:
            family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
                self.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as error:
            raise MetricsError(
                f"cannot listen for metrics on {format_address(self.host, port)}: "
                f"host '{self.host}' cannot be resolved ({error.strerror}); give an IP address such as 127.0.0.1"
            ) from None

        server_class = type("MetricsServer", (_ThreadingServer,), {"address_family": family})
        try:
            return make_server(
                sockaddr[0], port, app, server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as error:
            raise MetricsError(
                f"cannot listen for metrics on {format_address(self.host, port)}: "
                f"{error.strerror or error}; choose another address or port"
            ) from None

    def observe(self, record):
        """Add one stream record to the counters.

        Records of other types (root, task, marker, trailer) change nothing:
        the trailer's losses are the sum of the buckets' losses, which are
        already counted.
        """
        kind = record.get("type")
        if kind == "header":
            self._observe_header(record)
        elif kind in EVENT_COUNTERS:
            getattr(self, EVENT_COUNTERS[kind]).labels(role=record["role"]).inc()
        elif kind == "bucket":
            self._observe_bucket(record)

    def _observe_header(self, header):
        self._arch = header.get("arch")
        self._compat_arch = header.get("compat_arch")
        self._syscall_names.clear()

        # Series of the configured roles exist from the start, with zeros.
        for rule in header.get("roles", ()):
            role = rule["name"]
            for counter in (
                self.process_forks,
                self.thread_creations,
                self.execs,
                self.failed_execs,
                self.exits,
                self.cpu_seconds,
            ):
                counter.labels(role=role)

    def _observe_bucket(self, bucket):
        for role, counters in bucket["roles"].items():
            for table, compat in (("syscalls", False), ("syscalls_compat", True)):
                for nr, count in counters.get(table, {}).items():
                    self.syscalls.labels(role=role, syscall=self._syscall_name(nr, compat)).inc(
                        count
                    )
            cpu_ns = counters.get("cpu_ns", 0)
            if cpu_ns:
                self.cpu_seconds.labels(role=role).inc(cpu_ns / NS_PER_SECOND)

        for kind, count in bucket.get("lost", {}).items():
            self.lost.labels(kind=kind).inc(count)

    def _syscall_name(self, nr, compat):
        """Name syscall `nr` as `agent-tracer report` does: compat calls as ABI:name."""
        key = (compat, nr)
        name = self._syscall_names.get(key)
        if name is not None:
            return name

        abi = self._compat_arch if compat else self._arch
        name = syscalls.display_name(nr, abi) if abi in syscalls.ABIS else f"unknown({nr})"
        if compat:
            name = f"{abi or 'compat'}:{name}"
        self._syscall_names[key] = name
        return name

    def close(self):
        """Stop the HTTP server and wait for its thread; calling it again does nothing."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None
        log.info("stopped serving metrics at %s", self.address)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
