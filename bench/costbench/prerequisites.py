"""Install the compared tools with apt-get when they are missing, and point BCC at kernel headers."""

import logging
import os
import shutil
import subprocess

log = logging.getLogger(__name__)

# command (name on PATH or absolute path) -> Debian package
PACKAGES = {
    "gcc": "gcc",
    "strace": "strace",
    "perf": "linux-perf",
    "/usr/sbin/syscount-bpfcc": "bpfcc-tools",
    "bpftrace": "bpftrace",
    "bpftool": "bpftool",
}


def missing_packages():
    """Return the Debian packages whose command is not installed."""
    missing = []
    for command, package in PACKAGES.items():
        found = os.access(command, os.X_OK) if command.startswith("/") else shutil.which(command)
        if not found:
            missing.append(package)
    return missing


def apt_get(arguments):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        ["apt-get", *arguments], env=env, capture_output=True, text=True, check=False
    )


def install_missing(allowed):
    """Install the missing packages with apt-get; return the packages still missing afterwards.

    A failed install is retried once after `apt-get update`, because a
    fresh machine may have stale package lists.
    """
    missing = missing_packages()
    if not missing:
        return []
    if not allowed:
        log.warning(
            "not installing %s (installs are off); those tools are skipped", " ".join(missing)
        )
        return missing
    if not shutil.which("apt-get"):
        log.warning("apt-get not found; install %s by hand", " ".join(missing))
        return missing

    log.info("installing %s with apt-get", " ".join(missing))
    result = apt_get(["install", "-y", "-q", *missing])
    if result.returncode != 0:
        apt_get(["update", "-q"])
        result = apt_get(["install", "-y", "-q", *missing])
    if result.returncode != 0:
        log.warning(
            "apt-get install %s failed: %s", " ".join(missing), result.stderr.strip()[-500:]
        )
    return missing_packages()


def prepare_bcc_headers():
    """Set BCC_KERNEL_SOURCE as agent-tracer does, so that syscount-bpfcc compiles; return a warning or None."""
    try:
        from tracer.environment import EnvironmentProblem, prepare_kernel_headers
    except ImportError as error:
        return f"tracer.environment not importable ({error}); syscount-bpfcc may find no kernel headers"
    try:
        return prepare_kernel_headers()
    except EnvironmentProblem as error:
        return f"kernel headers: {error}"
