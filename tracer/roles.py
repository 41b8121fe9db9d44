"""Role rules: which processes are role roots, and the numbers the kernel knows roles by."""

import re
import sys
from dataclasses import dataclass
from importlib import resources

from .errors import TracerError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9 and 3.10 only
    import tomli as tomllib

ROLE_GROUP = "role"


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

    def match(self, cmdline, comm):
        """Return the role name when the process matches, else None."""
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

    def match(self, cmdline, comm=""):
        """Return the role of a process with this command line and comm, or None."""
        for rule in self.rules:
            role = rule.match(cmdline, comm)
            if role:
                return role
        return None

    @property
    def uses_comm(self):
        """Tell whether any rule matches on comm, so that scans must read it."""
        return any(rule.field == "comm" for rule in self.rules)

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
        fields = [key for key in ("cmdline", "comm") if key in entry]
        if len(fields) != 1:
            raise RoleRuleError(f"{source}: role '{entry['name']}' needs exactly one of cmdline or comm")
        rules.append(compile_rule(entry["name"], entry[fields[0]], fields[0]))
    return RoleSet(rules=tuple(rules), preset=preset)


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
