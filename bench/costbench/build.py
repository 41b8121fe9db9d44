"""Build the C workloads with gcc into bench/bin/ (git-ignored), when a source is newer than its binary."""

import logging
import subprocess
from pathlib import Path

from .processes import BenchError

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIR = BENCH_DIR / "workloads"
BIN_DIR = BENCH_DIR / "bin"

# binary name -> source file in bench/workloads/
PROGRAMS = {
    "getppid-loop": "getppid_loop.c",
    "spawn-loop": "spawn_loop.c",
    "tree-rusage": "tree_rusage.c",
}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]


def build_workloads(bin_dir=BIN_DIR):
    """Compile every workload that is missing or older than its sources; return name -> path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    headers = list(SOURCE_DIR.glob("*.h"))
    paths = {}

    for name, source_name in PROGRAMS.items():
        source = SOURCE_DIR / source_name
        binary = bin_dir / name
        paths[name] = binary
        newest_input = max(path.stat().st_mtime for path in [source, *headers])
        if binary.exists() and binary.stat().st_mtime >= newest_input:
            continue

        command = ["gcc", *CFLAGS, "-o", str(binary), str(source)]
        log.info("building %s", binary)
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError as error:
            raise BenchError(
                "gcc not found; install it (apt-get install gcc) or let bench/run install it"
            ) from error
        if result.returncode != 0:
            raise BenchError(f"building {binary} failed:\n{result.stderr.strip()}")

    return paths
