#!/usr/bin/env python3
"""Generate tracer/syscalls/tables.py from the system call tables of a Linux tree.

The kernel numbers its system calls in plain-text tables, one row per number:
`<number> <abi> <name> [<entry point> [<compat entry point> [noreturn]]]`.
This script reads the tables below KERNEL_DIR, which is a kernel source tree
or a directory with only the files listed below at the same paths. It writes
one dict per ABI from number to name, with the names that the kernel's
scripts/syscallhdr.sh gives the __NR_* macros. Rows without an entry point
(reserved or removed calls such as x86_64's `uselib`) keep their name, as
they do in the kernel's headers.

    x86_64   arch/x86/entry/syscalls/syscall_64.tbl, ABIs "common" and "64".
             The "x32" rows (512-547) are left out because x32 tasks enter
             with bit 30 (__X32_SYSCALL_BIT) set in every number.
    i386     arch/x86/entry/syscalls/syscall_32.tbl, ABI "i386". A 32-bit task
             on an x86_64 kernel enters raw_syscalls:sys_enter with these.
    aarch64  The table that arch/arm64/kernel/Makefile.syscalls names
             (scripts/syscall.tbl through a symlink since Linux 6.11), with
             the ABIs "common,64" that scripts/Makefile.asm-headers sets plus
             the ones Makefile.syscalls adds to syscall_abis_64.

Usage:
    scripts/gen_syscall_tables.py [--kernel-version VERSION] [-o OUTPUT] KERNEL_DIR

The kernel version goes in the header of the output. It is read from
KERNEL_DIR/Makefile unless --kernel-version is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("gen_syscall_tables")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "tracer" / "syscalls" / "tables.py"

X86_64_TABLE = "arch/x86/entry/syscalls/syscall_64.tbl"
I386_TABLE = "arch/x86/entry/syscalls/syscall_32.tbl"
ARM64_MAKEFILE = "arch/arm64/kernel/Makefile.syscalls"

# scripts/Makefile.asm-headers sets these before it includes the
# architecture's Makefile.syscalls, which may add to or replace them.
GENERIC_ABIS_64 = ("common", "64")
GENERIC_TABLE = "scripts/syscall.tbl"

# Python names of the generated dicts, in output order.
ABI_CONSTANTS = {"x86_64": "X86_64", "i386": "I386", "aarch64": "AARCH64"}


class TableError(Exception):
    """An input file is missing or does not read as the kernel writes it."""


@dataclass(frozen=True)
class Source:
    """A kernel file that the output was generated from."""

    path: str
    blob_id: str


@dataclass(frozen=True)
class AbiTable:
    """The names of one ABI by number, and the files they were read from."""

    abi: str
    names: dict[int, str]
    sources: tuple[Source, ...]


def git_blob_id(data: bytes) -> str:
    """Return the id that `git hash-object` gives these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_source(kernel_dir: Path, relative: str) -> tuple[str, Source]:
    """Read a kernel file as text and describe it for the output header."""
    path = kernel_dir / relative
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TableError(
            f"{path}: not found; KERNEL_DIR must be a Linux source tree, or hold {relative}"
        ) from None
    except OSError as error:
        raise TableError(f"{path}: read failed: {error.strerror}") from None

    display_path = relative
    if path.is_symlink():
        target = path.resolve()
        root = kernel_dir.resolve()
        display_path += f" -> {target.relative_to(root) if target.is_relative_to(root) else target}"

    return data.decode("utf-8"), Source(display_path, git_blob_id(data))


def parse_table(text: str, abis: set[str], origin: str) -> dict[int, str]:
    """Return number -> name for the rows of a syscall table whose ABI is in `abis`.

    Raise TableError, naming the file and line, on a row that is not
    `<number> <abi> <name> ...`, and on a number or name that two selected
    rows share.
    """
    names: dict[int, str] = {}
    numbers: dict[str, int] = {}

    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue

        where = f"{origin}:{line_number}"
        if len(fields) < 3 or not fields[0].isdigit() or not fields[2].isidentifier():
            raise TableError(f"{where}: expected '<number> <abi> <name> ...', got {line.strip()!r}")
        nr, abi, name = int(fields[0]), fields[1], fields[2]
        if abi not in abis:
            continue

        if nr in names:
            raise TableError(
                f"{where}: number {nr} is both {names[nr]!r} and {name!r} for ABIs {sorted(abis)}"
            )
        if name in numbers:
            raise TableError(f"{where}: name {name!r} has both numbers {numbers[name]} and {nr}")
        names[nr] = name
        numbers[name] = nr

    if not names:
        raise TableError(f"{origin}: no row has one of the ABIs {sorted(abis)}")
    return dict(sorted(names.items()))


