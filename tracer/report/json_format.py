"""Format a report as JSON with the key names documented in docs/format.md."""

from __future__ import annotations

import json


def format_json(report: dict) -> str:
    """Return the report as indented JSON, keys in the documented order."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
