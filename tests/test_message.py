from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitbus.clock import MAX_TIME_MS, MIN_TIME_MS
from gitbus.errors import CorruptMessage, GitbusError
from gitbus.ids import AgentName, MessageId
from gitbus.message import MAX_TEXT_BYTES, Kind, Message, clean_text, decode, encode, stamped_after

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True).map(AgentName)
ids = st.from_regex(r"[0-9a-f]{16}", fullmatch=True).map(MessageId)
path_list = st.lists(st.from_regex(r"[a-z]{1,5}(/[a-z][a-z .]{0,4}){0,3}/?", fullmatch=True), max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    text=texts,
    sender=names,
    to=st.one_of(st.just(AgentName("*")), names),
    time=st.integers(min_value=MIN_TIME_MS, max_value=MAX_TIME_MS),
    paths=path_list,
    reply=st.one_of(st.none(), ids),
    mid=ids,
)
def test_every_clean_message_survives_encode_then_decode(
    kind: Kind,
    text: str,
    sender: AgentName,
    to: AgentName,
    time: int,
    paths: list[str],
    reply: MessageId | None,
    mid: MessageId,
) -> None:
    try:
        text = clean_text(text, kind)
    except GitbusError:
        return
    msg = Message(mid, kind, sender, to, text, time, tuple(p.strip() for p in paths if p.strip()), reply)
    assert decode(encode(msg)) == msg


def test_the_subject_is_the_type_and_the_first_line_for_git_log() -> None:
    msg = Message(
        MessageId("0" * 16), Kind.DISCOVERY, AgentName("a"), AgentName("*"), "db is here\nmore", MIN_TIME_MS
    )
    assert encode(msg).splitlines()[0] == "discovery: db is here"


def test_text_that_looks_like_trailers_stays_text() -> None:
    text = "first\n\nGitbus-Type: claim\nGitbus-From: evil"
    msg = Message(MessageId("1" * 16), Kind.DISCOVERY, AgentName("a"), AgentName("*"), text, MIN_TIME_MS)
    assert decode(encode(msg)).text == text
    assert decode(encode(msg)).kind is Kind.DISCOVERY


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("x" * (MAX_TEXT_BYTES + 1), "64 KiB"),
        ("a\x00b", "control"),
        ("bell\x07", "control"),
        ("\udcff", "UTF-8"),
    ],
)
def test_bad_text_is_refused_with_one_sentence(text: str, error: str) -> None:
    with pytest.raises(GitbusError, match=error):
        clean_text(text, Kind.DISCOVERY)