def parse_arch_syscalls_makefile(text: str, origin: str) -> tuple[list[str], str]:
    """Return the 64-bit ABIs and the table path that a Makefile.syscalls sets.

    The ABIs start from GENERIC_ABIS_64; `syscall_abis_64 +=` adds to them and
    `=` or `:=` replaces them. The table path is `syscalltbl` with `%` read as
    64, or GENERIC_TABLE when the file does not set it.
    """
    abis = list(GENERIC_ABIS_64)
    table = GENERIC_TABLE
    assignment = re.compile(r"^\s*(syscall_abis_64|syscalltbl)\s*(\+=|:=|=)\s*(.*?)\s*$")

    for line_number, line in enumerate(text.splitlines(), start=1):
        match = assignment.match(line)
        if not match:
            continue
        variable, operator, value = match.groups()

        if variable == "syscalltbl":
            table = value.replace("$(srctree)/", "").replace("%", "64")
            if "$" in table:
                raise TableError(
                    f"{origin}:{line_number}: cannot resolve the make variables"
                    f" in syscalltbl = {value!r}"
                )
            continue

        words = [word for word in re.split(r"[\s,]+", value) if word]
        abis = abis + words if operator == "+=" else words

    return abis, table


def read_x86_64(kernel_dir: Path) -> AbiTable:
    text, source = read_source(kernel_dir, X86_64_TABLE)
    return AbiTable("x86_64", parse_table(text, {"common", "64"}, source.path), (source,))


def read_i386(kernel_dir: Path) -> AbiTable:
    text, source = read_source(kernel_dir, I386_TABLE)
    return AbiTable("i386", parse_table(text, {"i386"}, source.path), (source,))


def read_aarch64(kernel_dir: Path) -> AbiTable:
    makefile_text, makefile = read_source(kernel_dir, ARM64_MAKEFILE)
    abis, table_path = parse_arch_syscalls_makefile(makefile_text, makefile.path)
    log.info("aarch64: %s with ABIs %s", table_path, ",".join(abis))

    # arch/arm64/tools/syscall_64.tbl is a symlink to scripts/syscall.tbl;
    # read_source reads the target and names both in the output header.
    text, table = read_source(kernel_dir, table_path)
    return AbiTable("aarch64", parse_table(text, set(abis), table.path), (makefile, table))


def read_kernel_version(kernel_dir: Path) -> str:
    """Return the version that the top Makefile of a kernel tree sets, such as 6.18."""
    if not (kernel_dir / "Makefile").is_file():
        raise TableError(
            f"{kernel_dir / 'Makefile'}: not found, so the kernel version is unknown;"
            " pass --kernel-version"
        )
    text, _ = read_source(kernel_dir, "Makefile")
    fields = {}
    for name in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        match = re.search(rf"^{name}\s*=\s*(\S*)\s*$", text, re.MULTILINE)
        if match is None:
            raise TableError(f"{kernel_dir / 'Makefile'}: {name} is not set; pass --kernel-version")
        fields[name] = match.group(1)

    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields["SUBLEVEL"] not in ("", "0"):
        version += f".{fields['SUBLEVEL']}"
    return version + fields["EXTRAVERSION"]


def render(tables: list[AbiTable], kernel_version: str, command: str) -> str:
    """Return the text of tables.py."""
    lines = [
        "# Generated by scripts/gen_syscall_tables.py from the system call tables of"
        f" Linux {kernel_version}.",
        "# Do not edit by hand: run the command below again on the same files instead.",
        "#",
        f"# Command: {command}",
        "#",
        "# Sources, as paths below the kernel tree with their git blob ids:",
    ]
    sources = {source for table in tables for source in table.sources}
    for source in sorted(sources, key=lambda source: source.path):
        lines.append(f"#   {source.path} {source.blob_id}")
    lines += [
        f'"""System call names by number for each ABI, from Linux {kernel_version}."""',
        "",
        f"KERNEL_VERSION = {json.dumps(kernel_version)}",
    ]

    # parse_table accepts only identifiers as names, so they need no escaping.
    for table in tables:
        lines += ["", f"{ABI_CONSTANTS[table.abi]}: dict[int, str] = {{"]
        lines += [f'    {nr}: "{name}",' for nr, name in table.names.items()]
        lines.append("}")

    return "\n".join(lines) + "\n"


def generate(kernel_dir: Path, output: Path, kernel_version: str | None, command: str) -> None:
    """Read the tables below kernel_dir and write the Python module to output."""
    if not kernel_dir.is_dir():
        raise TableError(f"{kernel_dir}: not a directory; give the top of a Linux source tree")
    if kernel_version is None:
        kernel_version = read_kernel_version(kernel_dir)

    tables = [read_x86_64(kernel_dir), read_i386(kernel_dir), read_aarch64(kernel_dir)]
    for table in tables:
        numbers = table.names.keys()
        log.info(
            "%s: %d names, numbers %d to %d", table.abi, len(numbers), min(numbers), max(numbers)
        )

    output.write_text(render(tables, kernel_version, command), encoding="utf-8")
    log.info("wrote %s", output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write tracer/syscalls/tables.py from the system call tables of a Linux tree."
    )
    parser.add_argument(
        "kernel_dir", metavar="KERNEL_DIR", type=Path, help="top directory of the Linux source tree"
    )
    parser.add_argument(
        "--kernel-version",
        help="kernel version for the output header, such as 6.18 (default: KERNEL_DIR/Makefile)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"file to write (default: {DEFAULT_OUTPUT.relative_to(REPO)} in this repository)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["scripts/gen_syscall_tables.py", *arguments])
    try:
        generate(args.kernel_dir, args.output, args.kernel_version, command)
    except TableError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
