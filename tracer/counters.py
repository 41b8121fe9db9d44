"""Read the kernel's per-CPU counters and turn them into per-bucket deltas."""

import ctypes as ct
import errno
import logging
import operator

from . import bpfdefs

log = logging.getLogger(__name__)


def possible_cpu_count(path="/sys/devices/system/cpu/possible"):
    """Return the number of possible CPUs: the width of every per-CPU map value."""
    count = 0
    with open(path) as ranges:
        for part in ranges.read().strip().split(","):
            low, _, high = part.partition("-")
            count += int(high or low) - int(low) + 1
    return count


class PerCpuU64Array:
    """A BPF_PERCPU_ARRAY of u64, read whole with one BPF_MAP_LOOKUP_BATCH call.

    A per-key read of the syscall counters would take tens of thousands of
    bpf() calls a bucket; one batch call copies them all.
    """

    def __init__(self, table, entries, lib):
        self.table = table
        self.entries = entries
        self.lib = lib
        self.cpus = possible_cpu_count()
        self.keys = (ct.c_uint32 * entries)()
        self.values = (ct.c_uint64 * (entries * self.cpus))()
        self.batch_supported = True

    def read(self):
        """Return a list of per-entry sums over all CPUs."""
        return self.sum_cpus(memoryview(self._read_raw(self.entries)).cast("B"))

    def read_bytes(self, entries=None):
        """Return the raw per-CPU values of the first `entries` entries (all by default) as bytes."""
        entries = self.entries if entries is None else entries
        raw = memoryview(self._read_raw(entries)).cast("B")
        return bytes(raw[: entries * self.cpus * 8])

    def sum_cpus(self, raw):
        """Sum raw per-CPU values (bytes of whole entries) into one value per entry."""
        view = memoryview(raw).cast("Q")
        totals = view[0 :: self.cpus].tolist()
        for cpu in range(1, self.cpus):
            totals = list(map(operator.add, totals, view[cpu :: self.cpus].tolist()))
        return totals

    def _read_raw(self, entries):
        if self.batch_supported:
            count = ct.c_uint32(entries)
            out_batch = ct.c_uint32(0)
            result = self.lib.bpf_lookup_batch(
                self.table.map_fd, None, ct.byref(out_batch), self.keys, self.values, ct.byref(count)
            )
            error = ct.get_errno()
            if result == 0 or error == errno.ENOENT:
                return self.values
            if error not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise OSError(error, f"reading {self.table.Key} counters failed")
            log.info("BPF_MAP_LOOKUP_BATCH unsupported (kernel before 5.6): reading per key")
            self.batch_supported = False

        for index in range(entries):
            per_cpu = self.table.getvalue(ct.c_int(index))
            for cpu in range(self.cpus):
                self.values[index * self.cpus + cpu] = per_cpu[cpu]
        return self.values


class CounterReader:
    """Per-role counters kept in the kernel, diffed between successive reads."""

    def __init__(self, program, lib, numbers):
        constants = bpfdefs.header_constants()
        self.numbers = numbers
        self.max_roles = program.options.max_roles
        self.slots = constants["SYSCALL_SLOTS"]
        self.abi_slots = constants["ABI_SLOTS"]
        self.lost_names = bpfdefs.lost_kind_names()
        self.count_syscalls = program.options.count_syscalls
        self.program = program
        self.previous_perf_lost = 0

        bpf = program.bpf
        self.syscalls = (
            PerCpuU64Array(bpf["syscall_counts"], self.max_roles * self.slots, lib)
            if self.count_syscalls
            else None
        )
        self.overflow = bpf["syscall_overflow"] if self.count_syscalls else None
        self.cpu = PerCpuU64Array(bpf["cpu_ns"], self.max_roles, lib)
        self.lost = PerCpuU64Array(bpf["lost_counts"], len(self.lost_names), lib)

        self.previous_syscalls = bytes(self.max_roles * self.slots * 8 * self.cpu.cpus)
        self.previous_overflow = {}
        self.previous_cpu = [0] * self.max_roles
        self.previous_lost = [0] * len(self.lost_names)

    def read_deltas(self):
        """Return ({role: {"syscalls", "syscalls_compat", "cpu_ns"}}, {lost kind: n}) since the last call."""
        by_role = {}

        def role_entry(role):
            return by_role.setdefault(role, {"syscalls": {}, "syscalls_compat": {}, "cpu_ns": 0})

        if self.syscalls is not None:
            # Role numbers are assigned from 1 up, so only the rows up to the
            # highest assigned one can have counts. Most of those do not
            # change in a bucket: compare raw rows first and sum per-CPU
            # values only where they changed.
            rows = min(len(self.numbers.by_name) + 1, self.max_roles)
            current = self.syscalls.read_bytes(rows * self.slots)
            previous = self.previous_syscalls
            row = self.slots * 8 * self.syscalls.cpus
            for role in range(1, rows):
                start = role * row
                if current[start : start + row] == previous[start : start + row]:
                    continue
                now = self.syscalls.sum_cpus(current[start : start + row])
                before = self.syscalls.sum_cpus(previous[start : start + row])
                for slot in range(self.slots):
                    delta = now[slot] - before[slot]
                    if delta:
                        table = "syscalls_compat" if slot >= self.abi_slots else "syscalls"
                        role_entry(role)[table][slot % self.abi_slots] = delta
            self.previous_syscalls = current + previous[len(current) :]
            self._add_overflow(role_entry)

        cpu = self.cpu.read()
        for role in range(1, self.max_roles):
            delta = cpu[role] - self.previous_cpu[role]
            if delta:
                role_entry(role)["cpu_ns"] = delta
        self.previous_cpu = cpu

        lost_now = self.lost.read()
        lost = {
            self.lost_names[index]: lost_now[index] - self.previous_lost[index]
            for index in range(len(lost_now))
            if lost_now[index] != self.previous_lost[index]
        }
        self.previous_lost = lost_now

        # The perf buffer fallback counts its losses in user space.
        perf_lost = getattr(self.program, "perf_lost", 0)
        if perf_lost != self.previous_perf_lost:
            lost["events"] = lost.get("events", 0) + perf_lost - self.previous_perf_lost
            self.previous_perf_lost = perf_lost
        return by_role, lost

    def _add_overflow(self, role_entry):
        current = {}
        for key, value in self.overflow.items():
            current[(key.role, key.nr, key.compat)] = value.value
        for (role, nr, compat), count in current.items():
            delta = count - self.previous_overflow.get((role, nr, compat), 0)
            if delta:
                table = "syscalls_compat" if compat else "syscalls"
                role_entry(role)[table][nr] = delta
        self.previous_overflow = current
