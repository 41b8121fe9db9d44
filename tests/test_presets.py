"""Tests of the bundled presets against emulated agent process trees. None needs root.

Each test starts a tree of processes whose /proc/PID/cmdline and comm read
like the real agent's (the preset files cite where the titles come from):
every process forks its children, which then retitle themselves by
rewriting their argv area, as Ruby's `$0=` and Python's setproctitle do.
Decoys that must not match run beside the tree. The test scans /proc and
attributes every process with tracer.attribution.ProcessTable, whose kernel
side is a stand-in that records the roles it is given.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tracer import procfs
from tracer.attribution import ProcessTable
from tracer.roles import RoleNumbers, RoleSet, load_preset, preset_names
from tracer.rules_config import comm_rule_from_spec, pid_rule_from_spec

# Code of each emulated process. argv: the tree as JSON, the fd to report
# on, and a padding argument that makes the argv area large enough for any
# title. A process sets its comm, then its title, forks its children, and
# reports "LABEL PID". The root waits for its stdin to close; every other
# process dies with its parent (PR_SET_PDEATHSIG).
EMULATOR = r"""
import ctypes, json, os, signal, sys
from tracer.emulator.titles import set_title

PR_SET_PDEATHSIG = 1
tree, report_fd = json.loads(sys.argv[1]), int(sys.argv[2])

def become(node, is_root):
    if not is_root:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:
            os._exit(1)
    if node.get("comm"):
        with open("/proc/self/comm", "w") as comm:
            comm.write(node["comm"])
    set_title(node["title"].format(pid=os.getpid(), ppid=os.getppid()))
    for child in node.get("children", ()):
        if os.fork() == 0:
            become(child, False)
    os.write(report_fd, f"{node['label']} {os.getpid()}\n".encode())
    if is_root:
        sys.stdin.read()
        os._exit(0)
    while True:
        signal.pause()

become(tree, True)
"""

PADDING = "-" * 512

# Generous limit for a busy machine; reaching it fails the test. No test
# asserts how long anything took.
START_TIMEOUT = 30.0


def node(label, title, comm=None, children=(), role=None):
    """Describe one emulated process and the role it must get (None: unattributed)."""
    return {"label": label, "title": title, "comm": comm, "children": list(children), "role": role}


def labels_and_roles(tree):
    found = {tree["label"]: tree["role"]}
    for child in tree["children"]:
        found.update(labels_and_roles(child))
    return found


class EmulatedTree:
    """A running tree of titled processes, started from a `node` description."""

    def __init__(self, tree):
        self.expected = labels_and_roles(tree)
        read_end, write_end = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", EMULATOR, json.dumps(tree), str(write_end), PADDING],
            stdin=subprocess.PIPE,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        try:
            self.pids = self._read_reports(read_end)
        finally:
            os.close(read_end)

    def _read_reports(self, read_end):
        pids = {}
        buffer = b""
        deadline = time.monotonic() + START_TIMEOUT
        while len(pids) < len(self.expected):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(remaining, 0))
            if not ready:
                self.stop()
                raise AssertionError(
                    f"emulated tree reported {sorted(pids)} of {sorted(self.expected)} in time"
                )
            chunk = os.read(read_end, 4096)
            if not chunk:
                self.stop()
                raise AssertionError(f"emulated tree exited after reporting {sorted(pids)}")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                label, pid = line.decode().split()
                pids[label] = int(pid)
        return pids

    def stop(self):
        """Close the root's stdin so that it exits; its descendants die with their parents."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.pids.values() if hasattr(self, "pids") else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class RecordingProgram:
    """Stand-in for the loaded BPF program: records what user space writes to the kernel's maps."""

    def __init__(self):
        self.roles = {}
        self.argv_areas = {}

    def set_role(self, pid, role, threads=1):
        self.roles[pid] = role
        return True

    def set_argv_area(self, pid, area):
        self.argv_areas[pid] = area


def scan_processes():
    """Return pid -> (ppid, cmdline, comm, threads, argv_area) of every process, as in a trace."""
    processes = {}
    for pid in procfs.list_pids():
        stat = procfs.read_stat(pid)
        if stat is None:
            continue
        ppid, threads, argv_area = stat
        processes[pid] = (
            ppid,
            procfs.read_cmdline(pid) or "",
            procfs.read_comm(pid) or "",
            threads,
            argv_area,
        )
    return processes


