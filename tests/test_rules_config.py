"""Tests of configuration files and of the --pid and --comm role rules. None needs root."""

import os
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tracer.roles import (
    PidRule,
    RoleRuleError,
    RoleSet,
    comm_rule,
    compile_rule,
    load_preset,
    pid_rule,
    read_start_ticks,
)
from tracer.rules_config import (
    Config,
    ConfigError,
    choose_role_set,
    comm_rule_from_spec,
    load_config,
    merge_trace_options,
    parse_duration,
    parse_size,
    pid_rule_from_spec,
)

OPSWORKS_ROLES = ["master", "keep_alive", "statistics", "process_command"]


def write_config(tmp_path, text, name="agent-tracer.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def role_names(role_set):
    return [rule.name for rule in role_set.rules]


def config_error(tmp_path, text):
    """Load a config with `text` and return the message of the ConfigError it raises."""
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value), path


# --- a whole file ------------------------------------------------------------


def test_load_config_full_example(tmp_path):
    path = write_config(
        tmp_path,
        """\
        preset = "opsworks"

        [[roles]]
        name = "chef"
        cmdline = '^chef-client'

        [trace]
        interval = 1.0
        output = "/var/lib/agent-tracer/trace.msgpack"
        rotate_size = "100M"
        rotate_interval = "1h"
        metrics_address = "127.0.0.1:9464"
        """,
    )

    config = load_config(path)

    assert config.path == str(path)
    assert role_names(config.roles) == ["chef"] + OPSWORKS_ROLES
    assert config.roles.preset == "opsworks"
    assert config.roles.match("chef-client worker: ppid=1;start=10:00:00;") == "chef"
    assert config.roles.match("opsworks-agent: keep_alive of master 15330") == "keep_alive"
    assert config.trace == {
        "interval": 1.0,
        "output": "/var/lib/agent-tracer/trace.msgpack",
        "rotate_size": 100 * 1024 * 1024,
        "rotate_interval": 3600.0,
        "metrics_address": "127.0.0.1:9464",
    }


def test_load_config_every_trace_option(tmp_path):
    path = write_config(
        tmp_path,
        """\
        [trace]
        interval = 2
        duration = 600
        rescan_interval = 0.5
        output = "out.msgpack"
        force = true
        format = "json"
        no_syscalls = true
        max_roles = 64
        ringbuf_pages = 1024
        rotate_size = 1048576
        rotate_interval = 90
        metrics_address = 9464
        """,
    )

    config = load_config(path)

    assert config.roles is None
    assert config.trace == {
        "interval": 2.0,
        "duration": 600.0,
        "rescan_interval": 0.5,
        "output": "out.msgpack",
        "force": True,
        "format": "json",
        "no_syscalls": True,
        "max_roles": 64,
        "ringbuf_pages": 1024,
        "rotate_size": 1048576,
        "rotate_interval": 90.0,
        "metrics_address": "127.0.0.1:9464",
    }


def test_load_config_empty_file(tmp_path):
    config = load_config(write_config(tmp_path, ""))

    assert config == Config(path=str(tmp_path / "agent-tracer.toml"), roles=None, trace={})


def test_load_config_preset_list(tmp_path):
    path = write_config(tmp_path, 'preset = ["amazon-ssm-agent", "codedeploy-agent"]\n')

    config = load_config(path)

    expected = role_names(load_preset("amazon-ssm-agent")) + role_names(
        load_preset("codedeploy-agent")
    )
    assert role_names(config.roles) == expected
    assert config.roles.preset == "amazon-ssm-agent+codedeploy-agent"


def test_load_config_roles_only(tmp_path):
    path = write_config(
        tmp_path,
        f"""\
        description = "this host's agents"

        [[roles]]
        name = "chef"
        comm = '^chef-client$'

        [[roles]]
        name = "me"
        pid = {os.getpid()}
        """,
    )

    config = load_config(path)

    assert role_names(config.roles) == ["chef", "me"]
    assert config.roles.preset is None
    assert config.roles.uses_comm
    assert config.roles.uses_pid
    assert config.roles.match("anything", "chef-client") == "chef"
    assert config.roles.match("anything", "python3", pid=os.getpid()) == "me"
    assert config.roles.describe()[1] == {"name": "me", "rule": f"pid == {os.getpid()}"}


# --- errors ------------------------------------------------------------------


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"config file {path} not found; check the path given to --config"
    assert raised.value.exit_code == 2
    assert isinstance(raised.value, RoleRuleError)


def test_load_config_directory(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)

    assert (
        str(raised.value) == f"config file {tmp_path} is a directory; give the path of a TOML file"
    )


