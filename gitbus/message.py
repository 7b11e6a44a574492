"""A bus message and its encoding as a git commit message (format version 1, docs/format.md).

The subject is for people reading `git log` (`discovery: the db config is in config/db.yaml`), the
body is the text exactly as posted, and the last paragraph holds `Gitbus-*` trailers that machines
read. Decoding never guesses: the trailer block is always the final paragraph we wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gitbus.clock import MAX_TIME_MS, MIN_TIME_MS, iso, sane
from gitbus.errors import CorruptMessage, GitbusError
from gitbus.ids import EVERYONE, LEDGER_REF, AgentName, MessageId, agent_name, agent_ref
from gitbus.inert import clean, describe, unsafe
from gitbus.paths import canonical

FORMAT_VERSION = 1
MAX_TEXT_BYTES = 64 * 1024
_SUBJECT_CHARS = 100
_FULL_ID = re.compile(r"^[0-9a-f]{16}$")
_TIME = re.compile(r"^[0-9]{1,20}$")
_VERSION = str(FORMAT_VERSION)
MAX_PATHS = 1000  # Gitbus-Path trailers one message may carry (posting refuses more too)
MAX_META = 64
MAX_META_CHARS = 4096


class Kind(StrEnum):
    JOIN = "join"
    DISCOVERY = "discovery"
    QUESTION = "question"
    ANSWER = "answer"
    REQUEST = "request"
    TAKE = "take"
    DONE = "done"
    CLAIM = "claim"
    RELEASE = "release"
    RENEW = "renew"


def kind_named(text: str) -> Kind:
    """The message type called `text`, or a one-line error listing the types."""
    try:
        return Kind(text)
    except ValueError:
        names = ", ".join(k.value for k in Kind)
        raise GitbusError(f"'{text}' is not a message type; use one of {names}.") from None


# Kinds written on the ledger, where one compare-and-swap both grants and announces.
LEDGER_KINDS = frozenset({Kind.TAKE, Kind.DONE, Kind.CLAIM, Kind.RELEASE, Kind.RENEW})


def carrier_order(msg: Message, commit: str) -> tuple[int, str, str]:
    """Where commit `commit`, carrying `msg`, sorts among the carriers of one message id: the
    first, the earliest in (time, chain, commit), is the message every reader takes."""
    return (msg.time, LEDGER_REF if msg.kind in LEDGER_KINDS else agent_ref(msg.sender), commit)


# Kinds whose text is the point of the message and so may not be empty.
TEXT_KINDS = frozenset({Kind.DISCOVERY, Kind.QUESTION, Kind.ANSWER, Kind.REQUEST})


@dataclass(frozen=True)
class Message:
    """One message on the bus. `to` is an agent name or `*` for everyone; times are epoch ms."""

    id: MessageId
    kind: Kind
    sender: AgentName
    to: AgentName
    text: str
    time: int
    paths: tuple[str, ...] = ()
    reply_to: MessageId | None = None
    meta: tuple[tuple[str, str], ...] = field(default=())

    def get(self, key: str) -> str | None:
        """A type-specific fact from `meta` (e.g. `expires` on a claim)."""
        for k, v in self.meta:
            if k == key:
                return v
        return None

    def summary(self) -> str:
        """The one line people see: in `git log` subjects and short listings."""
        first = self.text.split("\n", 1)[0].strip()
        if self.kind in (Kind.CLAIM, Kind.RELEASE, Kind.RENEW) and self.paths:
            first = ", ".join(self.paths) + (f": {first}" if first else "")
        if len(first) > _SUBJECT_CHARS:
            first = first[: _SUBJECT_CHARS - 1] + "…"
        return first or self.kind.value

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.kind.value,
            "from": self.sender,
            "to": "*" if self.to == EVERYONE else self.to,
            "text": self.text,
            "paths": list(self.paths),
            "reply_to": self.reply_to,
            "time": iso(self.time),
            "time_ms": self.time,
            **({"meta": dict(self.meta)} if self.meta else {}),
        }


def quote(text: str, limit: int = 280) -> str:
    """A peer's words as one quoted line: whitespace folded, inner quotes softened, length capped,
    so they read as data wherever gitbus shows them to a model."""
    one = " ".join(text.split()).replace('"', "'")
    if len(one) > limit:
        one = one[: limit - 1] + "…"
    return f'"{one}"'


def clean_text(text: str, kind: Kind) -> str:
    """Validate message text: at most 64 KiB of UTF-8, no NUL or control characters but tab/newline."""
    text = text.replace("\r\n", "\n").strip()
    if not text and kind in TEXT_KINDS:
        raise GitbusError(f"The {kind.value} text is empty; say something.")
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_TEXT_BYTES:
        raise GitbusError(f"The text is over the {MAX_TEXT_BYTES // 1024} KiB limit; shorten it.")
    bad = unsafe(text)
    if bad is not None:
        if describe(bad) == "bytes that are not UTF-8":
            raise GitbusError("The text is not valid UTF-8.")
        if describe(bad) == "control characters":
            raise GitbusError("The text contains NUL or control characters; send plain text.")
        raise GitbusError(f"The text contains {describe(bad)}; send plain text.")
    return text


def encode(msg: Message) -> str:
    """The commit message for `msg`."""
    trailers = [
        f"Gitbus-Version: {FORMAT_VERSION}",
        f"Gitbus-Id: {msg.id}",
        f"Gitbus-Type: {msg.kind.value}",
        f"Gitbus-From: {msg.sender}",
        f"Gitbus-To: {msg.to}",
        f"Gitbus-Time: {msg.time}",
    ]
    trailers += [f"Gitbus-Path: {p}" for p in msg.paths]
    if msg.reply_to:
        trailers.append(f"Gitbus-Reply-To: {msg.reply_to}")
    trailers += [f"Gitbus-Meta: {k}={_one_line(v)}" for k, v in msg.meta]
    subject = _one_line(f"{msg.kind.value}: {msg.summary()}")
    body = f"{msg.text}\n\n" if msg.text else ""
    return f"{subject}\n\n{body}" + "\n".join(trailers) + "\n"


_KINDS = {k.value: k for k in Kind}
_VALID: dict[tuple[str, str], str] = {}  # (what, value) -> value, for names and paths already checked


def _valid(what: str, value: str) -> str:
    """`value` checked as an agent name (`what` "name") or a repo path ("path"); repeated values
    (a bus has few senders and many messages on the same paths) are checked once per process."""
    key = (what, value)
    if key not in _VALID:
        checked = agent_name(value) if what == "name" else canonical(value)
        if len(_VALID) > 50_000:
            _VALID.clear()
        _VALID[key] = checked
    return _VALID[key]


def _stored_as_posted(text: str, kind: Kind) -> bool:
    """True when `clean_text(text, kind)` would return `text` as it is, found without copying it:
    what nearly every message read is. False sends the text through `clean_text` for the error."""
    return (
        len(text) <= MAX_TEXT_BYTES // 4  # at most 4 bytes a character: within the byte limit
        and clean(text)
        and text == text.strip()
        and (bool(text) or kind not in TEXT_KINDS)
    )


_SINGLE = ("Version", "Id", "Type", "From", "To", "Time")  # the trailers a message has once
_PATH_LINE, _META_LINE = "\nGitbus-Path: ", "\nGitbus-Meta: "
# Possessive (`*+`, `?+`): a line, once read, is never given back, so a peer's block that fails
# to match (a junk last line after megabytes of paths) fails in one pass, not by backtracking.
_CANONICAL = re.compile(
    "".join(f"Gitbus-{k}: ([^\\n]*+)\\n" for k in _SINGLE).removesuffix("\\n")
    + r"(?P<paths>(?:\nGitbus-Path: [^\n]*+)*+)(?:\nGitbus-Reply-To: (?P<reply>[^\n]*+))?+"
    + r"(?P<metas>(?:\nGitbus-Meta: [^\n]*+)*+)"
)


def _any_order(block: str) -> tuple[dict[str, str], list[str], list[str], str | None]:
    """The trailer lines of `block` in any order (docs/format.md, decoding rules 3 and 5): each
    once-only key's value (left out when the key came twice, so it reads as lacking), the paths and
    meta entries in order, and the first `Reply-To`; unknown `Gitbus-*` keys are passed over."""
    single: dict[str, str] = {}
    twice: set[str] = set()
    paths: list[str] = []
    metas: list[str] = []
    reply: str | None = None
    for line in block.split("\n"):
        k, colon, v = line.partition(": ")
        if not colon or not k.startswith("Gitbus-"):
            raise CorruptMessage(f"A bus commit has a malformed trailer line: {line[:60]!r}.")
        k = k[7:]
        if k == "Path":
            paths.append(v)
        elif k == "Meta":
            metas.append(v)
        elif k in _SINGLE:
            if k in single:
                twice.add(k)
            single[k] = v
        elif k == "Reply-To" and reply is None:
            reply = v
    for k in twice:
        del single[k]
    return single, paths, metas, reply


def decode(raw: str) -> Message:
    """Parse a commit message written by `encode`; raise `CorruptMessage` for anything else.

    Reading a whole history decodes every message, so this is written for speed (issue 16): the
    trailers in the order `encode` writes them are read by one pattern (any other order line by
    line, to the same result), names and paths are checked once per process, and the text in place.
    The checks, and the order of their refusals, are docs/format.md's decoding rules."""
    head, sep, rest = raw.partition("\n\n")
    if not sep:
        raise CorruptMessage("A bus commit has no gitbus trailers.")
    cut = rest.rstrip("\n").rfind("\n\n")
    text, block = ("", rest) if cut < 0 else (rest[:cut], rest[cut + 2 :])
    block = block.strip("\n")
    canonical = _CANONICAL.fullmatch(block)
    if canonical is not None:  # the order encode writes: one match instead of a pass over lines
        version, mid, kind_name, sender, to, when, path_lines, reply, meta_lines = canonical.groups()
        paths = path_lines[len(_PATH_LINE) :].split(_PATH_LINE) if path_lines else []
        metas = meta_lines[len(_META_LINE) :].split(_META_LINE) if meta_lines else []
    else:
        once, paths, metas, reply = _any_order(block)
        version, mid, kind_name, sender, to, when = (once.get(k) for k in _SINGLE)
    if version is None:
        raise _lacks("Version")
    if version != _VERSION:
        raise CorruptMessage(
            f"A bus message has format version {version}; this gitbus reads {FORMAT_VERSION}. Upgrade gitbus."
        )
    if kind_name is None:
        raise _lacks("Type")
    kind = _KINDS.get(kind_name)
    if kind is not None and when is None:
        raise _lacks("Time")
    if kind is None or when is None or not _TIME.fullmatch(when) or not sane(int(when)):
        raise CorruptMessage(
            f"A bus message has a bad type, or a time outside {MIN_TIME_MS}-{MAX_TIME_MS}: {head[:60]!r}."
        )
    meta = tuple([tuple(m.split("=", 1)) for m in metas if "=" in m]) if metas else ()
    # Messages may come from other clones or tools: hold them to the rules our own writers follow.
    try:
        if len(paths) > MAX_PATHS or len(meta) > MAX_META:
            raise GitbusError("too many paths or meta entries")
        for k, v in meta:
            if not k or len(k) + len(v) > MAX_META_CHARS or unsafe(k + v, one_line=True) is not None:
                raise GitbusError("a meta entry is too long or has characters gitbus refuses")
        if not _stored_as_posted(text, kind) and clean_text(text, kind) != text:
            raise GitbusError("the text is not as gitbus writes it (surrounding blank space)")
        if to is None:
            raise _lacks("To")
        if mid is None:
            raise _lacks("Id")
        mid = full_id(mid)
        if sender is None:
            raise _lacks("From")
        return Message(  # by position: a third quicker than by keyword, on every message read
            MessageId(mid),
            kind,
            AgentName(_valid("name", sender)),
            EVERYONE if to == EVERYONE else AgentName(_valid("name", to)),
            text,
            int(when),
            tuple([_valid("path", p) for p in paths]) if paths else (),
            MessageId(full_id(reply)) if reply is not None else None,
            meta,
        )
    except GitbusError as e:
        raise CorruptMessage(f"A bus message breaks the format: {e}") from None


def _lacks(name: str) -> CorruptMessage:
    return CorruptMessage(f"A bus commit lacks exactly one Gitbus-{name} trailer.")


def stamped_after(raw: str, limit: int) -> bool:
    """True when commit message `raw` may be a message stamped after `limit`: a `Gitbus-Time` line
    holds such a time. False proves that `decode(raw)`, if it succeeds, has a time at or before
    `limit`, without decoding: vouching for a long fetched chain reads only that line of each."""
    at = raw.find(_TIME_LINE)
    while at >= 0:
        start = at + len(_TIME_LINE)
        end = raw.find("\n", start)
        value = raw[start : end if end >= 0 else len(raw)]
        if _TIME.fullmatch(value) and int(value) > limit:
            return True
        at = raw.find(_TIME_LINE, start)
    return False


_TIME_LINE = "\nGitbus-Time: "


def full_id(text: str) -> str:
    """`text` if it is a whole message id (16 lowercase hex digits), else a one-line error."""
    if not _FULL_ID.fullmatch(text):
        raise GitbusError(f"'{text[:40]}' is not a 16-hex-digit message id.")
    return text


def _one_line(s: str) -> str:
    return s.replace("\n", " ").replace("\r", " ")
