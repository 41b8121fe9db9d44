"""Root tests: the output file, rotation, a full disk, lost events and secrets."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid

import livetracer
import pytest
from livetracer import TITLE_PREFIX, LiveTracer, Workload, role_summary, settled, wait_until
from test_root_attribution import unique_role
from test_root_stopping import kill_tree, run_tracer_command

from tracer.errors import StreamError
from tracer.output import part_path
from tracer.redact import REDACTED
from tracer.stream import read_stream
from tracer.syscalls import number

pytestmark = pytest.mark.root

GETPPID = number("getppid", "x86_64")

# Spawns /bin/true COUNT times, with one getppid after each spawn, so that
# the syscall count runs across every part of a rotated stream.
SPAWN_AND_GETPPID = """
import os, sys
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], {}), 0)
    os.getppid()
print("{}")
"""

# WORKERS forked workers spawn /bin/true ROUNDS times each while the root
# makes CALLS getppid calls.
STORM_AND_GETPPID = """
import os, sys
sys.stdin.readline()
workers, rounds, calls = map(int, sys.argv[1:4])
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        for _ in range(rounds):
            os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], {}), 0)
        os._exit(0)
    pids.append(pid)
for _ in range(calls):
    os.getppid()
for pid in pids:
    os.waitpid(pid, 0)
print("{}")
"""

# Spawns /bin/true until killed; needs no gate.
SPAWN_FOREVER = """
import os
while True:
    os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], {}), 0)
