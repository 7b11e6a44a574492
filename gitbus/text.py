"""Text rules for anything a peer wrote: which characters gitbus never takes in or shows.

One predicate for both halves of "the remote is untrusted": posting and decoding refuse text that
breaks it, and the faces that print a peer's words can ask it too. Refused: C0 and C1 control
characters (escape sequences start with ESC or CSI) except tab and newline, DEL, the bidirectional
formatting characters (which make `txt.exe` read as `exe.txt`), and the Unicode line and paragraph
separators (which some terminals and editors break lines at, so one line could pose as two).
Standard library only: the lowest floor.

What is refused here is a subset of what `gitbus.inert` escapes when a face shows a peer's words:
input rules stay narrow enough for ordinary text (an emoji joined by U+200D, a soft hyphen), the faces
stay strict about what they print. tests/test_message.py holds the two to that.
"""

from __future__ import annotations

import re

# C0 but tab and newline; DEL and C1 (U+0080-U+009F, NEL and CSI included); ALM; LRM, RLM;
# LRE-RLO (U+202A-U+202E); LRI-PDI (U+2066-U+2069); LINE and PARAGRAPH SEPARATOR.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE_TEXT = re.compile(f"[{_UNSAFE}]")
_UNSAFE_LINE = re.compile(f"[\n\t{_UNSAFE}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unsafe(text: str, *, one_line: bool = False) -> str | None:
    """The first character of `text` that gitbus refuses (with `one_line`, tab and newline too),
    or None when the text is clean. A lone surrogate (bytes that were not UTF-8) counts."""
    found = (_UNSAFE_LINE if one_line else _UNSAFE_TEXT).search(text) or _SURROGATE.search(text)
    return found.group() if found else None


def describe(char: str) -> str:
    """What kind of character `char` is, for a one-line refusal."""
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "bytes that are not UTF-8"
    if char in "\u2028\u2029":
        return "a line separator character"
    if char == "\u061c" or code >= 0x200E:
        return "a bidirectional formatting character"
    return "control characters"


def inert(text: str, limit: int = 200) -> str:
    """`text` as one line with every refused character replaced by U+FFFD and the length capped:
    for gitbus's own reports that quote what a peer wrote (why a commit was skipped)."""
    one = _SURROGATE.sub("\ufffd", _UNSAFE_LINE.sub("\ufffd", text))
    return one if len(one) <= limit else one[: limit - 1] + "…"
