"""Tests of `agent-tracer report --plot` on hand-made streams (no root needed)."""

from __future__ import annotations

import struct
import sys
from importlib.util import find_spec

import pytest
from clirunner import separate_stderr_runner
from test_report_analysis import configure_records, host_records, write_stream

from tracer.report.command import report_command
from tracer.report.plot import lower_bound_text

needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None, reason="the plot extra (matplotlib) is not installed"
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# process_command is the fourth role, drawn in the fourth colour of tab10.
PROCESS_COMMAND_RGB = (0xD6, 0x27, 0x28)


def invoke(*args: str):
    return separate_stderr_runner().invoke(report_command, list(args))


def png_size(path) -> tuple[int, int]:
    """Return the width and height in the IHDR chunk of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def has_color(path, rgb: tuple[int, int, int]) -> bool:
    from matplotlib.image import imread

    pixels = (imread(path)[:, :, :3] * 255).round()
    return bool(((abs(pixels - rgb)).max(axis=2) <= 2).any())


@pytest.fixture
def configure(tmp_path):
    return write_stream(tmp_path / "configure.msgpack", configure_records())


@needs_matplotlib
def test_plot_one_host(tmp_path, configure):
    output = tmp_path / "load.png"

    result = invoke("--plot", str(output), configure)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("agent-tracer report\n")
    # 9.2 x 9.2 inches at 100 dpi: one column of three panels and the legends.
    assert png_size(output) == (920, 920)
    assert has_color(output, PROCESS_COMMAND_RGB)


@needs_matplotlib
def test_plot_two_hosts_one_column_each(tmp_path):
    web1 = write_stream(tmp_path / "web-1.msgpack", host_records("web-1", 0, [1, 2, 25], 40))
    web2 = write_stream(tmp_path / "web-2.msgpack", host_records("web-2", 20, [3], 30))
    output = tmp_path / "hosts.png"

    result = invoke("--format", "json", "--plot", str(output), web1, web2)

    assert result.exit_code == 0, result.output
    assert png_size(output) == (1620, 920)


@needs_matplotlib
def test_plot_hosts_without_clock_rejected(tmp_path):
    paths = []
    for host in ("web-1", "web-2"):
        records = host_records(host, 0, [1], 10)
        del records[0]["clock"]
        paths.append(write_stream(tmp_path / f"{host}.msgpack", records))
    output = tmp_path / "none.png"

    result = invoke("--plot", str(output), *paths)

    assert result.exit_code == 1
    assert result.stderr.endswith(
        "Error: none of the hosts' streams have a clock in their header, so they cannot be "
        "drawn on wall-clock time; plot one host at a time\n"
    )
    assert not output.exists()


@needs_matplotlib
def test_plot_unwritable_path(tmp_path, configure):
    output = tmp_path / "missing" / "load.png"

    result = invoke("--plot", str(output), configure)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot write the plot to {output}: No such file or directory\n"


def test_plot_without_matplotlib(tmp_path, configure, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    output = tmp_path / "load.png"

    result = invoke("--plot", str(output), configure)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: --plot needs matplotlib, which is not installed; "
        "install it with: pip install 'agent-tracer[plot]'\n"
    )
    assert not output.exists()


def test_lower_bound_text_names_losses():
    report = {
        "lost": {"events": 5, "pid_range": 0, "exec_stash": 2},
        "truncated": True,
    }

    assert lower_bound_text(report) == (
        "Counts are lower bounds (lost: 5 events, 2 exec_stash; a stream ends early)"
    )
