"""User space's view of attributed processes: roots, inheritance and retitling.

The kernel hands each new process its parent's role at fork, which keeps
every count exact without user space in the loop. User space adds what the
kernel cannot see: which processes are role roots (a rule on the command
line), and a process that retitles itself after fork (an agent worker
forked by its master takes its own title a moment later), which moves it
and its descendants to the new role.
"""

import logging
import os
import time
from dataclasses import dataclass

from . import procfs
from .roles import cmdline_text

log = logging.getLogger(__name__)

# A process acting as a parent has its command line checked for a new title
# at most this often.
RETITLE_CHECK_SECONDS = 0.2


@dataclass
class Proc:
    """An attributed process as user space knows it."""

    pid: int
    ppid: int
    role: str
    is_root: bool = False
    checked_at: float = 0.0
    title: str = None


class ProcessTable:
    """Attributed processes by pid, kept in step with the kernel's role map."""

    def __init__(self, program, rules, numbers, proc=procfs.PROC):
        self.program = program
        self.rules = rules
        self.numbers = numbers
        self.proc = proc
        self.procs = {}
        self.role_full_warned = False
        self.unmapped = 0

    # Kernel map -------------------------------------------------------

    def _give_role(self, pid, role, threads=1):
        number = self.numbers.number(role)
        if number is None:
            if not self.role_full_warned:
                log.warning("more than %d roles: role '%s' is not traced", self.numbers.max_roles - 1, role)
                self.role_full_warned = True
            return False
        if not self.program.set_role(pid, number, threads):
            self.unmapped += 1
            return False
        return True

    # Start-up and rescans ---------------------------------------------

    def seed(self, processes, now_ns):
        """Attribute already-running processes; return the root and task records.

        processes maps pid -> (ppid, cmdline, comm, threads, argv_area). A
        process belongs to its nearest ancestor that is a role root.
        """
        records = []
        roots = {}
        for pid, (_ppid, cmdline, comm, _threads, _argv_area) in processes.items():
            role = self.rules.match(cmdline or "", comm or "", pid=pid)
            if role:
                roots[pid] = role

        for pid in sorted(processes):
            ppid, cmdline, comm, threads, argv_area = processes[pid]
            if pid in self.procs:
                continue
            role, is_root = self._nearest_root(pid, processes, roots)
            if role is None or not self._give_role(pid, role, threads):
                continue
            self.program.set_argv_area(pid, argv_area)
            self.procs[pid] = Proc(pid, ppid, role, is_root, time.monotonic(), cmdline)
            if is_root:
                records.append(
                    {"type": "root", "ts": now_ns, "pid": pid, "role": role, "cmdline": cmdline, "reason": "seed"}
                )
            else:
                records.append(
                    {"type": "task", "ts": now_ns, "pid": pid, "ppid": ppid, "role": role, "comm": comm, "cmdline": cmdline}
                )
        return records

    @staticmethod
    def _nearest_root(pid, processes, roots):
        seen = set()
        current = pid
        while current in processes and current not in seen:
            if current in roots:
                return roots[current], current == pid
            seen.add(current)
            current = processes[current][0]
        return None, False

    def rescan(self, now_ns):
        """Look for new role roots in /proc (an agent restart, a late retitle); return root records."""
        records = []
        for pid in procfs.list_pids(self.proc):
            cmdline = procfs.read_cmdline(pid, self.proc)
            if not cmdline:
                continue
            role = self.rules.match(cmdline, self._comm(pid), pid=pid)
            if not role:
                continue
            known = self.procs.get(pid)
            if known and known.role == role:
                continue
            if not known and self.program.role_of(pid) == self.numbers.by_name.get(role):
                # A child the kernel already attributed, whose fork event is
                # still queued: it carries its parent's title, not a new one.
                continue
            records += self.make_root(pid, role, cmdline, now_ns, "retitle" if known else "rescan")
        return records

    def _comm(self, pid):
        if not self.rules.uses_comm:
            return ""
        return procfs.read_comm(pid, self.proc) or ""

    def make_root(self, pid, role, cmdline, now_ns, reason):
        """Make pid the root of role, moving its known descendants along; return records."""
        previous = self.procs.get(pid)
        stat = procfs.read_stat(pid, self.proc)
        if stat is None and previous is None:
            return []
        # A process that is already gone keeps the parent user space knew.
        ppid, threads, argv_area = stat if stat else (previous.ppid, 1, (0, 0))
        if not self._give_role(pid, role, threads):
            return []
        if stat is not None and not os.path.exists(f"{self.proc}/{pid}"):
            # It exited while its role was being written, maybe after the
            # kernel had cleared its slot: clear it again so a reused pid
            # never inherits the role.
            self.program.set_role(pid, 0)
            return []
        self.program.set_argv_area(pid, argv_area)
        self.procs[pid] = Proc(pid, ppid, role, True, time.monotonic(), cmdline)
        records = [{"type": "root", "ts": now_ns, "pid": pid, "role": role, "cmdline": cmdline, "reason": reason}]

        if previous is None:
            records += self._seed_descendants(pid, now_ns)
        else:
            self._move_descendants(pid, role)
        log.info("pid %d is a root of role %s (%s)", pid, role, reason)
        return records

    def _seed_descendants(self, root, now_ns):
        import psutil

        processes = {}
        try:
            children = psutil.Process(root).children(recursive=True)
        except psutil.Error:
            return []
        for child in children:
            try:
                with child.oneshot():
                    stat = procfs.read_stat(child.pid, self.proc)
                    processes[child.pid] = (
                        child.ppid(),
                        procfs.read_cmdline(child.pid, self.proc),
                        child.name(),
                        child.num_threads(),
                        stat[2] if stat else (0, 0),
                    )
            except psutil.Error:
                continue
        stat = procfs.read_stat(root, self.proc)
        processes[root] = (stat[0] if stat else 0, None, None, 1, (0, 0))
        return self.seed(processes, now_ns)

    def _move_descendants(self, root, role):
        for proc in self.procs.values():
            if proc.is_root or proc.pid == root:
                continue
            ancestor = self._nearest_known_root(proc.pid)
            if ancestor == root and proc.role != role:
                proc.role = role
                self._give_role(proc.pid, role)

    def _nearest_known_root(self, pid):
        seen = set()
        current = self.procs.get(pid)
        while current is not None and current.pid not in seen:
            if current.is_root:
                return current.pid
            seen.add(current.pid)
            current = self.procs.get(current.ppid)
        return None

    # Events -----------------------------------------------------------

    def role_of(self, pid, kernel_role):
        """Return the role of pid: user space's when known, else the kernel's."""
        proc = self.procs.get(pid)
        return proc.role if proc else kernel_role

    def check_retitle(self, pid, now_ns):
        """Check whether a non-root process took a role's title; return root records if so."""
        proc = self.procs.get(pid)
        if proc is None or proc.is_root:
            return []
        now = time.monotonic()
        if now - proc.checked_at < RETITLE_CHECK_SECONDS:
            return []
        proc.checked_at = now
        cmdline = procfs.read_cmdline(pid, self.proc)
        if not cmdline:
            return []
        role = self.rules.match(cmdline, self._comm(pid), pid=pid)
        if not role or role == proc.role:
            return []
        return self.make_root(pid, role, cmdline, now_ns, "retitle")

    def note_title(self, pid, title, comm, now_ns):
        """Take the title a parent had at a fork; return root records if it names a new role."""
        proc = self.procs.get(pid)
        cmdline = cmdline_text(title)
        if proc is None or not cmdline or proc.title == cmdline:
            return []
        proc.title = cmdline
        role = self.rules.match(cmdline, comm, pid=pid)
        if not role or role == proc.role:
            return []
        return self.make_root(pid, role, cmdline, now_ns, "retitle")

    def on_fork(self, child, parent, kernel_role):
        """Record a new process and return its role."""
        role = self.role_of(parent, kernel_role)
        self.procs[child] = Proc(child, parent, role, False, 0.0)
        if role != kernel_role:
            self._give_role(child, role)
        return role

    def on_exit(self, pid):
        """Forget a process whose thread group ended."""
        self.procs.pop(pid, None)
