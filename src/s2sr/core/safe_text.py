"""Untrusted text made safe to echo: file names, band descriptions, tags, JSON values.

A hostile file name or tag can hold terminal escape sequences (``\\x1b[2J``), newlines
that forge a second message line, bidirectional overrides that reorder what a reader sees,
or bytes that are not UTF-8 (surrogate escapes). :func:`printable` writes each such
character as a visible escape; every message s2sr prints passes through it (error texts in
:class:`s2sr.core.errors.S2SRError`, log lines in the command line's formatter).
"""

from __future__ import annotations

import unicodedata

#: Characters that are printable but reorder the text around them.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object, limit: int | None = None) -> str:
    """``text`` (any object, as ``str``) with control, surrogate, format and bidirectional
    characters written as ``\\xNN``/``\\uNNNN`` escapes, and cut to ``limit`` characters
    (``...`` marks a cut).

    Args:
        text: the text to echo.
        limit: the most characters kept, or ``None``.
    """
    value = str(text)
    if not value.isprintable() or any(ch in _BIDI for ch in value):
        value = "".join(
            _escape(ch) if (ch in _BIDI or not ch.isprintable()) and ch != " "
            and unicodedata.category(ch) != "Zs" else ch for ch in value)
    if limit is not None and len(value) > limit:
        value = value[:max(limit - 3, 0)] + "..."
    return value