"""

# The root shell waits for the gate, then runs /bin/true with its own
# arguments, which carry the secrets.
EXEC_WITH_ARGUMENTS = 'read gate; /bin/true "$@"; echo "{}"'

SECRET_ARGUMENTS = [
    "--password=hunter2",
    "token=abc",
    "https://user:pw@host/",
    "AKIAIOSFODNN7EXAMPLE",
    "hunter7",
]
# The part of each secret argument that must never reach the stream while
# redaction is on.
SECRET_TEXTS = ["hunter2", "token=abc", "user:pw@", "AKIAIOSFODNN7EXAMPLE"]
REDACTED_ARGUMENTS = [
    f"--password={REDACTED}",
    f"token={REDACTED}",
    f"https://user:{REDACTED}@host/",
    REDACTED,
    "hunter7",
]


class InlineWorkload(Workload):
    """A workload whose code is given inline: `executable -c CODE ARGS`, titled as a role root."""

    def __init__(self, role, code, *args, executable=sys.executable, env=None, title_prefix=TITLE_PREFIX):
        self.role = role
        self.argv = [f"{title_prefix} {role}", "-c", code, *map(str, args)]
        self.process = subprocess.Popen(
            self.argv, executable=executable, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.pid = self.process.pid


def use_private_prefix(monkeypatch):
    """Make the next LiveTracer trace only roots titled with a prefix that no other test uses.

    Returns the prefix. Losses and role map entries then come from this
    test's workloads alone, even when other root tests run on the machine.
    """
    prefix = f"agent-tracer-private-{uuid.uuid4().hex[:12]}:"
    monkeypatch.setattr(livetracer, "ROLE_RULE", rf"test=^{prefix} (?P<role>\w+)")
    return prefix


class RotatedTracer(LiveTracer):
    """A live tracer whose stream is rotated into numbered parts."""

    def parts(self):
        pattern = f"{self.path.stem}.[0-9][0-9][0-9][0-9]{self.path.suffix}"
        return sorted(self.path.parent.glob(pattern))

    def read(self):
        records = []
        for part in self.parts():
            if part.stat().st_size == 0:
                continue
            with read_stream(part) as reader:
                records += [reader.header, *reader]
        return records


def records_after(tracer, moment_ns):
    """Wait until a bucket that starts after moment_ns is written; return every record.

    Unlike settled(), this needs no exit record, which a full ring buffer may drop.
    """
    tracer.wait_for_record(
        lambda r: r.get("type") == "bucket" and r["start"] > moment_ns, what="a bucket after the workload"
    )
    return tracer.read()


def error_lines(result):
    """Return the lines of stderr other than logged warnings."""
    return [line for line in result.stderr.strip().splitlines() if not line.startswith("agent-tracer: WARNING:")]


def report_json(*paths):
    result = run_tracer_command(["report", "--format", "json", *map(str, paths)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_output_mode_0600(tmp_path):
    output = tmp_path / "trace.msgpack"
    result = run_tracer_command(["trace", "--duration", "0.5", "-o", str(output)], umask=0)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_symlink_output_rejected(tmp_path, force):
    target = tmp_path / "target.txt"
    target.write_text("keep me\n")
    link = tmp_path / "trace.msgpack"
    link.symlink_to(target)
    args = ["trace", "--duration", "0.5", "-o", str(link)] + (["--force"] if force else [])
    result = run_tracer_command(args)

    assert result.returncode == 73, result.stderr
    assert error_lines(result) == [
        (
            f"Error: output file {link} is a symbolic link; agent-tracer never writes through one, "
            "so remove the link or choose another path"
        )
    ]
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text() == "keep me\n"


def test_existing_output_needs_force(tmp_path):
    output = tmp_path / "trace.msgpack"
    output.write_text("earlier run\n")
    output.chmod(0o644)
    rejected = run_tracer_command(["trace", "--duration", "0.5", "-o", str(output)])
    content_after_rejection = output.read_text()
    replaced = run_tracer_command(["trace", "--duration", "0.5", "-o", str(output), "--force"])
    reader = read_stream(output)
    list(reader)

    assert rejected.returncode == 73, rejected.stderr
    assert error_lines(rejected) == [f"Error: output file {output} exists; pass --force to replace it"]
    assert content_after_rejection == "earlier run\n"
    assert replaced.returncode == 0, replaced.stderr
    assert reader.trailer["reason"] == "duration"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


def test_rotate_size_parts(tmp_path):
    spawns = 3000
    tracer = RotatedTracer(tmp_path / "rotated.msgpack", ["--rotate-size", "64K"])
    role = unique_role("rotate")
    workload = None
    try:
        tracer.wait_ready()
        workload = InlineWorkload(role, SPAWN_AND_GETPPID, spawns)
        workload.run(tracer, timeout=300)
        records = settled(tracer, workload.pid)
    finally:
        code, _ = tracer.stop()
        if workload is not None:
            kill_tree(workload.process)

    parts = tracer.parts()
    summary = role_summary(tracer.read(), role)
    report = report_json(*parts)["roles"][role]
    print(f"\n{len(parts)} parts of {[part.stat().st_size for part in parts]} bytes")

    assert code == 0, tracer.stderr_text()
    assert len(parts) >= 3
    assert [str(part) for part in parts] == [part_path(str(tracer.path), index) for index in range(1, len(parts) + 1)]
    assert not tracer.path.exists()
    for index, part in enumerate(parts, start=1):
        reader = read_stream(part)
        list(reader)
        last = index == len(parts)
        assert reader.header["part"] == index
        assert reader.truncated is False, part
        assert reader.problem is None, part
        assert reader.trailer["reason"] == ("signal" if last else "rotate"), part
        assert stat.S_IMODE(part.stat().st_mode) == 0o600
        if not last:
            assert part.stat().st_size >= 64 * 1024, part
    assert summary["process_forks"] == spawns
    assert summary["execs"] == spawns
    assert summary["exits"] == spawns + 1
    assert summary["syscalls"].get(GETPPID) == spawns
    assert report["process_forks"] == summary["process_forks"]
    assert report["execs"] == summary["execs"]
    assert report["exits"] == summary["exits"]
    assert report["syscalls"]["getppid"] == spawns
    assert sum(r.get("lost", {}).get("events", 0) for r in records if r["type"] == "bucket") == 0


def test_rotated_parts_after_sigkill(tmp_path):
    tracer = RotatedTracer(tmp_path / "killed.msgpack", ["--rotate-size", "64K"])
    role = unique_role("rotatekill")
    workload = None
    try:
        tracer.wait_ready()
        workload = InlineWorkload(role, SPAWN_FOREVER)
        wait_until(lambda: len(tracer.parts()) >= 3, 120, "a third part")
        tracer.process.kill()
        code, _ = tracer.stop()
    finally:
        if tracer.process.poll() is None:
            tracer.process.kill()
            tracer.stop()
        if workload is not None:
            kill_tree(workload.process)

    parts = tracer.parts()
    readers = []
    unreadable = []
    for part in parts:
        try:
            reader = read_stream(part)
        except StreamError as error:
            unreadable.append(str(error))
            continue
        list(reader)
        readers.append(reader)
    report = run_tracer_command(["report", *map(str, parts)])

    assert code == -signal.SIGKILL
    assert unreadable == []
    assert [reader.truncated for reader in readers] == [False] * (len(parts) - 1) + [True]
    assert [reader.problem for reader in readers] == [None] * len(parts)
    assert [reader.trailer["reason"] for reader in readers[:-1]] == ["rotate"] * (len(parts) - 1)
    assert report.returncode == 0, report.stderr
    assert f"{parts[-1]} is truncated" in report.stderr


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted for one test, unmounted even when the test fails."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_disk_full_keeps_tracing(tmp_path, small_tmpfs):
    role = unique_role("diskfull")
    output = small_tmpfs / "trace.msgpack"
    stderr_path = tmp_path / "diskfull.stderr"
    workload = InlineWorkload(role, SPAWN_FOREVER)
    command = [
        sys.executable, "-m", "tracer", "trace",
        "--role", r"test=^agent-tracer-test: (?P<role>\w+)",
        "--interval", "0.5", "-o", str(output),
        # Keep the interval fixed: the CPU budget would lengthen it under this load.
        "--max-cpu", "0",
    ]
    # The live line of each bucket shows the first 16 characters of the role.
    bucket_line = rf"^\[[ \d.]+s\] {re.escape(role[:16])} "

    def buckets_after_failure():
        text = stderr_path.read_text()
        if "tracing goes on" not in text:
            return 0
        return len(re.findall(bucket_line, text.split("tracing goes on", 1)[1], re.MULTILINE))

    # No --duration: how long the output takes to fill depends on how fast
    # the machine forks, so the test stops the tracer once it has seen enough.
    try:
        with open(stderr_path, "w") as stderr:
            tracer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            wait_until(lambda: "tracing goes on" in stderr_path.read_text() or tracer.poll() is not None,
                       300, "the disk-full error")
            alive_after_failure = tracer.poll() is None
            # More than the last bucket, which is written at the end in any case.
            wait_until(lambda: buckets_after_failure() >= 2 or tracer.poll() is not None,
                       60, "two buckets after the disk-full error")
            buckets_while_running = buckets_after_failure()
            tracer.send_signal(signal.SIGINT)
            out, _ = tracer.communicate(timeout=120)
        finally:
            if tracer.poll() is None:
                tracer.kill()
                tracer.communicate()
    finally:
        kill_tree(workload.process)

    stderr = stderr_path.read_text()
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    unwritten = re.search(r"; (\d+) records were not written\.", errors[0]) if errors else None
    reader = read_stream(output)
    records = list(reader)
    print(f"\n{unwritten and unwritten.group(1)} records not written; {buckets_while_running} buckets "
          f"closed after the failure; {output.stat().st_size} bytes written")

    assert alive_after_failure
    assert tracer.returncode == 74, stderr
    assert len(errors) == 1, stderr
    assert f"writing {output} failed: No space left on device" in errors[0]
    assert unwritten is not None, errors[0]
    assert int(unwritten.group(1)) > 0
    assert "Traceback" not in stderr
    assert out == ""
    assert buckets_while_running >= 2
    assert reader.problem is None
    assert reader.trailer is None
    assert any(r["type"] == "exec" and r["role"] == role for r in records)


def test_small_ring_buffer_counts_losses(tmp_path, monkeypatch):
    workers, rounds, calls = 4, 1500, 200000
    private_prefix = use_private_prefix(monkeypatch)
    tracer = LiveTracer(tmp_path / "lossy.msgpack", ["--ringbuf-pages", "1"])
    role = unique_role("lossy")
    workload = None
    try:
        tracer.wait_ready()
        workload = InlineWorkload(role, STORM_AND_GETPPID, workers, rounds, calls, title_prefix=private_prefix)
        workload.run(tracer, timeout=300)
        records_after(tracer, time.monotonic_ns())
    finally:
        code, _ = tracer.stop()
        if workload is not None:
            kill_tree(workload.process)

    records = tracer.read()
    trailer = records[-1]
    bucket_lost = sum(r.get("lost", {}).get("events", 0) for r in records if r["type"] == "bucket")
    summary = role_summary(records, role)
    recorded = summary["process_forks"] + summary["execs"] + summary["exits"]
    # Forks of the workers and of every /bin/true, their execs, and the exits
    # of all of them and of the root.
    expected = (workers * rounds + workers) + workers * rounds + (workers * rounds + workers + 1)
    report = report_json(tracer.path)
    print(f"\n{bucket_lost} events lost; {recorded} of {expected} events of the role recorded")

    assert code == 0, tracer.stderr_text()
    assert trailer["type"] == "trailer"
    assert bucket_lost > 0
    assert trailer["lost"]["events"] == bucket_lost
    assert report["lower_bounds"] is True
    assert report["lost"]["events"] == bucket_lost
    assert recorded < expected
    assert recorded + bucket_lost == expected
    assert summary["syscalls"].get(GETPPID) == calls
    assert report["roles"][role]["syscalls"]["getppid"] == calls


@pytest.fixture(scope="module")
def secret_runs(tmp_path_factory):
    """Trace one workload with secrets in its arguments by three tracers at once.

    Returns (runs, role, env_value): runs maps each redaction setting
    (default, no_redact, extra_pattern) to (stream path, trace's stdout).
    """
    directory = tmp_path_factory.mktemp("secrets")
    settings = {"default": [], "no_redact": ["--no-redact"], "extra_pattern": ["--redact", r"hunter\d"]}
    tracers = {name: LiveTracer(directory / f"{name}.msgpack", args) for name, args in settings.items()}
    outputs = {}
    codes = {}
    role = unique_role("secrets")
    env_value = f"env-{uuid.uuid4().hex}"
    workload = None
    try:
        for tracer in tracers.values():
            tracer.wait_ready()
        env = dict(os.environ, AGENT_TRACER_TEST_ENV=env_value)
        workload = InlineWorkload(role, EXEC_WITH_ARGUMENTS, "sh", *SECRET_ARGUMENTS, executable="/bin/sh", env=env)
        for tracer in tracers.values():
            tracer.wait_for_record(
                lambda r: r.get("type") == "root" and r.get("pid") == workload.pid, what=f"root {workload.pid}"
            )
        workload.run(tracers["default"])
        for tracer in tracers.values():
            settled(tracer, workload.pid)
    finally:
        for name, tracer in tracers.items():
            codes[name], outputs[name] = tracer.stop()
        if workload is not None:
            kill_tree(workload.process)

    for name, tracer in tracers.items():
        assert codes[name] == 0, tracer.stderr_text()
    return {name: (tracer.path, outputs[name]) for name, tracer in tracers.items()}, role, env_value


def exec_argv(path, role):
    with read_stream(path) as reader:
        return [r["argv"] for r in reader if r["type"] == "exec" and r["role"] == role]


def root_cmdline(path, role):
    with read_stream(path) as reader:
        return [r["cmdline"] for r in reader if r["type"] == "root" and r["role"] == role]


def test_secrets_redacted_by_default(secret_runs):
    runs, role, _ = secret_runs
    path, trace_output = runs["default"]
    stream = path.read_bytes()
    reports = [run_tracer_command(["report", "--format", name, str(path)]) for name in ("table", "json", "csv")]

    assert exec_argv(path, role) == [["/bin/true", *REDACTED_ARGUMENTS]]
    assert len(root_cmdline(path, role)) == 1
    for secret in SECRET_TEXTS:
        assert secret.encode() not in stream, secret
        assert secret not in trace_output, secret
        assert secret not in root_cmdline(path, role)[0], secret
        for report in reports:
            assert report.returncode == 0, report.stderr
            assert secret not in report.stdout, secret


def test_secrets_kept_with_no_redact(secret_runs):
    runs, role, _ = secret_runs
    path, _ = runs["no_redact"]
    stream = path.read_bytes()

    assert exec_argv(path, role) == [["/bin/true", *SECRET_ARGUMENTS]]
    for secret in SECRET_TEXTS:
        assert secret.encode() in stream, secret
        assert secret in root_cmdline(path, role)[0], secret


def test_extra_redact_pattern(secret_runs):
    runs, role, _ = secret_runs
    path, _ = runs["extra_pattern"]
    stream = path.read_bytes()

    assert exec_argv(path, role) == [["/bin/true", *REDACTED_ARGUMENTS[:-1], REDACTED]]
    assert b"hunter7" not in stream
    for secret in SECRET_TEXTS:
        assert secret.encode() not in stream, secret


@pytest.mark.parametrize("name", ["default", "no_redact", "extra_pattern"])
def test_environment_never_recorded(secret_runs, name):
    runs, role, env_value = secret_runs
    path, trace_output = runs[name]

    assert exec_argv(path, role) != []
    assert env_value.encode() not in path.read_bytes()
    assert env_value not in trace_output
