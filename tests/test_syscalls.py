"""Tests of the syscall name tables and of the script that generates them.

None of these needs root. The comparisons with the running kernel's tracefs
and with the installed kernel headers skip, with the reason, where those
cannot be read.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

import pytest

from tracer import syscalls
from tracer.syscalls import tables

REPO = Path(__file__).resolve().parent.parent
TRACEFS_SYSCALL_EVENTS = Path("/sys/kernel/tracing/events/syscalls")
X86_UAPI_HEADER_DIRS = [Path("/usr/include/x86_64-linux-gnu/asm"), Path("/usr/include/asm")]

# git blob ids of the Linux v6.18 files that tables.py was generated from.
# They are the pre-images of the patch that added listns() to every table in
# Linux 6.19, so they are the files as v6.18 released them.
V6_18_SOURCES = {
    "arch/x86/entry/syscalls/syscall_64.tbl": "ced2a1deecd7ce082b786a8e7a7b094f6b74904c",
    "arch/x86/entry/syscalls/syscall_32.tbl": "4877e16da69a50f2225088e556661051dbe3c7a3",
    "arch/arm64/tools/syscall_64.tbl -> scripts/syscall.tbl": (
        "d1ae5e92c615b58ea64eb793e3b615127c2769ce"
    ),
    "arch/arm64/kernel/Makefile.syscalls": "0542a718871afa712446f8c674e680e9d187bb09",
}

# tracefs names a syscalls:sys_enter_* event after the SYSCALL_DEFINE entry
# point (sys_newstat), while the table and __NR_* use the ABI name (stat).
# These are all the x86_64 calls of Linux 6.18's syscall_64.tbl whose two
# names differ: event name -> table name.
TRACEFS_ALIASES = {
    "newstat": "stat",
    "newfstat": "fstat",
    "newlstat": "lstat",
    "newuname": "uname",
    "sendfile64": "sendfile",
    "umount": "umount2",
}


@pytest.fixture(scope="module")
def generator():
    path = REPO / "scripts" / "gen_syscall_tables.py"
    spec = importlib.util.spec_from_file_location("gen_syscall_tables", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# The public API


def test_abis_are_the_three_tables():
    assert syscalls.ABIS == ("x86_64", "i386", "aarch64")


@pytest.mark.parametrize("abi", syscalls.ABIS)
def test_clone3_is_435_on_every_abi(abi):
    assert syscalls.name(435, abi) == "clone3"
    assert syscalls.number("clone3", abi) == 435


@pytest.mark.parametrize("abi", syscalls.ABIS)
@pytest.mark.parametrize(
    ("nr", "call"), [(425, "io_uring_setup"), (426, "io_uring_enter"), (427, "io_uring_register")]
)
def test_io_uring_numbers(abi, nr, call):
    assert syscalls.name(nr, abi) == call
    assert syscalls.number(call, abi) == nr


@pytest.mark.parametrize(("abi", "nr"), [("x86_64", 39), ("i386", 20), ("aarch64", 172)])
def test_getpid_number_per_abi(abi, nr):
    assert syscalls.name(nr, abi) == "getpid"
    assert syscalls.display_name(nr, abi) == "getpid"
    assert syscalls.number("getpid", abi) == nr


@pytest.mark.parametrize("abi", syscalls.ABIS)
def test_number_inverts_name(abi):
    for nr in range(-1, 600):
        call = syscalls.name(nr, abi)
        if call is not None:
            assert syscalls.number(call, abi) == nr, call


def test_tables_are_from_linux_6_18():
    assert tables.KERNEL_VERSION == "6.18"
    assert syscalls.KERNEL_VERSION == "6.18"


@pytest.mark.parametrize("abi", syscalls.ABIS)
def test_newest_numbers_of_6_18_have_names(abi):
    assert syscalls.name(468, abi) == "file_getattr"
    assert syscalls.name(469, abi) == "file_setattr"
    assert max(nr for nr in range(1000) if syscalls.name(nr, abi) is not None) == 469

    # listns() took 470 in Linux 6.19.
    assert syscalls.name(470, abi) is None


def test_uprobe_added_in_6_18_on_x86_64():
    assert syscalls.name(335, "x86_64") == "uretprobe"
    assert syscalls.name(336, "x86_64") == "uprobe"
    assert syscalls.number("uprobe", "i386") is None
    assert syscalls.number("uprobe", "aarch64") is None


def test_x86_64_has_native_numbers_only():
    assert set(tables.X86_64) == set(range(0, 337)) | set(range(424, 470))

    # The x32 rows number rt_sigaction 512; the native one is 13.
    assert syscalls.name(13, "x86_64") == "rt_sigaction"
    assert syscalls.name(512, "x86_64") is None
    assert syscalls.name(547, "x86_64") is None


def test_x86_64_keeps_rows_without_entry_point():
    # syscall_64.tbl lists these with no entry point; the kernel's headers
    # still define __NR_uselib and __NR_lookup_dcookie.
    assert syscalls.name(134, "x86_64") == "uselib"
    assert syscalls.name(212, "x86_64") == "lookup_dcookie"


def test_i386_gaps():
    missing = set(range(0, 470)) - set(tables.I386)
    assert missing == {222, 223, 251, 285, 387, 388, 389, 390, 391, 392, 415}


def test_i386_names_differ_from_x86_64():
    assert syscalls.name(1, "i386") == "exit"
    assert syscalls.name(102, "i386") == "socketcall"
    assert syscalls.name(428, "i386") == "open_tree"


def test_aarch64_numbers():
    missing = set(range(0, 470)) - set(tables.AARCH64)
    assert missing == set(range(244, 260)) | set(range(295, 424))


@pytest.mark.parametrize(
    ("nr", "call"),
    [
        (38, "renameat"),  # ABI "renameat"
        (42, "nfsservctl"),  # "common", implemented as sys_ni_syscall
        (79, "newfstatat"),  # ABI "64"; "stat64" has fstatat64
        (80, "fstat"),
        (163, "getrlimit"),  # ABI "rlimit"
        (164, "setrlimit"),
        (222, "mmap"),  # ABI "64"; "32" has mmap2
        (447, "memfd_secret"),  # ABI "memfd_secret"
    ],
)
def test_aarch64_abi_filter_keeps(nr, call):
    assert syscalls.name(nr, "aarch64") == call


@pytest.mark.parametrize(
    "call",
    ["open", "fstatat64", "fcntl64", "mmap2", "clock_gettime64", "riscv_hwprobe", "cacheflush"],
)
def test_aarch64_abi_filter_drops(call):
    assert syscalls.number(call, "aarch64") is None


@pytest.mark.parametrize("abi", syscalls.ABIS)
@pytest.mark.parametrize("nr", [-1, -435, 1000, 0x40000000 + 39, 2**63])
def test_unknown_number_is_displayed_in_decimal(abi, nr):
    assert syscalls.name(nr, abi) is None
    assert syscalls.display_name(nr, abi) == f"unknown({nr})"


def test_x32_getpid_is_unknown():
    assert syscalls.display_name(0x40000000 + 39, "x86_64") == "unknown(1073741863)"


def test_unused_number_inside_table_is_unknown():
    assert syscalls.display_name(400, "x86_64") == "unknown(400)"
    assert syscalls.display_name(222, "i386") == "unknown(222)"
    assert syscalls.display_name(244, "aarch64") == "unknown(244)"


def test_number_of_unknown_name_is_none():
    assert syscalls.number("no_such_call", "x86_64") is None
    assert syscalls.number("", "aarch64") is None


@pytest.mark.parametrize("abi", ["x32", "amd64", "arm64", "I386", ""])
@pytest.mark.parametrize(
    "lookup",
    [
        lambda abi: syscalls.name(0, abi),
        lambda abi: syscalls.display_name(0, abi),
        lambda abi: syscalls.number("read", abi),
    ],
    ids=["name", "display_name", "number"],
)
def test_unknown_abi_raises(abi, lookup):
    with pytest.raises(ValueError) as error:
        lookup(abi)

    message = str(error.value)
    assert repr(abi) in message
    assert "x86_64, i386, aarch64" in message


def test_abis_for_supported_machines():
    assert syscalls.abis_for_machine("x86_64") == ("x86_64", "i386")
    assert syscalls.abis_for_machine("aarch64") == ("aarch64", None)


@pytest.mark.parametrize("machine", ["arm64", "i686", "riscv64", "s390x", ""])
def test_abis_for_unsupported_machine_raises(machine):
    with pytest.raises(ValueError) as error:
        syscalls.abis_for_machine(machine)

    message = str(error.value)
    assert repr(machine) in message
    assert "x86_64" in message
    assert "aarch64" in message


def test_abis_for_this_machine_are_supported():
    machine = platform.machine()
    if machine not in ("x86_64", "aarch64"):
        pytest.skip(f"this machine is {machine!r}, which has no syscall table")

    native, compat = syscalls.abis_for_machine(machine)
    assert native in syscalls.ABIS
    assert compat is None or compat in syscalls.ABIS


# The generated file


def read_tables_header():
    header = []
    for line in (REPO / "tracer" / "syscalls" / "tables.py").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return header


def test_tables_header_names_version_and_command():
    header = read_tables_header()
    assert "Linux 6.18" in header[0]

    commands = [line for line in header if line.startswith("# Command: ")]
    assert len(commands) == 1
    assert commands[0].startswith("# Command: scripts/gen_syscall_tables.py ")


def test_tables_were_generated_from_v6_18_files():
    sources = {}
    for line in read_tables_header():
        if line.startswith("#   "):
            path, blob_id = line[4:].rsplit(" ", 1)
            sources[path] = blob_id
    assert sources == V6_18_SOURCES


# Comparison with the running kernel


def tracefs_syscall_event_names():
    machine = platform.machine()
    if machine != "x86_64":
        pytest.skip(f"the tracefs comparison covers x86_64 only; this machine is {machine!r}")
    try:
        entries = os.listdir(TRACEFS_SYSCALL_EVENTS)
    except OSError as error:
        pytest.skip(
            f"cannot list {TRACEFS_SYSCALL_EVENTS}: {error.strerror}"
            " (tracefs not mounted there, not root, or no CONFIG_FTRACE_SYSCALLS)"
        )

    names = {entry[len("sys_enter_") :] for entry in entries if entry.startswith("sys_enter_")}
    if not names:
        pytest.skip(f"{TRACEFS_SYSCALL_EVENTS} has no sys_enter_* events")
    return names


def test_tracefs_aliases_match_table():
    for event_name, table_name in TRACEFS_ALIASES.items():
        assert syscalls.number(event_name, "x86_64") is None, f"{event_name} is a table name now"
        assert syscalls.number(table_name, "x86_64") is not None, table_name


def test_tracefs_syscall_events_have_x86_64_names():
    event_names = tracefs_syscall_event_names()

    unnamed = []
    for event_name in sorted(event_names):
        if syscalls.number(TRACEFS_ALIASES.get(event_name, event_name), "x86_64") is None:
            unnamed.append(event_name)
    assert unnamed == [], f"the running kernel has syscalls that tables.py lacks: {unnamed}"


def test_tracefs_events_use_the_aliased_names():
    event_names = tracefs_syscall_event_names()

    # Linux 6.18 names these events after the entry point, not the table name.
    for event_name, table_name in TRACEFS_ALIASES.items():
        assert event_name in event_names, event_name
        assert table_name not in event_names, table_name


# Comparison with the installed kernel headers


def installed_uapi_numbers(header_name):
    for directory in X86_UAPI_HEADER_DIRS:
        path = directory / header_name
        if path.is_file():
            text = path.read_text()
            pattern = r"^#define __NR_(\w+)\s+(\d+)\s*$"
            return {match[1]: int(match[2]) for match in re.finditer(pattern, text, re.M)}

    searched = ", ".join(str(directory) for directory in X86_UAPI_HEADER_DIRS)
    pytest.skip(f"no {header_name} in {searched} (Debian ships it in linux-libc-dev)")


@pytest.mark.parametrize(
    ("abi", "header_name"), [("x86_64", "unistd_64.h"), ("i386", "unistd_32.h")]
)
def test_installed_x86_headers_agree(abi, header_name):
    header = installed_uapi_numbers(header_name)
    assert header, f"{header_name} defines no __NR_* macro"

    # The headers may be older or newer than the tables, so only the calls
    # that both know are compared.
    disagreements = []
    for call, nr in sorted(header.items()):
        ours = syscalls.number(call, abi)
        if ours is not None and ours != nr:
            disagreements.append(f"{call}: header {nr}, table {ours}")
        named = syscalls.name(nr, abi)
        if named is not None and named != call:
            disagreements.append(f"{nr}: header {call}, table {named}")
    assert disagreements == []


# The generator script


SMALL_X86_64 = """\
# The abi is "common", "64" or "x32" for this file.
0\tcommon\tread\t\t\tsys_read
1\t64\twrite\t\t\tsys_write
2\tcommon\tuselib
462 \tcommon  mseal\t\t\tsys_mseal
512\tx32\trt_sigaction\t\tcompat_sys_rt_sigaction
"""

SMALL_I386 = """\
0\ti386\trestart_syscall\t\tsys_restart_syscall
1\ti386\texit\t\t\tsys_exit\t\t\t-\t\t\tnoreturn
"""

SMALL_GENERIC = """\
# renameat is superseded with flags by renameat2
38\trenameat renameat\t\t\tsys_renameat
79\tstat64\tfstatat64\t\t\tsys_fstatat64
79\t64\tnewfstatat\t\t\tsys_newfstatat
172\tcommon\tgetpid\t\t\t\tsys_getpid