def attribute(preset, *trees):
    """Start the trees and attribute their processes with the preset's rules.

    Return {label: (role, cmdline, comm)}.
    """
    running = []
    try:
        for tree in trees:
            running.append(EmulatedTree(tree))
        processes = scan_processes()
        program = RecordingProgram()
        numbers = RoleNumbers(32)
        table = ProcessTable(program, load_preset(preset), numbers)
        table.seed(processes, 0)

        result = {}
        for emulated in running:
            for label, pid in emulated.pids.items():
                known = table.procs.get(pid)
                role = known.role if known else None
                kernel_role = numbers.name(program.roles[pid]) if pid in program.roles else None
                assert (
                    kernel_role == role
                ), f"{label}: kernel map has {kernel_role}, user space {role}"
                result[label] = (role, processes[pid][1], processes[pid][2])
        return result
    finally:
        for emulated in running:
            emulated.stop()


def check_roles(result, *trees):
    expected = {}
    for tree in trees:
        expected.update(labels_and_roles(tree))
    for label, role in expected.items():
        actual, cmdline, comm = result[label]
        assert (
            actual == role
        ), f"{label} ({cmdline!r}, comm {comm!r}) got role {actual}, expected {role}"


# --- presets -----------------------------------------------------------------


def test_preset_chef_client():
    daemon = node(
        "daemon",
        "/opt/chef/embedded/bin/ruby --disable-gems /opt/chef/bin/chef-client -d -i 1800 -s 300",
        comm="chef-client",
        role="chef-client",
        children=[
            node(
                "worker",
                "chef-client worker: ppid={ppid};start=10:15:02;",
                role="chef-converge",
                children=[
                    node(
                        "shell",
                        "/bin/sh -c apt-get -q -y install nginx",
                        comm="sh",
                        role="chef-converge",
                        children=[
                            node(
                                "apt",
                                "apt-get -q -y install nginx",
                                comm="apt-get",
                                role="chef-converge",
                            )
                        ],
                    )
                ],
            ),
            node(
                "ohai",
                "/opt/chef/embedded/bin/ruby /opt/chef/bin/ohai -d",
                comm="ohai",
                role="chef-client",
            ),
        ],
    )
    solo = node(
        "solo-worker",
        "chef-solo worker: ppid=1;start=23:59:59;",
        comm="chef-solo",
        role="chef-converge",
    )
    decoys = node(
        "grep",
        "grep chef-client",
        comm="grep",
        children=[
            node("vim", "vim /etc/chef/client.rb", comm="vim"),
            node("tail", "tail -f /var/log/chef/chef-client.log", comm="tail"),
            node(
                "knife", "/opt/chef/embedded/bin/ruby /opt/chef/bin/knife node list", comm="knife"
            ),
        ],
    )

    result = attribute("chef-client", daemon, solo, decoys)

    check_roles(result, daemon, solo, decoys)
    assert result["worker"][1].startswith("chef-client worker: ppid=")
    assert result["worker"][2] == "chef-client"


def test_preset_puppet():
    agent = node(
        "agent",
        "/opt/puppetlabs/puppet/bin/ruby /opt/puppetlabs/puppet/bin/puppet agent --no-daemonize",
        comm="puppet",
        role="puppet-agent",
        children=[
            node(
                "run",
                "puppet agent: applying configuration",
                role="puppet-run",
                children=[
                    node(
                        "systemctl",
                        "/usr/bin/systemctl restart nginx",
                        comm="systemctl",
                        role="puppet-run",
                    )
                ],
            )
        ],
    )
    oneshot = node(
        "oneshot", "/usr/bin/ruby /usr/bin/puppet agent -t", comm="puppet", role="puppet-agent"
    )
    decoys = node(
        "apply",
        "/opt/puppetlabs/puppet/bin/ruby /opt/puppetlabs/puppet/bin/puppet apply site.pp",
        comm="puppet",
        children=[node("man", "man puppet agent", comm="man")],
    )

    result = attribute("puppet", agent, oneshot, decoys)

    check_roles(result, agent, oneshot, decoys)


def test_preset_salt_minion():
    python = "/opt/saltstack/salt/bin/python3.10 /usr/bin/salt-minion"
    minion = node(
        "parent",
        python,
        comm="salt-minion",
        role="salt-minion",
        children=[
            node(
                "minion",
                f"{python} MultiMinionProcessManager MinionProcessManager",
                role="salt-minion",
                children=[
                    node(
                        "job",
                        f"{python} MultiMinionProcessManager MinionProcessManager "
                        "ProcessPayload(jid=20230609015108483479) Minion._thread_return",
                        role="salt-job",
                        children=[
                            node(
                                "apt", "/usr/bin/apt-get -q update", comm="apt-get", role="salt-job"
                            )
                        ],
                    )
                ],
            )
        ],
    )
    old_job = node(
        "old-job",
        (
            "/usr/bin/python3 /usr/bin/salt-minion KeepAlive MultiMinionProcessManager MinionProcessManager "
            "ProcessPayload Minion._thread_return 20190101120000123456"
        ),
        comm="salt-minion",
        role="salt-job",
    )
    decoys = node(
        "salt-call",
        "/usr/bin/python3 /usr/bin/salt-call state.apply",
        comm="salt-call",
        children=[node("grep", "grep salt-minion", comm="grep")],
    )

    result = attribute("salt-minion", minion, old_job, decoys)

    check_roles(result, minion, old_job, decoys)