def test_text_at_the_limit_is_accepted() -> None:
    assert len(clean_text("é" * (MAX_TEXT_BYTES // 2), Kind.DISCOVERY)) == MAX_TEXT_BYTES // 2


@pytest.mark.parametrize(
    "raw",
    [
        "just a commit",
        "subject\n\nbody without trailers",
        "s\n\nGitbus-Version: 2\nGitbus-Id: 0000000000000000\nGitbus-Type: join\nGitbus-From: a\n"
        "Gitbus-To: *\nGitbus-Time: 1\n",
        "s\n\nGitbus-Version: 1\nGitbus-Id: 0000000000000000\nGitbus-Type: nope\nGitbus-From: a\n"
        "Gitbus-To: *\nGitbus-Time: 1\n",
    ],
)
def test_foreign_or_future_commits_are_not_mistaken_for_messages(raw: str) -> None:
    with pytest.raises(CorruptMessage):
        decode(raw)


def _raw(time: str = "1795599188637", text: str = "hello") -> str:
    return (
        f"discovery: x\n\n{text}\n\nGitbus-Version: 1\nGitbus-Id: 0000000000000001\nGitbus-Type: discovery\n"
        f"Gitbus-From: a\nGitbus-To: *\nGitbus-Time: {time}\n"
    )


@pytest.mark.parametrize("time", ["9" * 30, "999999999999", "10000000000000", "-1795599188637", "1e12"])
def test_a_time_outside_thirteen_digits_is_not_a_message(time: str) -> None:
    with pytest.raises(CorruptMessage, match="time"):
        decode(_raw(time=time))


@pytest.mark.parametrize(
    "text", ["evil \u202e txt.exe", "one\u2028two", "\x1b]0;title\x07", "csi \x9b31m", "  pad  "]
)
def test_text_posting_would_refuse_is_not_a_message_when_read(text: str) -> None:
    with pytest.raises(CorruptMessage):
        decode(_raw(text=text))


@pytest.mark.parametrize(
    "text", ["evil \u202e txt.exe", "one\u2028two", "\u2066isolate\u2069", "csi \x9b31m"]
)
def test_posting_refuses_bidi_controls_and_line_separators(text: str) -> None:
    with pytest.raises(GitbusError, match="character"):
        clean_text(text, Kind.DISCOVERY)


def test_every_character_gitbus_refuses_in_text_is_one_the_faces_would_escape() -> None:
    from gitbus.inert import is_forbidden_char, unsafe

    refused = [chr(c) for c in range(0x3000) if unsafe(chr(c)) is not None]
    assert refused and all(is_forbidden_char(c) for c in refused)
    assert unsafe("family \U0001f468\u200d\U0001f469\u200d\U0001f467, soft\u00adhyphen") is None


_JUNK = st.sampled_from(["", "0x10", "1e5", " 5", "5\r", "-1", "9" * 30])


@settings(max_examples=300, deadline=None)
@given(
    stamps=st.lists(st.one_of(st.integers(-3, 3), _JUNK), min_size=0, max_size=3),
    limit=st.integers(MIN_TIME_MS, MAX_TIME_MS - 3),
    text=st.sampled_from(["", "hi", "Gitbus-Time: 9999999999999\n", "x\n\nGitbus-Time: 1"]),
)
def test_a_message_stamped_after_a_limit_is_always_seen_by_the_cheap_check(
    stamps: list[int | str], limit: int, text: str
) -> None:
    """Vouching skips decoding when `stamped_after` is False; it must never hide a late stamp."""
    times = [str(limit + s) if isinstance(s, int) else s for s in stamps]
    lines = ["Gitbus-Version: 1", "Gitbus-Id: 00000000000000aa", "Gitbus-Type: discovery",
             "Gitbus-From: mallory", "Gitbus-To: *", *(f"Gitbus-Time: {t}" for t in times)]
    raw = f"discovery: x\n\n{text}\n\n" + "\n".join(lines) + "\n"
    try:
        late = decode(raw).time > limit
    except CorruptMessage:
        late = False
    assert not late or stamped_after(raw, limit)


_ONCE = ("Version", "Id", "Type", "From", "To", "Time")


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    sender=names,
    paths=path_list,
    reply=st.one_of(st.none(), ids),
    meta=st.lists(st.tuples(st.sampled_from(["expires", "part", "k"]), st.sampled_from(["1", "x y", "a=b"])),
                  max_size=2),
    order=st.randoms(use_true_random=False),
    extra=st.booleans(),
    twice=st.one_of(st.none(), st.sampled_from(_ONCE)),
)
def test_trailers_read_the_same_in_any_order_and_a_repeated_one_is_refused(
    kind: Kind, sender: AgentName, paths: list[str], reply: MessageId | None,
    meta: list[tuple[str, str]], order: object, extra: bool, twice: str | None,
) -> None:
    """What encode writes is read by one pattern; any other order goes line by line (docs/format.md,
    decoding rules 3-5). Both must give the same message, and the same refusals."""
    import random

    assert isinstance(order, random.Random)
    text = "" if kind not in (Kind.DISCOVERY, Kind.QUESTION, Kind.ANSWER, Kind.REQUEST) else "hi"
    msg = Message(MessageId("00000000000000ab"), kind, sender, AgentName("*"), text, MIN_TIME_MS,
                  tuple(p.strip() for p in paths if p.strip()), reply, tuple(meta))
    head, _, block = encode(msg).rstrip("\n").rpartition("\n\n")
    lines = block.split("\n")
    ordered = [line for line in lines if line.startswith(("Gitbus-Path:", "Gitbus-Meta:"))]
    moved = [line for line in lines if line not in ordered]
    order.shuffle(moved)
    at = 0
    for line in ordered:  # paths and meta keep their own order among the other lines
        at = order.randint(at, len(moved))
        moved.insert(at, line)
        at += 1
    if extra:
        moved.insert(order.randint(0, len(moved)), "Gitbus-Later-Key: ignored")
    if twice is not None:
        moved.append(next(line for line in lines if line.startswith(f"Gitbus-{twice}: ")))
    shuffled = f"{head}\n\n" + "\n".join(moved) + "\n"
    if twice is None:
        assert decode(shuffled) == decode(encode(msg)) == msg
    else:
        with pytest.raises(CorruptMessage, match=f"exactly one Gitbus-{twice} trailer"):
            decode(shuffled)
