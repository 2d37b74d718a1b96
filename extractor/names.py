"""File names as text that is always one printable line, whatever bytes the file system holds."""

from __future__ import annotations

import os
import re

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: each would break or forge a log line.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return (
        {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\x{ord(char):02x}"
        if ord(char) < 0x100
        else f"\\u{ord(char):04x}"
    )


def escape_controls(text: str) -> str:
    """`a\\nb` → `a\\\\nb`: control characters as backslash escapes, everything else unchanged."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text


def display_name(name: str) -> str:
    """A name from os.scandir as valid, one-line text: undecodable bytes as \\xNN, controls escaped."""
    if not name.isprintable() or undecodable(name):
        raw = os.fsencode(name)
        name = raw.decode("utf-8", "backslashreplace")
    return escape_controls(name)


def undecodable(name: str) -> bool:
    """Whether a name from the file system holds bytes that are not UTF-8 (os.fsdecode's surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
