"""Facts about the machine and the tool versions, for the record of a run."""

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

# Prints where the interpreter finds the tracer package and its BPF sources.
LOCATE_TRACER = (
    "import json, tracer, tracer.bpfdefs as d; "
    "print(json.dumps([tracer.__file__, str(d.bpf_source_dir()), getattr(tracer, '__version__', None)]))"
)


def cpu_model():
    """Return the first "model name" of /proc/cpuinfo, or the machine type."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def first_line(argv):
    """Return the first non-empty line argv prints (stdout or stderr), or None when it fails or cannot run."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def load_average():
    """Return the 1, 5 and 15 minute load averages."""
    return list(os.getloadavg())


def package_version(package):
    return first_line(["dpkg-query", "-W", "-f", "${Version}", package])


def describe_machine():
    """Return CPU count, kernel, CPU model, distribution and the versions of the compared tools."""
    distribution = None
    try:
        distribution = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "distribution": distribution,
        "versions": {
            "strace": first_line(["strace", "-V"]),
            "perf": first_line(["perf", "version"]),
            "bpftrace": first_line(["bpftrace", "--version"]),
            "bcc (python3-bpfcc)": package_version("python3-bpfcc"),
            "bpfcc-tools": package_version("bpfcc-tools"),
            "gcc": first_line(["gcc", "--version"]),
        },
    }


def tracer_source(python, repo):
    """Return which agent-tracer was measured: its files, a hash of its BPF program and the git commit."""
    try:
        result = subprocess.run(
            [python, "-c", LOCATE_TRACER], capture_output=True, text=True, timeout=60, check=True
        )
        package_file, bpf_dir, version = json.loads(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        return {"error": f"cannot import tracer with {python}: {error}"}

    package_dir = Path(package_file).parent
    digest = hashlib.sha256()
    for path in sorted(Path(bpf_dir).glob("*.[ch]")) + sorted(package_dir.rglob("*.py")):
        digest.update(path.read_bytes())
    head = first_line(["git", "-C", str(package_dir.parent), "rev-parse", "HEAD"])
    changes = first_line(
        ["git", "-C", str(package_dir.parent), "status", "--porcelain", "--", "tracer", "bpf"]
    )
    return {
        "package": str(package_dir),
        "bpf_sources": bpf_dir,
        "version": version,
        "sources_sha256": digest.hexdigest(),
        "git_head": head,
        "uncommitted_changes": changes is not None,
        "repository": str(repo),
    }
