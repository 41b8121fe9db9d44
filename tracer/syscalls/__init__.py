"""System call names for the numbers that raw_syscalls:sys_enter reports.

The kernel reports a task's syscall by number, and the numbers depend on the
ABI the task runs in: the native table of the machine (`x86_64` or `aarch64`)
and, on x86_64, the `i386` table for 32-bit programs. The names come from the
kernel's own tables (see tables.py for the version and the files), so that
calls newer than bcc's table, such as clone3 (435 on every ABI here), have
names.

NOTE: x32 programs enter with bit 30 set in the number (0x40000000 + nr), so
their calls show as unknown. AArch32 programs on aarch64 enter with 32-bit ARM
numbers, which have no table here: the caller must not look them up in the
aarch64 table.
"""

from __future__ import annotations

from tracer.syscalls.tables import AARCH64, I386, KERNEL_VERSION, X86_64

__all__ = ["ABIS", "KERNEL_VERSION", "abis_for_machine", "display_name", "name", "number"]

ABIS: tuple[str, ...] = ("x86_64", "i386", "aarch64")

_NAMES: dict[str, dict[int, str]] = {"x86_64": X86_64, "i386": I386, "aarch64": AARCH64}
_NUMBERS: dict[str, dict[str, int]] = {
    abi: {call: nr for nr, call in table.items()} for abi, table in _NAMES.items()
}

# Keys are what os.uname().machine reports on Linux; values are the native ABI
# and the compat ABI whose numbers raw_syscalls:sys_enter may also report.
_MACHINE_ABIS: dict[str, tuple[str, str | None]] = {
    "x86_64": ("x86_64", "i386"),
    "aarch64": ("aarch64", None),
}


def _table(mapping: dict[str, dict], abi: str) -> dict:
    try:
        return mapping[abi]
    except KeyError:
        supported = ", ".join(ABIS)
        raise ValueError(f"unknown syscall ABI {abi!r}: supported ABIs are {supported}") from None


def name(nr: int, abi: str) -> str | None:
    """Return the name of syscall number `nr` in `abi`, or None if the number has none."""
    return _table(_NAMES, abi).get(nr)


def display_name(nr: int, abi: str) -> str:
    """Return the name of syscall number `nr` in `abi`, or "unknown(NR)" with NR in decimal."""
    found = name(nr, abi)
    return found if found is not None else f"unknown({nr})"


def number(name: str, abi: str) -> int | None:
    """Return the number of syscall `name` in `abi`, or None if `abi` has no such call."""
    return _table(_NUMBERS, abi).get(name)


def abis_for_machine(machine: str) -> tuple[str, str | None]:
    """Return (native ABI, compat ABI or None) for a machine name as os.uname() reports it.

    Raise ValueError for a machine that has no table here.
    """
    try:
        return _MACHINE_ABIS[machine]
    except KeyError:
        supported = ", ".join(_MACHINE_ABIS)
        raise ValueError(
            f"unsupported machine {machine!r}: syscall names exist for {supported}"
        ) from None
