"""Build a click CliRunner whose results keep stdout and stderr apart.

Click 8.1 mixes stderr into `result.stdout` by default, and `result.stderr`
then raises ValueError. A runner made with `mix_stderr=False` keeps them
apart. Click 8.2 removed that argument and always captures stderr
separately. Debian 12 ships click 8.1.3, and pyproject.toml accepts click
8.0 and later.

`result.output` still differs: it is stdout alone on click 8.1 and both
streams on click 8.2. Check `result.stdout` and `result.stderr` instead.
"""

from __future__ import annotations

import inspect

from click.testing import CliRunner


def separate_stderr_runner() -> CliRunner:
    """Return a CliRunner whose results have stdout and stderr separately."""
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()
