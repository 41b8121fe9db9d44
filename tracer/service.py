"""`agent-tracer install-service`: install the systemd unit that runs `trace` continuously."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import click

log = logging.getLogger(__name__)

UNIT_NAME = "agent-tracer.service"
UNIT_DIR = Path("etc/systemd/system")

# The executable that deploy/agent-tracer.service names in ExecStart, where
# scripts/setup.sh links it; install-service writes the installed one instead.
TEMPLATE_EXECUTABLE = "/usr/local/bin/agent-tracer"

# The root of the running system: a unit written under it is live.
LIVE_ROOT = Path("/")
# Present when systemd is the running init system (sd_booted(3)).
SYSTEMD_RUN_DIR = Path("/run/systemd/system")

# Characters that would need quoting in ExecStart. '%' is escaped instead.
UNSAFE_PATH_CHARACTERS = set(" \t\n\"'\\;$`")


def read_unit_template():
    """Return the text of deploy/agent-tracer.service.

    It is package data (tracer.deploy) in an installed agent-tracer, and
    deploy/ beside the tracer package in a source checkout.
    """
    try:
        return (resources.files("tracer.deploy") / UNIT_NAME).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        pass

    # A checkout that was not installed has no tracer.deploy package.
    source = Path(__file__).resolve().parent.parent / "deploy" / UNIT_NAME
    try:
        return source.read_text()
    except OSError as error:
        raise click.ClickException(
            f"the unit template {UNIT_NAME} is missing from this installation ({error.strerror}); "
            "reinstall agent-tracer"
        ) from None


def render_unit(template, executable):
    """Return the unit with `executable` in place of the template's agent-tracer in ExecStart."""
    escaped = executable.replace("%", "%%")
    lines = template.splitlines(keepends=True)
    replaced = 0
    for index, line in enumerate(lines):
        if line.startswith("ExecStart=") and TEMPLATE_EXECUTABLE in line:
            lines[index] = line.replace(TEMPLATE_EXECUTABLE, escaped, 1)
            replaced += 1
    if replaced == 0:
        raise click.ClickException(
            f"the unit template has no ExecStart={TEMPLATE_EXECUTABLE}; reinstall agent-tracer"
        )
    return "".join(lines)


def default_executable():
    """Return the agent-tracer script beside this Python, else the one on PATH, else None."""
    beside_python = Path(sys.executable).parent / "agent-tracer"
    if os.access(beside_python, os.X_OK):
        return str(beside_python.absolute())
    found = shutil.which("agent-tracer")
    return os.path.abspath(found) if found else None


def check_executable(path, must_exist):
    """Raise click.BadParameter unless `path` can be ExecStart's program."""
    if not os.path.isabs(path):
        raise click.BadParameter(f"'{path}' is not an absolute path", param_hint="--executable")
    unsafe = sorted(UNSAFE_PATH_CHARACTERS & set(path))
    if unsafe:
        raise click.BadParameter(
            f"'{path}' contains {', '.join(repr(c) for c in unsafe)}, "
            "which ExecStart would need quoted; "
            "link agent-tracer from a plain path such as /usr/local/bin/agent-tracer",
            param_hint="--executable",
        )
    if must_exist and not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise click.BadParameter(f"'{path}' is not an executable file", param_hint="--executable")


def systemd_is_running():
    """Tell whether systemd is the init system of this machine (the test of sd_booted(3))."""
    return SYSTEMD_RUN_DIR.is_dir()


def run_systemctl(arguments):
    """Run systemctl with `arguments`, or raise click.ClickException with its error output."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise click.ClickException(
            f"systemctl is not installed, so 'systemctl {' '.join(arguments)}' cannot run; "
            "run it where systemd is"
        )
    command = [systemctl, *arguments]
    log.debug("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.strip() or f"exit code {result.returncode}"
        raise click.ClickException(f"'systemctl {' '.join(arguments)}' failed: {reason}")


def write_unit(path, text):
    """Write `text` to `path` (mode 0644) through a temporary file.

    Return False, and write nothing, when the file already contains `text`.
    """
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error.strerror}") from None

    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise click.ClickException(
            f"cannot write {path}: {error.strerror}; "
            "run as root, or give --prefix a directory you can write"
        ) from None
    return True


@click.command("install-service")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False),
    default=str(LIVE_ROOT),
    show_default=True,
    help="Root directory to install into; the unit goes to PREFIX/etc/systemd/system.",
)
@click.option(
    "--executable",
    metavar="PATH",
    help="Absolute path of the agent-tracer executable that the unit runs "
    "[default: the one installed beside this Python, else the one on PATH].",
)
@click.option(
    "--enable/--no-enable",
    default=False,
    show_default=True,
    help="Also enable the unit, so that it starts at boot.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the unit and the commands, and change nothing."
)
def install_service(prefix, executable, enable, dry_run):
    """Install the systemd unit that runs `agent-tracer trace` continuously.

    The unit writes rotated streams to /var/lib/agent-tracer and reads extra
    `trace` options from AGENT_TRACER_OPTS in /etc/default/agent-tracer.
    Change anything else with `systemctl edit agent-tracer`, which keeps
    your changes when the unit is installed again.

    \b
    Examples:
      agent-tracer install-service --dry-run
      agent-tracer install-service --enable
      agent-tracer install-service --prefix /mnt/image --enable
    """
    root = Path(prefix)
    live = root.resolve() == LIVE_ROOT.resolve()
    if executable is None:
        executable = default_executable()
        if executable is None:
            raise click.UsageError(
                "cannot find the agent-tracer executable; give its path with --executable"
            )
    # Under another root the path is the one inside that root, which need not exist here.
    check_executable(executable, must_exist=live)

    unit = render_unit(read_unit_template(), executable)
    target = root / UNIT_DIR / UNIT_NAME
    commands = planned_commands(root, live, enable)

    if dry_run:
        click.echo(f"would write {target}:\n")
        click.echo(unit)
        for command in commands:
            click.echo(f"would run: systemctl {' '.join(command)}")
        return

    if write_unit(target, unit):
        click.echo(f"wrote {target} (ExecStart runs {executable})")
    else:
        click.echo(f"{target} is already up to date")

    if live and not systemd_is_running():
        click.echo("systemd is not running on this machine: skipped systemctl daemon-reload")
    for command in commands:
        run_systemctl(command)
        click.echo(f"ran: systemctl {' '.join(command)}")

    if live:
        start = "systemctl start agent-tracer" if enable else "systemctl enable --now agent-tracer"
        click.echo(f"start the service with: {start}")


def planned_commands(root, live, enable):
    """Return the systemctl argument lists that installing runs.

    The running systemd reloads its units only for a unit written to the
    live system. Enabling under another root, or without a running
    systemd, uses `systemctl --root`, which only creates the symlinks.
    """
    commands = []
    if live and systemd_is_running():
        commands.append(["daemon-reload"])
        if enable:
            commands.append(["enable", UNIT_NAME])
    elif enable:
        commands.append([f"--root={root.resolve()}", "enable", UNIT_NAME])
    return commands