258\triscv\triscv_hwprobe\t\t\tsys_riscv_hwprobe
"""

SMALL_ARM64_MAKEFILE = """\
syscall_abis_32 +=
syscall_abis_64 += renameat rlimit memfd_secret

syscalltbl = arch/arm64/tools/syscall_%.tbl
"""

MAKEFILE_6_18 = "VERSION = 6\nPATCHLEVEL = 18\nSUBLEVEL = 0\nEXTRAVERSION =\nNAME = Test\n"


def write_small_tree(root: Path, makefile: str | None = None) -> None:
    files = {
        "arch/x86/entry/syscalls/syscall_64.tbl": SMALL_X86_64,
        "arch/x86/entry/syscalls/syscall_32.tbl": SMALL_I386,
        "scripts/syscall.tbl": SMALL_GENERIC,
        "arch/arm64/kernel/Makefile.syscalls": SMALL_ARM64_MAKEFILE,
    }
    if makefile is not None:
        files["Makefile"] = makefile
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    (root / "arch/arm64/tools").mkdir(parents=True)
    (root / "arch/arm64/tools/syscall_64.tbl").symlink_to("../../../scripts/syscall.tbl")


def run_generator(generator, *arguments) -> int:
    return generator.main([str(argument) for argument in arguments])


def test_generator_leaves_out_x32_rows(generator):
    names = generator.parse_table(SMALL_X86_64, {"common", "64"}, "syscall_64.tbl")
    assert names == {0: "read", 1: "write", 2: "uselib", 462: "mseal"}


def test_generator_filters_by_abi(generator):
    names = generator.parse_table(SMALL_GENERIC, {"common", "64", "renameat"}, "syscall.tbl")
    assert names == {38: "renameat", 79: "newfstatat", 172: "getpid"}


def test_generator_rejects_malformed_row(generator):
    with pytest.raises(generator.TableError) as error:
        generator.parse_table("0\tcommon\tread\nx\tcommon\twrite\n", {"common"}, "bad.tbl")

    assert "bad.tbl:2: expected '<number> <abi> <name> ...'" in str(error.value)
    assert "'x\\tcommon\\twrite'" in str(error.value)


def test_generator_rejects_number_used_twice(generator):
    with pytest.raises(generator.TableError) as error:
        generator.parse_table("5\tcommon\tone\n5\t64\ttwo\n", {"common", "64"}, "dup.tbl")

    assert "dup.tbl:2: number 5 is both 'one' and 'two'" in str(error.value)


def test_generator_rejects_name_used_twice(generator):
    with pytest.raises(generator.TableError) as error:
        generator.parse_table("5\tcommon\tone\n6\tcommon\tone\n", {"common"}, "dup.tbl")

    assert "dup.tbl:2: name 'one' has both numbers 5 and 6" in str(error.value)


def test_generator_rejects_table_without_selected_abi(generator):
    with pytest.raises(generator.TableError) as error:
        generator.parse_table(SMALL_I386, {"common", "64"}, "syscall_32.tbl")

    assert "syscall_32.tbl: no row has one of the ABIs ['64', 'common']" in str(error.value)


def test_generator_reads_arm64_makefile(generator):
    abis, table = generator.parse_arch_syscalls_makefile(SMALL_ARM64_MAKEFILE, "Makefile.syscalls")

    assert abis == ["common", "64", "renameat", "rlimit", "memfd_secret"]
    assert table == "arch/arm64/tools/syscall_64.tbl"


def test_generator_makefile_assignment_replaces_abis(generator):
    text = "syscall_abis_64 := common,64,riscv\n"

    abis, table = generator.parse_arch_syscalls_makefile(text, "Makefile.syscalls")

    assert abis == ["common", "64", "riscv"]
    assert table == "scripts/syscall.tbl"


def test_generator_writes_importable_module(generator, tmp_path):
    kernel = tmp_path / "linux"
    write_small_tree(kernel)
    output = tmp_path / "tables.py"

    assert run_generator(generator, "--kernel-version", "9.9-test", "-o", output, kernel) == 0

    text = output.read_text()
    namespace = {}
    exec(compile(text, str(output), "exec"), namespace)
    assert namespace["KERNEL_VERSION"] == "9.9-test"
    assert namespace["X86_64"] == {0: "read", 1: "write", 2: "uselib", 462: "mseal"}
    assert namespace["I386"] == {0: "restart_syscall", 1: "exit"}
    assert namespace["AARCH64"] == {38: "renameat", 79: "newfstatat", 172: "getpid"}

    assert text.splitlines()[0].endswith("Linux 9.9-test.")
    command = f"scripts/gen_syscall_tables.py --kernel-version 9.9-test -o {output} {kernel}"
    assert f"# Command: {command}\n" in text
    blob_id = generator.git_blob_id(SMALL_GENERIC.encode())
    assert f"#   arch/arm64/tools/syscall_64.tbl -> scripts/syscall.tbl {blob_id}\n" in text


def test_generator_output_is_stable(generator, tmp_path):
    kernel = tmp_path / "linux"
    write_small_tree(kernel)
    output = tmp_path / "tables.py"

    assert run_generator(generator, "--kernel-version", "1.0", "-o", output, kernel) == 0
    first = output.read_text()
    assert run_generator(generator, "--kernel-version", "1.0", "-o", output, kernel) == 0

    assert output.read_text() == first


def test_generator_reads_version_from_makefile(generator, tmp_path):
    kernel = tmp_path / "linux"
    write_small_tree(kernel, MAKEFILE_6_18)
    output = tmp_path / "tables.py"

    assert run_generator(generator, "-o", output, kernel) == 0

    assert 'KERNEL_VERSION = "6.18"' in output.read_text()


def test_generator_reports_missing_directory(generator, tmp_path, caplog):
    missing = tmp_path / "no-kernel"
    output = tmp_path / "out.py"

    assert run_generator(generator, "--kernel-version", "6.18", "-o", output, missing) == 2

    assert f"{missing}: not a directory" in caplog.text
    assert not output.exists()


def test_generator_reports_missing_table(generator, tmp_path, caplog):
    kernel = tmp_path / "linux"
    write_small_tree(kernel)
    (kernel / "arch/x86/entry/syscalls/syscall_32.tbl").unlink()
    output = tmp_path / "out.py"

    assert run_generator(generator, "--kernel-version", "6.18", "-o", output, kernel) == 2

    assert "syscall_32.tbl: not found" in caplog.text
    assert not output.exists()


def test_generator_needs_version_without_makefile(generator, tmp_path, caplog):
    kernel = tmp_path / "linux"
    write_small_tree(kernel)

    assert run_generator(generator, "-o", tmp_path / "out.py", kernel) == 2

    assert "Makefile: not found, so the kernel version is unknown" in caplog.text
    assert "pass --kernel-version" in caplog.text
