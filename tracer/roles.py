"""Role rules: which processes are role roots, and the numbers the kernel knows roles by."""

import logging
import re
import sys
from dataclasses import dataclass
from importlib import resources

from .errors import TracerError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9 and 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

ROLE_GROUP = "role"

# The kernel keeps a task's comm in TASK_COMM_LEN (16) bytes, NUL included.
COMM_MAX_BYTES = 15


class RoleRuleError(TracerError):
    """A role rule or preset is malformed."""

    exit_code = 2


@dataclass(frozen=True)
class RoleRule:
    """A rule that makes a process a role root: a regex on its command line or its comm.

    `name` is the role's name; a rule whose pattern has a named group
    `role` takes the role's name from that group instead.
    """

    name: str
    pattern: re.Pattern
    field: str = "cmdline"

    def match(self, cmdline, comm, pid=None):
        """Return the role name when the process matches, else None; `pid` is not used."""
        subject = cmdline if self.field == "cmdline" else comm
        found = self.pattern.search(subject)
        if not found:
            return None
        if ROLE_GROUP in self.pattern.groupindex and found.group(ROLE_GROUP):
            return found.group(ROLE_GROUP)
        return self.name

    def describe(self):
        """Return the rule as the stream header and `presets` show it."""
        return f"{self.field} =~ /{self.pattern.pattern}/"


def compile_rule(name, pattern, field="cmdline"):
    """Build a RoleRule, or raise RoleRuleError naming the rule and what is wrong."""
    if field not in ("cmdline", "comm"):
        raise RoleRuleError(f"role '{name}': unknown field '{field}' (expected cmdline or comm)")
    if not name or not re.fullmatch(r"[\w.:-]+", name):
        raise RoleRuleError(f"role name '{name}' is invalid: use letters, digits, '_', '.', ':' or '-'")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise RoleRuleError(f"role '{name}': invalid regular expression '{pattern}': {error}") from error
    return RoleRule(name=name, pattern=compiled, field=field)


@dataclass(frozen=True)
class RoleSet:
    """Ordered role rules; the first rule that matches a process names its role."""

    rules: tuple
    preset: str = None

    def match(self, cmdline, comm="", pid=None):
        """Return the role of a process with this command line, comm and pid, or None.

        Rules on a pid (`--pid`) match only when `pid` is given.
        """
        for rule in self.rules:
            role = rule.match(cmdline, comm, pid)
            if role:
                return role
        return None

    @property
    def uses_comm(self):
        """Tell whether any rule matches on comm, so that scans must read it."""
        return any(rule.field == "comm" for rule in self.rules)

    @property
    def uses_pid(self):
        """Tell whether any rule matches one process by its pid."""
        return any(rule.field == "pid" for rule in self.rules)

    def describe(self):
        """Return the rules as the stream header lists them."""
        return [{"name": rule.name, "rule": rule.describe()} for rule in self.rules]


def preset_names():
    """List the bundled presets."""
    files = resources.files("tracer.presets")
    return sorted(entry.name[:-5] for entry in files.iterdir() if entry.name.endswith(".toml"))


def load_preset(name):
    """Load a bundled preset by name, or raise RoleRuleError listing the known ones."""
    path = resources.files("tracer.presets") / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(preset_names())
        raise RoleRuleError(f"unknown preset '{name}'; known presets: {known}")
    return parse_rules(tomllib.loads(path.read_text()), source=f"preset {name}", preset=name)


def parse_rules(document, source, preset=None):
    """Build a RoleSet from a parsed TOML document with a [[roles]] array."""
    entries = document.get("roles")
    if not isinstance(entries, list) or not entries:
        raise RoleRuleError(f"{source}: no [[roles]] entries")

    rules = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or "name" not in entry:
            raise RoleRuleError(f"{source}: role #{index} has no name")
        fields = [key for key in ("cmdline", "comm", "pid") if key in entry]
        if len(fields) != 1:
            raise RoleRuleError(
                f"{source}: role '{entry['name']}' needs exactly one of cmdline, comm or pid"
            )
        try:
            if fields[0] == "pid":
                rules.append(pid_rule(entry["pid"], entry["name"]))
            else:
                rules.append(compile_rule(entry["name"], entry[fields[0]], fields[0]))
        except RoleRuleError as error:
            raise RoleRuleError(f"{source}: {error}") from None
    return RoleSet(rules=tuple(rules), preset=preset)


