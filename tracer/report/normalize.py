"""Fold exec argument lists that differ only in numbers and ids into one command text.

`sh -c 'cat /proc/1234/stat'` and `sh -c 'cat /proc/5678/stat'` both become
`sh -c 'cat /proc/<n>/stat'`, so a report can count them as one command.
The rules, applied in this order to each argument:

1. The first path component after a temporary directory (`/tmp/`,
   `/var/tmp/`, `/dev/shm/`) becomes `<tmp>`, and so does a mktemp(1)
   name `tmp.XXXXXXXXXX` anywhere.
2. A UUID (8-4-4-4-12 hex digits, at least one of them decimal) becomes
   `<uuid>`.
3. A hex id becomes `<hex>`: `0x` followed by hex digits, or a word of 8 or
   more hex digits with at least one digit and one letter in it.
4. A run of decimal digits becomes `<n>`, unless a letter or `_` comes
   right before it, so that names such as `python3`, `sha256sum` and
   `x86_64` stay as they are.

The program (argv[0] and the exec's filename) gets rules 1 to 3 only: a
program name rarely carries a process id, and `/usr/bin/python3.11` should
stay readable.
"""

from __future__ import annotations

import re

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TEMP_PATH = re.compile(r"(/tmp|/var/tmp|/dev/shm)/[^/\s'\"]+")
MKTEMP_NAME = re.compile(r"\btmp\.[A-Za-z0-9]{6,}\b")
HEX_PREFIXED = re.compile(r"\b0[xX][0-9a-fA-F]+\b")
HEX_WORD = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b")
DIGITS = re.compile(r"(?<![A-Za-z_0-9])[0-9]+")
HAS_DIGIT = re.compile(r"[0-9]").search

# Characters that make an argument need quotes in the command text.
NEEDS_QUOTES = re.compile(r"[\s'\"\\|&;()$`*?!#]")


def normalize_program(text: str) -> str:
    """Replace UUIDs, temporary names and hex ids in a program path."""
    # Each rule runs only where its cheap precondition holds: most
    # arguments have no digit and no temporary directory in them.
    if "tmp" in text or "/dev/shm/" in text:
        text = TEMP_PATH.sub(r"\1/<tmp>", text)
        text = MKTEMP_NAME.sub("tmp.<tmp>", text)
    if HAS_DIGIT(text) is None:
        return text
    if "-" in text:
        text = UUID.sub("<uuid>", text)
    if "0x" in text or "0X" in text:
        text = HEX_PREFIXED.sub("<hex>", text)
    return HEX_WORD.sub("<hex>", text)


def normalize_argument(text: str) -> str:
    """Replace UUIDs, temporary names, hex ids and digit runs in one argument."""
    text = normalize_program(text)
    if HAS_DIGIT(text) is None:
        return text
    return DIGITS.sub("<n>", text)


def quote(argument: str) -> str:
    """Quote an argument the way a shell user would write it, only where needed."""
    if argument and not NEEDS_QUOTES.search(argument):
        return argument
    return "'" + argument.replace("'", "'\\''") + "'"


def command_text(filename: str, argv: list[str] | None, truncated: bool = False) -> str:
    """Return the normalised command line of one exec: its arguments, or its filename without any.

    A trailing `...` marks arguments that the kernel side cut.
    """
    if not argv:
        return normalize_program(filename)

    words = [quote(normalize_program(argv[0]))]
    words += [quote(normalize_argument(argument)) for argument in argv[1:]]
    text = " ".join(words)
    return text + " ..." if truncated else text