def test_load_config_invalid_toml(tmp_path):
    message, path = config_error(tmp_path, "preset = opsworks\n")

    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 1" in message


def test_load_config_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "café"\n'.encode("latin-1"))

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert (
        str(raised.value) == f"{path}: not UTF-8 text (invalid byte at offset 18); save it as UTF-8"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ('presets = "opsworks"\n', "unknown key 'presets'; did you mean 'preset'?"),
        ('agent = "x"\n', "unknown key 'agent'; known keys: description, preset, roles, trace"),
        (
            "[trace]\nrotate-size = '1M'\n",
            "[trace] unknown key 'rotate-size'; did you mean 'rotate_size'?",
        ),
        (
            "[trace]\ninterval = 'fast'\n",
            "[trace] interval: 'fast' is not a number of seconds of at least 0.05",
        ),
        (
            "[trace]\ninterval = 0.01\n",
            "[trace] interval: 0.01 is not a number of seconds of at least 0.05",
        ),
        ("[trace]\nduration = -1\n", "[trace] duration: -1 is not a positive number of seconds"),
        ("[trace]\nforce = 'yes'\n", "[trace] force: 'yes' is not true or false"),
        ("[trace]\nformat = 'yaml'\n", "[trace] format: 'yaml' is not one of table, json, csv"),
        ("[trace]\nmax_roles = 0\n", "[trace] max_roles: 0 is not a whole number from 1 to 1023"),
        (
            "[trace]\nmax_roles = true\n",
            "[trace] max_roles: True is not a whole number from 1 to 1023",
        ),
        (
            "[trace]\nringbuf_pages = 1000\n",
            "[trace] ringbuf_pages: 1000 is not a power of two (a number of pages)",
        ),
        ("[trace]\noutput = ''\n", "[trace] output: '' is not a file path"),
        (
            "[trace]\nrotate_size = '100Q'\n",
            "[trace] rotate_size: '100Q' is not a size: use a number of bytes with K, M or G, e.g. 100M",
        ),
        ("[trace]\nrotate_size = 0\n", "[trace] rotate_size: size 0 must be more than 0 bytes"),
        (
            "[trace]\nrotate_interval = 0.5\n",
            "[trace] rotate_interval: 0.5 is shorter than 1 second",
        ),
        (
            "[trace]\nrotate_interval = 'weekly'\n",
            "[trace] rotate_interval: 'weekly' is not a duration: use seconds or a number with s, m, h or d, e.g. 1h",
        ),
        (
            "[trace]\nmetrics_address = ':9464'\n",
            (
                "[trace] metrics_address: metrics address ':9464' has no host; give one, e.g. 127.0.0.1:9464, "
                "or 0.0.0.0:9464 to listen on every interface"
            ),
        ),
        ("trace = 1\n", "trace must be a table: write the options under [trace]"),
        (
            'preset = ""\n',
            'preset must be a preset name or a list of them, e.g. preset = "opsworks"',
        ),
        ("preset = 'nosuch'\n", "unknown preset 'nosuch'; known presets: "),
        (
            "[roles]\nname = 'x'\n",
            "roles must be an array of tables: write each role under [[roles]]",
        ),
        ("roles = [1]\n", "role #1 is not a table: write each role under [[roles]]"),
        (
            "[[roles]]\nname = 'chef'\ncmdLine = 'x'\n",
            "[[roles]] role 'chef': unknown key 'cmdLine'; did you mean 'cmdline'?",
        ),
        (
            "[[roles]]\nname = 'me'\npid = '12'\n",
            "[[roles]] role 'me': pid must be a whole number, not '12'",
        ),
        ("[[roles]]\nname = 7\ncomm = 'x'\n", "[[roles]] role #1: name must be a string, not 7"),
        ("[[roles]]\ncomm = 'x'\n", "role #1 has no name"),
        (
            "[[roles]]\nname = 'both'\ncmdline = 'x'\ncomm = 'y'\n",
            "role 'both' needs exactly one of cmdline, comm or pid",
        ),
        (
            "[[roles]]\nname = 'bad'\ncmdline = '('\n",
            "role 'bad': invalid regular expression '(': missing ), unterminated subpattern at position 0",
        ),
        ("[[roles]]\nname = 'sp ace'\ncomm = 'x'\n", "role name 'sp ace' is invalid"),
    ],
)
def test_load_config_errors(tmp_path, text, expected):
    message, path = config_error(tmp_path, text)

    assert message.startswith(f"{path}: {expected}")


