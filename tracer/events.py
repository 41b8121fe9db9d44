"""Turn kernel events into stream records, attributed by user space."""

import ctypes
import logging

from . import bpfdefs

log = logging.getLogger(__name__)


def c_string(raw):
    """Decode a NUL-terminated C char array."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def exec_arguments(args):
    """Return (argv list, truncated flag) from a kernel exec_args struct."""
    argv_max = bpfdefs.constant("ARGV_MAX")
    arg_len = bpfdefs.constant("ARG_LEN")
    # A char-array field of a ctypes Structure reads only up to its first NUL.
    field = type(args).argv
    raw = ctypes.string_at(ctypes.addressof(args) + field.offset, field.size)
    count = min(args.argc, argv_max)
    argv = [c_string(raw[i * arg_len : (i + 1) * arg_len]) for i in range(count)]
    truncated = args.argc > argv_max or any(len(arg) >= arg_len - 1 for arg in argv)
    return argv, truncated


class EventTranslator:
    """Receives events from the kernel and writes their records."""

    def __init__(self, table, numbers, writer):
        self.table = table
        self.numbers = numbers
        self.writer = writer
        self.kinds = bpfdefs.event_kind_names()
        self.counts = {}

    def handle(self, event, exec_args):
        """Write the record of one kernel event (called from the buffer callback)."""
        kind = self.kinds.get(event.kind)
        kernel_role = self.numbers.name(event.role)
        if kind is None or kernel_role is None:
            log.debug("dropping event of unknown kind %s or role %s", event.kind, event.role)
            return

        handler = getattr(self, "_" + kind)
        for record in handler(event, exec_args, kernel_role):
            self.writer.write(record)
            self.counts[record["type"]] = self.counts.get(record["type"], 0) + 1

    def _fork(self, event, title, kernel_role):
        if title is not None:
            records = self.table.note_title(event.ppid, title, c_string(event.comm), event.ts)
        else:
            records = self.table.check_retitle(event.ppid, event.ts)
        role = self.table.on_fork(event.pid, event.ppid, kernel_role)
        records.append({"type": "fork", "ts": event.ts, "pid": event.pid, "ppid": event.ppid, "tid": event.tid, "role": role})
        return records

    def _thread(self, event, _args, kernel_role):
        records = self.table.check_retitle(event.pid, event.ts)
        role = self.table.role_of(event.pid, kernel_role)
        records.append({"type": "thread", "ts": event.ts, "pid": event.pid, "tid": event.tid, "role": role})
        return records

    def _exec(self, event, args, kernel_role):
        argv, truncated = exec_arguments(args)
        record = {
            "type": "exec",
            "ts": event.ts,
            "pid": event.pid,
            "old_tid": event.tid,
            "filename": c_string(args.filename),
            "argv": argv,
            "comm": c_string(event.comm),
            "role": self.table.role_of(event.pid, kernel_role),
        }
        if truncated:
            record["argv_truncated"] = True
        return [record]

    def _exec_failed(self, event, args, kernel_role):
        argv, truncated = exec_arguments(args)
        filename = c_string(args.filename)
        if not filename and args.fd >= 0:
            filename = f"/dev/fd/{args.fd}"
        record = {
            "type": "exec_failed",
            "ts": event.ts,
            "pid": event.pid,
            "tid": event.tid,
            "filename": filename,
            "argv": argv,
            "errno": event.err,
            "role": self.table.role_of(event.pid, kernel_role),
        }
        if truncated:
            record["argv_truncated"] = True
        return [record]

    def _exit(self, event, _args, kernel_role):
        role = self.table.role_of(event.pid, kernel_role)
        self.table.on_exit(event.pid)
        return [{"type": "exit", "ts": event.ts, "pid": event.pid, "role": role}]