def test_preset_amazon_ssm_agent():
    agent = node(
        "agent",
        "/usr/bin/amazon-ssm-agent",
        comm="amazon-ssm-agent",
        role="ssm-agent",
        children=[
            node(
                "worker",
                "/usr/bin/ssm-agent-worker",
                comm="ssm-agent-worker",
                role="ssm-agent-worker",
                children=[
                    node(
                        "document",
                        "/usr/bin/ssm-document-worker 8a2c1e3f-0a1b-4c5d-9e8f-123456789abc",
                        comm="ssm-document-worker",
                        role="ssm-document-worker",
                        children=[
                            node(
                                "script",
                                (
                                    "sh -c /var/lib/amazon/ssm/i-0123456789abcdef0/document/orchestration/"
                                    "8a2c1e3f-0a1b-4c5d-9e8f-123456789abc/awsrunShellScript/0.awsrunShellScript/_script.sh"
                                ),
                                comm="sh",
                                role="ssm-document-worker",
                            )
                        ],
                    ),
                    node(
                        "session",
                        "/usr/bin/ssm-session-worker operator-0a1b2c3d4e5f67890",
                        comm="ssm-session-worker",
                        role="ssm-session-worker",
                        children=[node("shell", "sh", comm="sh", role="ssm-session-worker")],
                    ),
                ],
            )
        ],
    )
    snap = node(
        "snap-agent",
        "/snap/amazon-ssm-agent/7993/amazon-ssm-agent",
        comm="amazon-ssm-agent",
        role="ssm-agent",
    )
    decoys = node(
        "journalctl",
        "journalctl -u amazon-ssm-agent",
        comm="journalctl",
        children=[node("ssm-cli", "/usr/bin/ssm-cli get-diagnostics", comm="ssm-cli")],
    )

    result = attribute("amazon-ssm-agent", agent, snap, decoys)

    check_roles(result, agent, snap, decoys)
    # The kernel keeps 15 bytes of comm.
    assert result["agent"][2] == "amazon-ssm-agen"
    assert result["session"][2] == "ssm-session-wor"


def test_preset_codedeploy_agent():
    master = node(
        "master",
        "codedeploy-agent: master {pid}",
        comm="codedeploy-agen",
        role="codedeploy-master",
        children=[
            node(
                "poller",
                "codedeploy-agent: InstanceAgent::Plugins::CodeDeployPlugin::CommandPoller of master {ppid}",
                role="codedeploy-poller",
                children=[
                    node(
                        "hook",
                        "/bin/bash /opt/codedeploy-agent/deployment-root/d-ABCDEF123/deployment-archive/scripts/start.sh",
                        comm="start.sh",
                        role="codedeploy-poller",
                    )
                ],
            ),
            node("booting", "codedeploy-agent: booting child", role="codedeploy-poller"),
        ],
    )
    decoys = node(
        "status",
        "/usr/bin/ruby /opt/codedeploy-agent/bin/codedeploy-agent status",
        comm="codedeploy-agen",
    )

    result = attribute("codedeploy-agent", master, decoys)

    check_roles(result, master, decoys)
    assert result["master"][1] == f"codedeploy-agent: master {result_pid(result, 'master')}"


def result_pid(result, label):
    return int(result[label][1].rsplit(" ", 1)[1])


def test_preset_opsworks():
    master = node(
        "master",
        "opsworks-agent: master {pid}",
        comm="ruby",
        role="master",
        children=[
            node("keep_alive", "opsworks-agent: keep_alive of master {ppid}", role="keep_alive"),
            node("statistics", "opsworks-agent: statistics of master {ppid}", role="statistics"),
            node(
                "process_command",
                "opsworks-agent: process_command of master {ppid}",
                role="process_command",
                children=[
                    node(
                        "chef-solo",
                        "/opt/aws/opsworks/current/bin/chef-solo -j /var/lib/aws/opsworks/chef/attribs.json",
                        comm="chef-solo",
                        role="process_command",
                    )
                ],
            ),
        ],
    )

    result = attribute("opsworks", master)

    check_roles(result, master)


def test_every_preset_is_tested():
    tested = {
        "chef-client",
        "puppet",
        "salt-minion",
        "amazon-ssm-agent",
        "codedeploy-agent",
        "opsworks",
    }

    assert set(preset_names()) == tested


def test_presets_cite_their_sources():
    from importlib import resources

    for name in preset_names():
        text = (resources.files("tracer.presets") / f"{name}.toml").read_text()
        header = text.split("\n\n", 1)[0]
        assert header.startswith("# "), f"{name}.toml has no header comment"
        assert load_preset(name).rules, name
        if name != "opsworks":
            assert "https://github.com/" in header, f"{name}.toml cites no source"


