"""Turn agent-tracer streams into tables, JSON and CSV."""

from tracer.report.aggregate import build_report
from tracer.report.render import FORMATTERS, render_report

__all__ = ["FORMATTERS", "build_report", "render_report"]