def test_load_config_pid_not_running(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()

    message, path = config_error(tmp_path, f"[[roles]]\nname = 'gone'\npid = {process.pid}\n")

    assert message == (
        f"{path}: role 'gone': no process with pid {process.pid} is running; "
        f"check the pid with 'ps -p {process.pid}'"
    )


# --- sizes and durations -----------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, 1),
        ("512", 512),
        ("10K", 10 * 1024),
        ("100M", 100 * 1024**2),
        ("100m", 100 * 1024**2),
        ("2GB", 2 * 1024**3),
        ("1.5G", 3 * 1024**3 // 2),
        (" 4 MB ", 4 * 1024**2),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "M", "-1M", "1X", "1.5.2M", "1T", 0, -4, 1.5, True, None])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        parse_size(value)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "K", "M", "G"]))
def test_parse_size_units_scale(number, unit):
    assert (
        parse_size(f"{number}{unit}") == number * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit]
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (90, 90.0),
        (0.5, 0.5),
        ("45", 45.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
    ],
)
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "h", "1w", "0", 0, -5, False, None])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError):
        parse_duration(value)


# --- pid and comm rules ------------------------------------------------------


def test_pid_rule_matches_pid_only():
    rule = pid_rule(os.getpid())

    assert rule.name == f"pid-{os.getpid()}"
    assert rule.match("any command line", "any comm", os.getpid()) == rule.name
    assert rule.match("any command line", "any comm", os.getpid() + 1) is None
    assert rule.match("any command line", "any comm") is None


def test_pid_rule_reused_pid(tmp_path):
    # A fake /proc with one process, whose start time changes as if the pid
    # had been reused by a new process.
    stat = tmp_path / "4242" / "stat"
    stat.parent.mkdir()
    fields = " ".join(str(number) for number in range(3, 53))
    stat.write_text(f"4242 (agent (x)) {fields.replace(' 22 ', ' 1000 ')}\n")
    rule = pid_rule(4242, "agent", proc=str(tmp_path))

    assert rule == PidRule(name="agent", pid=4242, start_ticks=1000, proc=str(tmp_path))
    assert rule.match("", "", 4242) == "agent"

    stat.write_text(f"4242 (agent (x)) {fields.replace(' 22 ', ' 2000 ')}\n")

    assert rule.match("", "", 4242) is None


def test_read_start_ticks_is_proc_field_22():
    import psutil

    ticks = read_start_ticks(os.getpid())

    boot = psutil.boot_time()
    assert ticks / os.sysconf("SC_CLK_TCK") + boot == pytest.approx(
        psutil.Process().create_time(), abs=0.05
    )


def test_pid_rule_rejects_thread():
    import threading

    ready = threading.Event()
    done = threading.Event()
    thread_ids = []

    def run():
        thread_ids.append(threading.get_native_id())
        ready.set()
        done.wait()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        ready.wait()
        with pytest.raises(RoleRuleError) as raised:
            pid_rule(thread_ids[0], "worker")
    finally:
        done.set()
        worker.join()

    assert str(raised.value) == (
        f"role 'worker': {thread_ids[0]} is a thread of process {os.getpid()}; give --pid {os.getpid()}"
    )


@pytest.mark.parametrize(
    "pid, expected",
    [
        (0, "pid '0' is invalid: give the positive process id of a running process"),
        (-3, "pid '-3' is invalid: give the positive process id of a running process"),
        (True, "pid 'True' is invalid: give the positive process id of a running process"),
    ],
)
def test_pid_rule_rejects(pid, expected):
    with pytest.raises(RoleRuleError) as raised:
        pid_rule(pid)

    assert str(raised.value) == expected


def test_comm_rule_exact():
    rule = comm_rule("chef-client")

    assert rule.name == "chef-client"
    assert rule.describe() == "comm =~ /^chef\\-client$/"
    assert rule.match("/opt/chef/bin/chef-client -d", "chef-client") == "chef-client"
    assert rule.match("chef-client", "chef-client-x") is None
    assert rule.match("chef-client", "xchef-client") is None


def test_comm_rule_long_name_is_cut(caplog):
    rule = comm_rule("amazon-ssm-agent")

    assert rule.name == "amazon-ssm-agent"
    assert rule.match("/usr/bin/amazon-ssm-agent", "amazon-ssm-agen") == "amazon-ssm-agent"
    assert (
        "comm 'amazon-ssm-agent' is longer than the 15 bytes the kernel keeps; matching 'amazon-ssm-agen'"
        in caplog.text
    )


def test_comm_rule_invalid_role_name():
    with pytest.raises(RoleRuleError) as raised:
        comm_rule("kworker/0:1")

    assert (
        str(raised.value)
        == "role name 'kworker/0:1' is invalid: use letters, digits, '_', '.', ':' or '-'"
    )