# --- rules from --comm and --pid ---------------------------------------------


def attribute_with(rules, *trees):
    """Like attribute, with a RoleSet built from the running trees' pids: rules(pids) -> RoleSet."""
    running = []
    try:
        for tree in trees:
            running.append(EmulatedTree(tree))
        pids = {label: pid for emulated in running for label, pid in emulated.pids.items()}
        table = ProcessTable(RecordingProgram(), rules(pids), RoleNumbers(32))
        table.seed(scan_processes(), 0)
        return {
            label: table.procs[pid].role if pid in table.procs else None
            for label, pid in pids.items()
        }
    finally:
        for emulated in running:
            emulated.stop()


def daemon_tree():
    return node(
        "daemon",
        "my-daemon --serve",
        comm="my-daemon",
        children=[
            node("worker", "my-daemon: worker", children=[node("shell", "sh -c true", comm="sh")]),
            node("chef", "/opt/chef/bin/chef-client", comm="chef-client"),
        ],
    )


def test_comm_rule_attributes_tree():
    def rules(_pids):
        return RoleSet(
            rules=(comm_rule_from_spec("daemon=my-daemon"), comm_rule_from_spec("chef-client"))
        )

    roles = attribute_with(rules, daemon_tree())

    # The worker was forked without exec, so it keeps the comm my-daemon and
    # is a root of the same role itself.
    assert roles == {
        "daemon": "daemon",
        "worker": "daemon",
        "shell": "daemon",
        "chef": "chef-client",
    }


def test_pid_rule_attributes_tree():
    def rules(pids):
        return RoleSet(
            rules=(comm_rule_from_spec("chef-client"), pid_rule_from_spec(str(pids["daemon"])))
        )

    roles = attribute_with(rules, daemon_tree())

    assert roles["daemon"].startswith("pid-")
    assert roles == {
        "daemon": roles["daemon"],
        "worker": roles["daemon"],
        "shell": roles["daemon"],
        "chef": "chef-client",
    }


# --- agent-tracer presets ----------------------------------------------------


def test_presets_command_lists_new_presets():
    from tracer.cli import main

    result = CliRunner().invoke(main, ["presets"])

    assert result.exit_code == 0, result.output
    blocks = {}
    for line in result.output.splitlines():
        if not line.startswith(" "):
            current = blocks.setdefault(line.rstrip(":"), [])
        else:
            current.append(line)
    assert sorted(blocks) == sorted(preset_names())
    assert blocks["chef-client"] == [
        r"  chef-converge      cmdline =~ /^chef-(client|solo) worker: ppid=\d+;start=\d\d:\d\d:\d\d;/",
        r"  chef-client        cmdline =~ /^((\S*/)?ruby\S*( -\S+)* )?(\S*/)?chef-client( |$)/",
    ]
    assert blocks["puppet"] == [
        r"  puppet-run         cmdline =~ /^puppet agent: applying configuration/",
        r"  puppet-agent       cmdline =~ /^((\S*/)?ruby\S*( -\S+)* )?(\S*/)?puppet agent( |$)/",
    ]
    assert blocks["salt-minion"] == [
        (
            r"  salt-job           cmdline =~ /^((\S*/)?python[\d.]*( -\S+)* )?(\S*/)?salt-minion( .*)? "
            r"(ProcessPayload\b|\S+\._thread_(multi_)?return\b)/"
        ),
        r"  salt-minion        cmdline =~ /^((\S*/)?python[\d.]*( -\S+)* )?(\S*/)?salt-minion( |$)/",
    ]
    assert blocks["amazon-ssm-agent"] == [
        r"  ssm-agent          cmdline =~ /^(\S*/)?amazon-ssm-agent( |$)/",
        r"  ssm-agent-worker   cmdline =~ /^(\S*/)?ssm-agent-worker( |$)/",
        r"  ssm-document-worker cmdline =~ /^(\S*/)?ssm-document-worker( |$)/",
        r"  ssm-session-worker cmdline =~ /^(\S*/)?ssm-session-worker( |$)/",
    ]
    assert blocks["codedeploy-agent"] == [
        r"  codedeploy-master  cmdline =~ /^codedeploy-agent: master \d+/",
        r"  codedeploy-poller  cmdline =~ /^codedeploy-agent: (booting child|\S+ of master \d+)/",
    ]


@pytest.mark.parametrize(
    "name", ["chef-client", "puppet", "salt-minion", "amazon-ssm-agent", "codedeploy-agent"]
)
def test_load_preset_names_itself(name):
    role_set = load_preset(name)

    assert role_set.preset == name
    assert not role_set.uses_comm
    assert [entry["name"] for entry in role_set.describe()] == [
        rule.name for rule in role_set.rules
    ]
