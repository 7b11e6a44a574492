"""The one function family every face shows peer strings through (gitbus/inert.py)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gitbus.inert import (
    has_forbidden_char,
    inert,
    inert_block,
    is_forbidden_char,
    json_text,
    quoted,
    quoted_path,
    within,
)

HOSTILE = [
    "\x1b[2J",  # CSI: clear the screen
    "\x1b]0;pwned\x07",  # OSC 0: the window title
    "\x1b]52;c;cm0gLXJmIH4=\x07",  # OSC 52: the clipboard
    "ok\rrewritten",
    "ab\bc",
    "\x9b31m",  # C1 CSI
    "\u202egnp.exe",  # right-to-left override
    "a\u2066b\u2069",  # isolates
    "\u200e\u200f",
    "line\u2028message from the operator",
    "para\u2029x",
    "zero\u200bwidth",
    "tag\U000e0041\U000e0042",  # invisible tag characters
    "\x00nul\x7fdel",
    "fill\u3164er\u115f",  # Hangul fillers: letters that draw as nothing
    "vs\U000e0100",  # a supplementary variation selector
]


def test_every_hostile_character_is_forbidden_and_plain_text_is_not() -> None:
    for text in HOSTILE:
        assert has_forbidden_char(text), repr(text)
    for plain in ("internal/api/", "données é ü 日本語", "emoji 🎉 ❤\ufe0f", "a b\u00a0c", "[/x] [link=x]"):
        assert not has_forbidden_char(plain), plain
    assert is_forbidden_char("\n") and is_forbidden_char("\t")


def test_a_one_line_field_shows_every_forbidden_character_as_an_escape() -> None:
    assert inert("\x1b[2J") == "\\x1b[2J"
    assert inert("a\nb\tc") == "a\\x0ab\\x09c"
    assert inert("\u202egnp") == "\\u202egnp"
    assert inert("x\U000e0041") == "x\\U000e0041"
    assert inert("plain text") == "plain text"


@given(st.text())
def test_nothing_forbidden_survives_inert_or_quoting(text: str) -> None:
    for shown in (inert(text), quoted(text), quoted_path(text), inert(text, 10)):
        assert not has_forbidden_char(shown)
    assert not has_forbidden_char(inert_block(text).replace("\n", "").replace("\t", ""))


def test_a_body_keeps_its_lines_but_not_a_carriage_return() -> None:
    assert inert_block("one\n\ttwo\rthree\x1b[A") == "one\n\ttwo\\x0dthree\\x1b[A"


def test_a_cap_ends_in_an_ellipsis() -> None:
    assert inert("x" * 50, 10) == "x" * 9 + "…"
    assert len(quoted("word " * 200)) == 280 + 2


def test_a_long_path_is_cut_in_the_middle_and_quoted() -> None:
    path = "a/" * 30_000 + "handler.go"
    shown = quoted_path(path)
    assert len(shown) <= 162 and shown.startswith('"a/a/') and shown.endswith('handler.go"') and "…" in shown


def test_a_plain_path_is_shown_as_it_is_and_any_other_is_quoted() -> None:
    assert quoted_path("internal/api/handler_v2.go") == "internal/api/handler_v2.go"
    assert quoted_path("docs/my notes.md") == '"docs/my notes.md"'
    assert quoted_path("x\u2028message from the operator") == '"x\\u2028message from the operator"'
    assert quoted_path('a"b') == '"a\\"b"'


def test_a_list_stops_at_its_budget_and_says_how_many_more() -> None:
    assert within(["aaaa", "bbbb", "cccc"], 10) == "aaaa, bbbb and 1 more"
    assert within(["x" * 50], 10) == "x" * 50  # the first always
    assert within(["a", "b", "c"], 100, most=2) == "a, b and 1 more"
    assert within(["a", "b"], 100, total=7) == "a, b and 5 more"


def test_json_keeps_every_value_exact_and_shows_no_forbidden_character() -> None:
    obj = {"text": "".join(HOSTILE), "more": ["\ud800", "\n"]}
    dumped = json_text(obj, indent=2)
    assert json.loads(dumped) == obj
    assert not has_forbidden_char(dumped.replace("\n", ""))
