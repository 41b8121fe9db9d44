"""Format a report as JSON with the key names documented in docs/format.md."""

from __future__ import annotations

import io
import json


def format_json(report: dict) -> str:
    """Return the report as indented JSON, keys in the documented order."""
    # With indent, json.dumps joins a list of millions of small strings for
    # a long timeline. Writing the pieces into one buffer keeps memory near
    # the size of the text.
    output = io.StringIO()
    for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(report):
        output.write(chunk)
    output.write("\n")
    return output.getvalue()