def test_pid_spec_forms():
    assert pid_rule_from_spec(str(os.getpid())).name == f"pid-{os.getpid()}"
    assert pid_rule_from_spec(f"agent={os.getpid()}").name == "agent"


@pytest.mark.parametrize("spec", ["abc", "agent=", "=123", "12a", ""])
def test_pid_spec_rejects(spec):
    with pytest.raises(ConfigError) as raised:
        pid_rule_from_spec(spec)

    assert (
        str(raised.value)
        == f"--pid '{spec}' is not PID or NAME=PID, e.g. --pid 1234 or --pid agent=1234"
    )


def test_comm_spec_forms():
    assert comm_rule_from_spec("chef-client").name == "chef-client"
    named = comm_rule_from_spec("chef=chef-client")
    assert named.name == "chef"
    assert named.match("", "chef-client") == "chef"


@pytest.mark.parametrize("spec", ["chef=", "=chef-client"])
def test_comm_spec_rejects(spec):
    with pytest.raises(ConfigError) as raised:
        comm_rule_from_spec(spec)

    assert str(raised.value) == f"--comm '{spec}' is not COMM or NAME=COMM, e.g. --comm chef-client"


def test_role_set_match_without_pid_keeps_old_behaviour():
    rules = RoleSet(rules=(pid_rule(os.getpid(), "me"), compile_rule("py", "python")))

    assert rules.match("python3 x.py") == "py"
    assert rules.match("python3 x.py", "", pid=os.getpid()) == "me"


# --- precedence on the command line ------------------------------------------


def test_choose_role_set_precedence(tmp_path):
    config = load_config(
        write_config(tmp_path, "[[roles]]\nname = 'chef'\ncmdline = 'chef-client'\n")
    )
    cli_rule = compile_rule("mine", "^mine")

    assert role_names(choose_role_set([cli_rule], "opsworks", False, config)) == ["mine"]
    assert role_names(choose_role_set([cli_rule], "puppet", True, config)) == [
        "mine",
        "puppet-run",
        "puppet-agent",
    ]
    assert role_names(choose_role_set([], "puppet", True, config)) == ["puppet-run", "puppet-agent"]
    assert role_names(choose_role_set([], "opsworks", False, config)) == ["chef"]
    assert role_names(choose_role_set([], "opsworks", False, None)) == OPSWORKS_ROLES
    assert role_names(choose_role_set([], "opsworks", False, Config(path="x"))) == OPSWORKS_ROLES


def test_merge_trace_options_command_line_wins(tmp_path):
    config = load_config(
        write_config(tmp_path, "[trace]\ninterval = 5\nformat = 'csv'\noutput = 'file.msgpack'\n")
    )
    seen = {}

    @click.command()
    @click.option("--interval", type=float, default=1.0)
    @click.option("--format", "report_format", default="table")
    @click.option("-o", "--output")
    @click.pass_context
    def trace(ctx, **params):
        seen.update(merge_trace_options(ctx, params, config))

    result = CliRunner().invoke(trace, ["--interval", "2"])

    assert result.exit_code == 0, result.output
    assert seen == {"interval": 2.0, "report_format": "csv", "output": "file.msgpack"}


def test_merge_trace_options_rotation(tmp_path):
    config = load_config(
        write_config(tmp_path, "[trace]\nrotate_size = '100M'\nrotate_interval = '1h'\n")
    )
    seen = {}

    @click.command()
    @click.option("--rotate-size")
    @click.option("--rotate-interval", type=click.FloatRange(min=1))
    @click.pass_context
    def trace(ctx, **params):
        seen.update(merge_trace_options(ctx, params, config))

    result = CliRunner().invoke(trace, [])

    assert result.exit_code == 0, result.output
    # --rotate-size is text that `trace` parses; --rotate-interval is seconds.
    assert seen == {"rotate_size": str(100 * 1024 * 1024), "rotate_interval": 3600.0}
    assert parse_size(seen["rotate_size"]) == 100 * 1024 * 1024


def test_merge_trace_options_unknown_parameter(tmp_path):
    config = load_config(write_config(tmp_path, "[trace]\nrotate_size = '1M'\n"))

    @click.command()
    @click.pass_context
    def trace(ctx):
        merge_trace_options(ctx, {}, config)

    result = CliRunner().invoke(trace, [])

    assert isinstance(result.exception, ConfigError)
    assert (
        str(result.exception)
        == f"{config.path}: [trace] rotate_size is not an option of this command"
    )