def check_role_name(name):
    """Raise RoleRuleError unless `name` can name a role."""
    if not isinstance(name, str) or not re.fullmatch(r"[\w.:-]+", name):
        raise RoleRuleError(
            f"role name '{name}' is invalid: use letters, digits, '_', '.', ':' or '-'"
        )


def comm_rule(comm, name=None):
    """Build a rule that matches processes whose /proc/PID/comm is exactly `comm`.

    The role is named `name`, else `comm`. A comm longer than the kernel
    keeps is cut to its first 15 bytes, as the kernel cuts it.
    """
    if not comm or "\n" in comm or "\0" in comm:
        raise RoleRuleError(f"comm '{comm}' is invalid: give a process name such as chef-client")
    encoded = comm.encode()
    matched_comm = encoded[:COMM_MAX_BYTES].decode("utf-8", "ignore")
    if len(encoded) > COMM_MAX_BYTES:
        log.warning(
            "comm '%s' is longer than the %d bytes the kernel keeps; matching '%s'",
            comm,
            COMM_MAX_BYTES,
            matched_comm,
        )
    name = name or comm
    check_role_name(name)
    return RoleRule(name=name, pattern=re.compile(f"^{re.escape(matched_comm)}$"), field="comm")


def read_start_ticks(pid, proc="/proc"):
    """Return the start time of process `pid` in clock ticks after boot, or None if it is gone.

    Field 22 of /proc/PID/stat (proc(5)). A pid and its start time together
    name one process: a reused pid has a later start time.
    """
    try:
        with open(f"{proc}/{pid}/stat", "rb") as source:
            text = source.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(b")") + 2 :].split()
    return int(fields[22 - 3])


@dataclass(frozen=True)
class PidRule:
    """A rule that makes one running process a role root, picked by its pid.

    The process's descendants belong to the role like any root's. The rule
    keeps the start time the process had when the rule was made, so that a
    later process that reuses the pid does not match.
    """

    name: str
    pid: int
    start_ticks: int
    proc: str = "/proc"
    field: str = "pid"

    def match(self, cmdline, comm, pid=None):
        """Return the role name when `pid` is this rule's process, else None."""
        if pid != self.pid:
            return None
        if read_start_ticks(pid, self.proc) != self.start_ticks:
            return None
        return self.name

    def describe(self):
        """Return the rule as the stream header and `presets` show it."""
        return f"pid == {self.pid}"


def pid_rule(pid, name=None, proc="/proc"):
    """Build a PidRule for running process `pid`, or raise RoleRuleError if there is none.

    The role is named `name`, else `pid-PID`.
    """
    if type(pid) is not int or pid <= 0:
        raise RoleRuleError(
            f"pid '{pid}' is invalid: give the positive process id of a running process"
        )
    name = name or f"pid-{pid}"
    check_role_name(name)
    start_ticks = read_start_ticks(pid, proc)
    if start_ticks is None:
        raise RoleRuleError(
            f"role '{name}': no process with pid {pid} is running; "
            f"check the pid with 'ps -p {pid}'"
        )
    # /proc/TID exists for every thread too, but roles attach to processes.
    tgid = read_tgid(pid, proc)
    if tgid is not None and tgid != pid:
        raise RoleRuleError(f"role '{name}': {pid} is a thread of process {tgid}; give --pid {tgid}")
    return PidRule(name=name, pid=pid, start_ticks=start_ticks, proc=proc)


def read_tgid(pid, proc="/proc"):
    """Return the thread group id (the process id) of task `pid` from /proc/PID/status, or None."""
    try:
        with open(f"{proc}/{pid}/status", "rb") as source:
            for line in source:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline_text(raw):
    """Turn the bytes of /proc/PID/cmdline into one line.

    Arguments are joined with spaces; the NUL padding that a title set by
    rewriting argv (Ruby's `$0=`) leaves behind is dropped.
    """
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


class RoleNumbers:
    """The numbers the kernel knows roles by: 1 and up, assigned as roles appear."""

    def __init__(self, max_roles):
        self.max_roles = max_roles
        self.by_name = {}
        self.names = {}

    def number(self, name):
        """Return the number of role `name`, assigning the next free one; None when full."""
        if name in self.by_name:
            return self.by_name[name]
        number = len(self.by_name) + 1
        if number >= self.max_roles:
            return None
        self.by_name[name] = number
        self.names[number] = name
        return number

    def name(self, number):
        """Return the role name for a kernel role number."""
        return self.names.get(number)
