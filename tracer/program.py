"""Compile, load and attach the BPF program, and give typed access to its maps."""

import ctypes as ct
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from . import bpfdefs
from .environment import EnvironmentProblem

log = logging.getLogger(__name__)

DEFAULT_MAX_ROLES = 32
DEFAULT_RINGBUF_PAGES = 1024  # 4 MiB with 4 KiB pages: a storm of 2 spawners per CPU lost nothing
DEFAULT_EXEC_STASH = 16384
DEFAULT_OVERFLOW = 1024
DEFAULT_ARGV_AREAS = 65536


def read_pid_max(path="/proc/sys/kernel/pid_max"):
    """Return the kernel's pid_max: the role map needs one slot per possible tgid."""
    return int(Path(path).read_text())


@dataclass
class ProgramOptions:
    """Sizes and switches that shape the compiled program."""

    count_syscalls: bool = True
    max_pid: int = 0  # 0: pid_max of the running kernel
    max_roles: int = DEFAULT_MAX_ROLES
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    exec_stash: int = DEFAULT_EXEC_STASH
    overflow: int = DEFAULT_OVERFLOW
    argv_areas: int = DEFAULT_ARGV_AREAS
    other_role: int = 0  # role number for tasks outside every role; 0 leaves them out


def build_cflags(options, features):
    """Return the compiler flags for bpf/tracer.c."""
    source_dir = Path(str(bpfdefs.bpf_source_dir()))
    max_pid = options.max_pid or read_pid_max()
    flags = [
        f"-I{source_dir}",
        f"-DMAX_PID={max_pid}",
        f"-DMAX_ROLES={options.max_roles}",
        f"-DRINGBUF_PAGES={options.ringbuf_pages}",
        f"-DEXEC_STASH_SIZE={options.exec_stash}",
        f"-DOVERFLOW_SIZE={options.overflow}",
        f"-DARGV_AREA_SIZE={options.argv_areas}",
        f"-DOTHER_ROLE={options.other_role}",
    ]
    flags += features.cflags()
    if options.count_syscalls:
        flags.append("-DCOUNT_SYSCALLS")
        if features.exec_attempts:
            flags.append("-DTRACE_EXEC_ATTEMPTS")
    return flags


def program_text(options, features):
    """Return the program as BCC will compile it: the flags, then the source."""
    source_dir = Path(str(bpfdefs.bpf_source_dir()))
    defines = "\n".join(
        "#define " + flag[2:].replace("=", " ", 1)
        for flag in build_cflags(options, features)
        if flag.startswith("-D")
    )
    return f"/* build flags */\n{defines}\n\n" + (source_dir / "tracer.c").read_text()


def release_compiler_memory():
    """Give the heap that BCC's compiler freed back to the system (glibc only).

    LLVM leaves tens of MiB of freed heap behind after the compile; the
    tracer runs for hours and should not keep it.
    """
    try:
        ct.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class TracerProgram:
    """The loaded BPF program: its maps and its event buffer."""

    def __init__(self, bcc, options, features):
        self.options = options
        self.features = features
        self.max_pid = options.max_pid or read_pid_max()
        source = Path(str(bpfdefs.bpf_source_dir())) / "tracer.c"

        started = time.monotonic()
        try:
            self.bpf = bcc.BPF(src_file=str(source).encode(), cflags=build_cflags(options, features))
        except Exception as error:  # BCC raises bare Exception for compile and load failures
            raise EnvironmentProblem(
                f"compiling or loading the BPF program failed ({error}); the compiler's "
                "messages are above. Check the kernel headers (agent-tracer doctor)"
            ) from error
        self.load_seconds = time.monotonic() - started
        log.info("BPF program compiled, loaded and attached in %.2f s", self.load_seconds)
        release_compiler_memory()

        self.exec_event_type = self.bpf["exec_scratch"].sLeaf
        self.event_type = dict(self.exec_event_type._fields_)["hdr"]
        self.fork_event_type = self.bpf["fork_event_layout"].sLeaf
        self.argv_area_map = self.bpf["argv_area"]
        self.set_argv_capture(True)
        self.role_map = self.bpf["role_of_tgid"]
        self.thread_map = None if features.exit_group_dead else self.bpf["thread_count"]

    def set_role(self, tgid, role, threads=1):
        """Give process tgid a role number (0 removes it) in the kernel's role map."""
        if tgid >= self.max_pid:
            return False
        self.role_map[ct.c_int(tgid)] = ct.c_uint16(role)
        if self.thread_map is not None and role:
            self.thread_map[ct.c_int(tgid)] = ct.c_uint32(threads)
        return True

    def set_argv_area(self, tgid, area):
        """Tell the kernel where process tgid keeps its argv area, so that its forks carry its title.

        area is (arg_start, arg_end) from /proc/PID/stat.
        """
        start, end = area
        if start and end > start:
            value = self.argv_area_map.Leaf(start, end - start)
            self.argv_area_map[ct.c_uint32(tgid)] = value

    def set_argv_capture(self, enabled):
        """Turn the copying of exec arguments on or off (the path is always kept)."""
        key = ct.c_uint32(bpfdefs.constant("SETTING_CAPTURE_ARGV"))
        self.bpf["settings"][key] = ct.c_uint32(1 if enabled else 0)

    def program_fds(self):
        """Return the file descriptors of the loaded BPF programs."""
        return [function.fd for function in self.bpf.funcs.values()]

    def role_of(self, tgid):
        """Return the kernel's role number for tgid (0 when not attributed)."""
        if tgid >= self.max_pid:
            return 0
        return self.role_map[ct.c_int(tgid)].value & bpfdefs.constant("ROLE_MASK")

    def open_events(self, callback):
        """Route every event to callback(event, payload).

        payload is the exec_args struct of exec and exec_failed events, the
        parent's title bytes of a fork event that carries one, else None.
        """
        event_ptr = ct.POINTER(self.event_type)
        exec_ptr = ct.POINTER(self.exec_event_type)
        exec_kinds = {bpfdefs.constant("EVENT_EXEC"), bpfdefs.constant("EVENT_EXEC_FAILED")}
        fork_kind = bpfdefs.constant("EVENT_FORK")
        exec_size = ct.sizeof(self.exec_event_type)
        fork_size = ct.sizeof(self.fork_event_type)
        title_offset = self.fork_event_type.title.offset
        title_size = self.fork_event_type.title.size
        length_offset = self.fork_event_type.title_len.offset

        def on_event(_ctx, data, size):
            event = ct.cast(data, event_ptr).contents
            if event.kind in exec_kinds and size >= exec_size:
                callback(event, ct.cast(data, exec_ptr).contents.args)
            elif event.kind == fork_kind and size >= fork_size:
                length = ct.c_uint32.from_address(data + length_offset).value
                callback(event, ct.string_at(data + title_offset, min(length, title_size)))
            else:
                callback(event, None)
            return 0

        def on_perf_event(cpu, data, size):
            on_event(None, data, size)

        def on_lost(count):
            self.perf_lost += count

        self.perf_lost = 0
        if self.features.ring_buffer:
            self.bpf["events"].open_ring_buffer(on_event)
        else:
            self.bpf["events"].open_perf_buffer(on_perf_event, page_cnt=256, lost_cb=on_lost)

    def drain_events(self):
        """Hand every queued event to the callback without waiting."""
        if self.features.ring_buffer:
            self.bpf.ring_buffer_consume()
        else:
            self.bpf.perf_buffer_poll(timeout=0)

    def close(self):
        """Detach every program and free the maps."""
        self.bpf.cleanup()
