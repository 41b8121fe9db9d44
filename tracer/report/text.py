"""Helpers for plain-text reports that fit in 80 columns."""

from __future__ import annotations

import textwrap

WIDTH = 80
LABEL_WIDTH = 18
COUNT_WIDTH = 12


def shorten(text: str, width: int) -> str:
    """Cut `text` to `width` characters, replacing its middle with '...'."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 3) // 2
    tail = width - 3 - head
    return text[:head] + "..." + text[len(text) - tail :]


def count_line(label: str, value: str) -> str:
    return f"  {label:<{LABEL_WIDTH}} {value:>{COUNT_WIDTH}}"


def wrap(text: str, first_prefix: str, prefix: str) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first_prefix,
        subsequent_indent=prefix,
        break_on_hyphens=False,
        # A path or id cut in two could not be copied; such a line runs long.
        break_long_words=False,
    )


def number(value: float | None) -> str:
    """Format a rate or percentage with about three significant digits; None is '-'."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def ratio_text(ratio: float) -> str:
    """Format a ratio to the baseline: 180x, 4.2x, 0.35x, 0x."""
    if ratio == 0:
        return "0x"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    if ratio >= 1:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def seconds_text(seconds: float) -> str:
    return f"{seconds:.1f} s"
