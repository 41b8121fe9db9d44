"""Checks and fixes of the machine the tracer runs on.

Each check raises EnvironmentProblem with one line that names what is
missing and what to do, and an exit code from exit_codes.py.
"""

import logging
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from . import exit_codes
from .errors import TracerError

log = logging.getLogger(__name__)

TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS_TRACING = Path("/sys/kernel/debug/tracing")
HEADERS_CACHE = Path(os.environ.get("AGENT_TRACER_HEADERS_CACHE", "/var/cache/agent-tracer/kernel-headers"))
# Directories searched for kernel headers. Tests point them at empty ones.
MODULES_ROOT = Path(os.environ.get("AGENT_TRACER_MODULES_ROOT", "/lib/modules"))
HEADERS_ROOT = Path(os.environ.get("AGENT_TRACER_HEADERS_ROOT", "/usr/src"))
KHEADERS = Path(os.environ.get("AGENT_TRACER_KHEADERS", "/sys/kernel/kheaders.tar.xz"))

# CAP_SYS_ADMIN is 21, CAP_PERFMON 38, CAP_BPF 39 (linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


class EnvironmentProblem(TracerError):
    """The machine lacks something the tracer needs."""

    def __init__(self, message, exit_code=exit_codes.UNAVAILABLE):
        super().__init__(message)
        self.exit_code = exit_code


def require_root():
    """Raise unless running with effective uid 0."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "agent-tracer must run as root to load BPF programs; run it with sudo",
            exit_codes.NO_PERMISSION,
        )


def effective_capabilities(status_path="/proc/self/status"):
    """Return the effective capability mask of this process."""
    with open(status_path) as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def require_bpf_capabilities():
    """Raise when root lacks the capabilities that loading tracing programs needs.

    Root inside a container often runs without CAP_SYS_ADMIN; since 5.8
    CAP_BPF with CAP_PERFMON is enough.
    """
    caps = effective_capabilities()
    has_admin = caps & (1 << CAP_SYS_ADMIN)
    has_bpf = caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)
    if not (has_admin or has_bpf):
        raise EnvironmentProblem(
            "this process lacks CAP_SYS_ADMIN (or CAP_BPF with CAP_PERFMON), which loading "
            "BPF tracing programs needs; run agent-tracer as root outside a restricted container, "
            "or grant those capabilities",
            exit_codes.NO_PERMISSION,
        )


def tracefs_root():
    """Return the mounted tracefs directory, mounting tracefs when it is missing."""
    for path in (TRACEFS, DEBUGFS_TRACING):
        try:
            if (path / "events").is_dir():
                return path
        except PermissionError:
            raise EnvironmentProblem(
                f"tracefs at {path} is not readable by this user; run agent-tracer as root",
                exit_codes.NO_PERMISSION,
            ) from None

    log.info("tracefs is not mounted; mounting it at %s", TRACEFS)
    result = subprocess.run(
        ["mount", "-t", "tracefs", "tracefs", str(TRACEFS)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not (TRACEFS / "events").is_dir():
        reason = result.stderr.strip() or f"exit code {result.returncode}"
        raise EnvironmentProblem(
            f"tracefs is not mounted and mounting it at {TRACEFS} failed ({reason}); "
            f"mount it with 'mount -t tracefs tracefs {TRACEFS}' and check that the kernel "
            "has CONFIG_TRACING"
        )
    return TRACEFS


def import_bcc():
    """Import and return the bcc module, or raise with how to install it."""
    try:
        import bcc
    except ImportError as error:
        raise EnvironmentProblem(
            f"the bcc Python module is not importable ({error}); install the distribution's "
            "package (python3-bpfcc on Debian and Ubuntu, python3-bcc elsewhere) and run "
            "agent-tracer from a virtual environment made with --system-site-packages; "
            "the PyPI package named 'bcc' is a different project"
        ) from error
    return bcc


def _version_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"[.-]", name)]


def running_kernel_headers(release=None):
    """Return the header tree for the running kernel, or None if there is none."""
    release = release or platform.release()
    build = MODULES_ROOT / release / "build"
    if (build / "include").is_dir() or (build / "Makefile").is_file():
        return build
    return None


def distribution_header_trees(src=None):
    """List (flavour tree, common tree) pairs of installed distribution headers, newest first.

    Debian splits each version into linux-headers-V-FLAVOUR (generated files)
    and linux-headers-V-common (the rest); Ubuntu into linux-headers-V-FLAVOUR
    and linux-headers-V.
    """
    src = src or HEADERS_ROOT
    pairs = []
    for tree in src.glob("linux-headers-*"):
        if tree.name.endswith("-common") or not (tree / "include").is_dir():
            continue
        if not (tree / "include" / "generated").is_dir():
            continue
        stem = tree.name.rsplit("-", 1)[0]
        for common in (src / f"{stem}-common", src / stem):
            if (common / "include" / "linux").is_dir():
                pairs.append((tree, common))
                break
        else:
            if (tree / "include" / "linux").is_dir():
                pairs.append((tree, tree))
    pairs.sort(key=lambda pair: _version_key(pair[0].name), reverse=True)
    return pairs


def merge_header_trees(flavour, common, cache=HEADERS_CACHE):
    """Build (once) a tree of symlinks joining a split header package, and return it.

    BCC_KERNEL_SOURCE takes one directory, while Debian and Ubuntu ship the
    headers of one kernel in two.
    """
    target = cache / flavour.name
    done = target / ".agent-tracer-complete"
    if done.exists():
        return target

    staging = cache / f".{flavour.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for tree in (common, flavour) if common != flavour else (flavour,):
        for directory, _subdirs, files in os.walk(tree, followlinks=True):
            relative = Path(directory).relative_to(tree)
            (staging / relative).mkdir(parents=True, exist_ok=True)
            for name in files:
                link = staging / relative / name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(Path(directory) / name)
    (staging / done.name).touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def prepare_kernel_headers(release=None):
    """Make sure BCC finds kernel headers; return a warning to show, or None.

    Headers of the running kernel are used when they exist. Otherwise the
    newest distribution headers are joined into one tree and BCC is pointed
    at it through BCC_KERNEL_SOURCE. That is safe for this program because it
    reads no kernel struct: only tracepoint fields, whose layout BCC takes
    from tracefs, and BPF helpers.
    """
    release = release or platform.release()
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return None
    if running_kernel_headers(release) is not None:
        return None
    if KHEADERS.exists():
        return None

    pairs = distribution_header_trees()
    if not pairs:
        raise EnvironmentProblem(
            f"no kernel headers found for the running kernel {release}; install "
            f"linux-headers-{release} (Debian, Ubuntu) or kernel-devel-{release} (Fedora, RHEL), "
            "or on Debian without such a package, linux-headers-amd64 (or your architecture's)"
        )

    flavour, common = pairs[0]
    try:
        merged = merge_header_trees(flavour, common)
    except OSError as error:
        raise EnvironmentProblem(
            f"could not prepare kernel headers from {flavour} in {HEADERS_CACHE}: {error}; "
            "set AGENT_TRACER_HEADERS_CACHE to a writable directory"
        ) from error

    os.environ["BCC_KERNEL_SOURCE"] = str(merged)
    return (
        f"no headers for the running kernel {release}: compiling against {flavour.name}, "
        "which is safe here because the program reads only tracepoint fields and BPF helpers"
    )
