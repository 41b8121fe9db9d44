"""Render a report in one of the output formats."""

from __future__ import annotations

import os

from tracer.report.aggregate import build_report
from tracer.report.csv_format import format_csv
from tracer.report.json_format import format_json
from tracer.report.table import format_table

FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv}


def render_report(paths: list[str | os.PathLike], output_format: str = "table") -> str:
    """Read the streams in `paths` and return the report as text in `output_format`.

    Raises StreamError for a file that cannot be read, and ValueError for an
    unknown format. Warnings (a truncated stream, say) are part of the table
    and of the JSON (`warnings`), not of the CSV text; the CSV's `lower_bound`
    column marks hosts with losses or truncated streams.
    """
    formatter = FORMATTERS.get(output_format)
    if formatter is None:
        raise ValueError(
            f"unknown report format {output_format!r}; expected one of {', '.join(FORMATTERS)}"
        )
    return formatter(build_report(paths))
