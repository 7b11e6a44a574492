"""Peer text: what gitbus refuses to take in, and how what another agent wrote is shown as data.

Anything read from a commit or the ledger may have been written with plain git by any peer that can
push to the bus remote, so it obeys none of the posting rules. Every face passes such strings
through this module before they reach a terminal, a markup parser or a model: control characters
(C0 and C1, DEL), bidi overrides and isolates, line and paragraph separators and the other invisible
format characters become visible escapes (`\\x1b`, `\\u202e`), and long values are capped. Escaping
rather than stripping keeps a crafted message recognisable as one. Stdlib only, so every floor can
use it.

Taking text in (posting, and decoding what a peer wrote) refuses a narrower set, `unsafe`: C0 and
C1 controls but tab and newline, DEL, the bidirectional formatting characters (which make `txt.exe`
read as `exe.txt`), the line and paragraph separators (at which some terminals and editors break
lines, so one line could pose as two) and bytes that were not UTF-8; ordinary text such as emoji
joiners and soft hyphens stays postable and is escaped only when shown.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

# Unicode categories never shown as themselves: controls (C0, DEL, C1), format characters (bidi
# controls, zero-width characters, soft hyphen, tag characters), line and paragraph separators,
# and lone surrogates (bytes that were not UTF-8).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Default-ignorable characters outside those categories that draw as nothing and so can carry hidden
# text: the combining grapheme joiner, Hangul and Khmer fillers, Mongolian variation selectors, and
# (below) the supplementary variation selectors. The emoji ones, U+FE00-U+FE0F, stay.
_INVISIBLE = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0}
)
_SUPPLEMENTARY_SELECTORS = range(0xE0100, 0xE01F0)
PATH_CHARS = 160  # one path, as shown to a model
QUOTE_CHARS = 280  # one peer's words, as shown to a model
ELLIPSIS = "…"
_PLAIN_PATH = re.compile(r"[\w./+@=,:~-]+")


def is_forbidden_char(c: str) -> bool:
    """True for a character that must never reach a terminal or a model as itself (tab and newline
    included: a one-line field has neither)."""
    o = ord(c)
    return unicodedata.category(c) in FORBIDDEN_CATEGORIES or o in _INVISIBLE or o in _SUPPLEMENTARY_SELECTORS


def _plain(text: str) -> bool:
    """The fast path: printable ASCII holds no forbidden character."""
    return text.isascii() and text.isprintable()


def has_forbidden_char(text: str) -> bool:
    return not _plain(text) and any(is_forbidden_char(c) for c in text)


def visible(c: str) -> str:
    """A forbidden character as the escape Python would write for it: `\\x1b`, `\\u2028`."""
    o = ord(c)
    if o <= 0xFF:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def cap(text: str, max_len: int | None) -> str:
    """`text` cut to `max_len` characters, the last one an ellipsis when something was cut."""
    if max_len is None or len(text) <= max_len:
        return text
    return text[: max(0, max_len - 1)] + ELLIPSIS


def inert(text: str, max_len: int | None = None) -> str:
    """A one-line field made inert: every forbidden character (newline and tab too) escaped."""
    if not _plain(text):
        text = "".join(visible(c) if is_forbidden_char(c) else c for c in text)
    return cap(text, max_len)


def inert_block(text: str, max_len: int | None = None) -> str:
    """A multi-line body made inert: newlines and tabs kept, every other forbidden character escaped
    (so `\\r` cannot rewrite a line)."""
    if not _plain(text):
        text = "".join(visible(c) if c not in "\n\t" and is_forbidden_char(c) else c for c in text)
    return cap(text, max_len)


def quoted(text: str, max_len: int = QUOTE_CHARS) -> str:
    """A peer's words as one quoted, inert line: whitespace folded (line separators too), inner
    double quotes softened, length capped, so they read as data wherever a model sees them."""
    one = inert(" ".join(text.split()).replace('"', "'"))
    return f'"{cap(one, max_len)}"'


def quoted_path(path: str, max_len: int = PATH_CHARS) -> str:
    """A peer's path for a model: inert and capped in the middle (both ends are what identify it).

    A plain path (letters, digits, `./_-+@=,:~`) is shown as it is; any other, or a cut one, is put
    in double quotes, so spaces or an ellipsis cannot run into the sentence around it."""
    shown = inert(path)
    cut = len(shown) > max_len
    if cut:
        tail = max_len // 3
        shown = shown[: max_len - tail - 1] + ELLIPSIS + shown[len(shown) - tail :]
    if not cut and _PLAIN_PATH.fullmatch(path):
        return shown
    return '"' + shown.replace('"', '\\"') + '"'


def within(
    items: Sequence[str], budget: int, sep: str = ", ", most: int | None = None, total: int | None = None
) -> str:
    """`items` joined while they fit in `budget` characters (the first always, `most` at most),
    then how many more of `total` (default: of `items`): a list of peer values can never outgrow
    what a model is shown."""
    shown: list[str] = []
    used = 0
    for item in items[:most]:
        cost = len(item) + (len(sep) if shown else 0)
        if shown and used + cost > budget:
            break
        shown.append(item)
        used += cost
    rest = (len(items) if total is None else total) - len(shown)
    return sep.join(shown) + (f" and {rest} more" if rest else "")


def json_text(obj: Any, indent: int | None = None) -> str:
    """JSON for programs, values exact, with every forbidden character written as a `\\u` escape
    (json.dumps leaves C1 controls, bidi controls and line separators raw when not ASCII-only)."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    if _plain(text.replace("\n", "")):
        return text
    return "".join(_json_escape(c) if c != "\n" and is_forbidden_char(c) else c for c in text)


def _json_escape(c: str) -> str:
    return json.dumps(c)[1:-1] if ord(c) > 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF else f"\\u{ord(c):04x}"


# C0 but tab and newline; DEL and C1 (U+0080-U+009F, NEL and CSI included); ALM; LRM, RLM;
# LRE-RLO (U+202A-U+202E); LRI-PDI (U+2066-U+2069); LINE and PARAGRAPH SEPARATOR.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE_TEXT = re.compile(f"[{_UNSAFE}]")
_UNSAFE_LINE = re.compile(f"[\n\t{_UNSAFE}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE_OR_SURROGATE = re.compile(f"[{_UNSAFE}\ud800-\udfff]")


def unsafe(text: str, *, one_line: bool = False) -> str | None:
    """The first character of `text` that gitbus refuses to take in (with `one_line`, tab and
    newline too), or None when the text is clean. A lone surrogate (bytes that were not UTF-8)
    counts."""
    found = (_UNSAFE_LINE if one_line else _UNSAFE_TEXT).search(text) or _SURROGATE.search(text)
    return found.group() if found else None


def clean(text: str) -> bool:
    """`unsafe(text) is None` in one scan: what reading a whole history asks of every message."""
    return _UNSAFE_OR_SURROGATE.search(text) is None


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
