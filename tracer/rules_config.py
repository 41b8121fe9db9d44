"""Read a configuration file that contains role rules and `trace` options in one TOML document.

A file looks like this::

    preset = "opsworks"            # or a list of presets; may be left out

    [[roles]]                      # tried before the presets' rules
    name = "chef"
    cmdline = '^chef-client'       # or comm = 'chef-client', or pid = 1234

    [trace]
    interval = 1.0
    output = "/var/lib/agent-tracer/trace.msgpack"
    rotate_size = "100M"
    metrics_address = "127.0.0.1:9464"

`cmdline` and `comm` are regular expressions searched in the process's
command line and comm, as in the presets. The keys of [trace] are the long
options of `agent-tracer trace` with '_' for '-'. Options given on the
command line win over the file. A relative `output` path is relative to the
working directory of agent-tracer, not to the file.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field

from .metrics import MetricsError, format_address, parse_address
from .output import parse_size as parse_output_size
from .roles import RoleRuleError, RoleSet, comm_rule, load_preset, parse_rules, pid_rule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9 and 3.10 only
    import tomli as tomllib

TOP_LEVEL_KEYS = ("description", "preset", "roles", "trace")
ROLE_KEYS = {"name": str, "cmdline": str, "comm": str, "pid": int}

DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
REPORT_FORMATS = ("table", "json", "csv")

# Minimum bucket, rescan and rotation lengths, as `agent-tracer trace` accepts them.
MIN_INTERVAL_SECONDS = 0.05
MIN_ROTATE_SECONDS = 1
MAX_ROLES = 1023


class ConfigError(RoleRuleError):
    """A configuration file is missing, unreadable or invalid (exit code 2)."""


@dataclass
class Config:
    """A configuration file, read and checked.

    `roles` is None when the file names no preset and no [[roles]]. `trace`
    maps each [trace] key that the file sets to its checked value: sizes in
    bytes, durations in seconds, the metrics address as HOST:PORT.
    """

    path: str
    roles: RoleSet | None = None
    trace: dict = field(default_factory=dict)


# --- values ------------------------------------------------------------------


def _is_number(value):
    # bool is a subclass of int, but TOML keeps them apart, and so do these checks.
    return type(value) in (int, float)


def parse_size(value):
    """Return a size in bytes from a number of bytes or a text that --rotate-size accepts ("100M")."""
    if type(value) is int:
        if value <= 0:
            raise ValueError(f"size {value} must be more than 0 bytes")
        return value
    if not isinstance(value, str):
        raise ValueError(f'{value!r} is not a size: use bytes or a text such as "100M"')
    return parse_output_size(value)


def parse_duration(value):
    """Return seconds from a number of seconds or a text such as "90s", "30m", "1h" or "1d"."""
    if _is_number(value):
        seconds = float(value)
    elif isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if not found:
            raise ValueError(
                f"'{value}' is not a duration: use seconds or a number with s, m, h or d, e.g. 1h"
            )
        seconds = float(found.group(1)) * DURATION_UNITS[found.group(2)]
    else:
        raise ValueError(f'{value!r} is not a duration: use seconds or a text such as "1h"')
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be more than 0 seconds")
    return seconds


def _seconds_at_least(minimum):
    def check(value):
        if not _is_number(value) or value < minimum:
            raise ValueError(f"{value!r} is not a number of seconds of at least {minimum}")
        return float(value)

    return check


def _positive_seconds(value):
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{value!r} is not a positive number of seconds")
    return float(value)


def _boolean(value):
    if type(value) is not bool:
        raise ValueError(f"{value!r} is not true or false")
    return value


def _path(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a file path")
    return value


def _report_format(value):
    if value not in REPORT_FORMATS:
        raise ValueError(f"{value!r} is not one of {', '.join(REPORT_FORMATS)}")
    return value


def _max_roles(value):
    if type(value) is not int or not 1 <= value <= MAX_ROLES:
        raise ValueError(f"{value!r} is not a whole number from 1 to {MAX_ROLES}")
    return value


def _ringbuf_pages(value):
    if type(value) is not int or value < 1 or value & (value - 1):
        raise ValueError(f"{value!r} is not a power of two (a number of pages)")
    return value


def _rotate_seconds(value):
    seconds = parse_duration(value)
    if seconds < MIN_ROTATE_SECONDS:
        raise ValueError(f"{value!r} is shorter than {MIN_ROTATE_SECONDS} second")
    return seconds


def _metrics_address(value):
    try:
        return format_address(*parse_address(value))
    except MetricsError as error:
        raise ValueError(str(error)) from None


# [trace] key → check that returns the value to use or raises ValueError.
TRACE_OPTIONS = {
    "interval": _seconds_at_least(MIN_INTERVAL_SECONDS),
    "duration": _positive_seconds,
    "rescan_interval": _seconds_at_least(MIN_INTERVAL_SECONDS),
    "output": _path,
    "force": _boolean,
    "format": _report_format,
    "no_syscalls": _boolean,
    "max_roles": _max_roles,
    "ringbuf_pages": _ringbuf_pages,
    "rotate_size": parse_size,
    "rotate_interval": _rotate_seconds,
    "metrics_address": _metrics_address,
}

# [trace] keys whose parameter of `agent-tracer trace` has another name.
TRACE_PARAMETERS = {"format": "report_format"}

# `trace` parses --rotate-size itself, from text, so the checked number of
# bytes goes back to it as text.
PARAMETER_FORMS = {"rotate_size": str}


# --- the file ----------------------------------------------------------------


def load_config(path):
    """Read and check the configuration file at `path`.

    Raise ConfigError naming the file, the key and what is wrong.
    """
    path = str(path)
    try:
        with open(path, "rb") as source:
            document = tomllib.load(source)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found; check the path given to --config"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {path} is a directory; give the path of a TOML file"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (invalid byte at offset {error.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    return parse_config(document, path)


def parse_config(document, source):
    """Check a parsed TOML document and return its Config; `source` names the file in errors."""
    _reject_unknown(document, TOP_LEVEL_KEYS, source, "")
    if "description" in document and not isinstance(document["description"], str):
        raise ConfigError(f"{source}: description must be a string")
    return Config(
        path=source, roles=_role_set(document, source), trace=_trace_options(document, source)
    )


def _reject_unknown(table, known, source, section):
    where = f"{source}: {section}" if section else f"{source}:"
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        raise ConfigError(f"{where} unknown key '{key}'{hint}")


def _preset_names(document, source):
    presets = document.get("preset")
    if presets is None:
        return []
    if isinstance(presets, str):
        presets = [presets]
    if (
        not isinstance(presets, list)
        or not presets
        or not all(isinstance(name, str) and name for name in presets)
    ):
        raise ConfigError(
            f'{source}: preset must be a preset name or a list of them, e.g. preset = "opsworks"'
        )
    return presets


def _role_entries(document, source):
    entries = document.get("roles")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(
            f"{source}: roles must be an array of tables: write each role under [[roles]]"
        )

    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{source}: role #{index} is not a table: write each role under [[roles]]"
            )
        label = (
            f"role '{entry['name']}'" if isinstance(entry.get("name"), str) else f"role #{index}"
        )
        _reject_unknown(entry, tuple(ROLE_KEYS), source, f"[[roles]] {label}:")
        for key, expected in ROLE_KEYS.items():
            if key in entry and type(entry[key]) is not expected:
                kind = "a string" if expected is str else "a whole number"
                raise ConfigError(
                    f"{source}: [[roles]] {label}: {key} must be {kind}, not {entry[key]!r}"
                )
    return entries


def _role_set(document, source):
    presets = _preset_names(document, source)
    entries = _role_entries(document, source)
    if not presets and not entries:
        return None

    rules = []
    try:
        if entries:
            rules += parse_rules({"roles": entries}, source=source).rules
        for name in presets:
            rules += load_preset(name).rules
    except ConfigError:
        raise
    except RoleRuleError as error:
        # parse_rules names the file already; load_preset does not.
        message = str(error)
        raise ConfigError(
            message if message.startswith(f"{source}:") else f"{source}: {message}"
        ) from None
    return RoleSet(rules=tuple(rules), preset="+".join(presets) or None)


def _trace_options(document, source):
    table = document.get("trace", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: trace must be a table: write the options under [trace]")
    _reject_unknown(table, tuple(TRACE_OPTIONS), source, "[trace]")

    options = {}
    for key, value in table.items():
        try:
            options[key] = TRACE_OPTIONS[key](value)
        except ValueError as error:
            raise ConfigError(f"{source}: [trace] {key}: {error}") from None
    return options


# --- the command line --------------------------------------------------------


def merge_trace_options(ctx, params, config):
    """Return `params` of `trace` with the config's values where the command line set none.

    A parameter that the user gave on the command line keeps its value; one
    left at its default takes the file's. `ctx` is the click context of
    `trace`.
    """
    from click.core import ParameterSource

    merged = dict(params)
    if config is None:
        return merged
    for key, value in config.trace.items():
        name = TRACE_PARAMETERS.get(key, key)
        if name not in merged:
            raise ConfigError(f"{config.path}: [trace] {key} is not an option of this command")
        if ctx.get_parameter_source(name) in (
            None,
            ParameterSource.DEFAULT,
            ParameterSource.DEFAULT_MAP,
        ):
            merged[name] = PARAMETER_FORMS.get(key, lambda same: same)(value)
    return merged


def pid_rule_from_spec(spec):
    """Build the rule of one `--pid [NAME=]PID` option."""
    name, separator, pid_text = spec.rpartition("=")
    if not pid_text.isdigit() or (separator and not name):
        raise ConfigError(
            f"--pid '{spec}' is not PID or NAME=PID, e.g. --pid 1234 or --pid agent=1234"
        )
    return pid_rule(int(pid_text), name or None)


def comm_rule_from_spec(spec):
    """Build the rule of one `--comm [NAME=]COMM` option: an exact match on /proc/PID/comm."""
    name, separator, comm = spec.partition("=")
    if not separator:
        name, comm = None, spec
    if separator and not (name and comm):
        raise ConfigError(f"--comm '{spec}' is not COMM or NAME=COMM, e.g. --comm chef-client")
    return comm_rule(comm, name)


def choose_role_set(command_line_rules, preset, preset_given, config):
    """Return the role rules of a run, from the command line, the config file and the preset.

    - Rules given on the command line (--role, --comm, --pid) are used,
      followed by the preset's when --preset was given too.
    - Else an explicit --preset is used.
    - Else the config file's rules, when it has any.
    - Else the default preset.
    """
    if command_line_rules:
        rules = tuple(command_line_rules)
        if preset_given:
            return RoleSet(rules=rules + load_preset(preset).rules, preset=preset)
        return RoleSet(rules=rules)
    if not preset_given and config is not None and config.roles is not None:
        return config.roles
    return load_preset(preset)
