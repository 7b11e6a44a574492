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
from gitbus.ids import EVERYONE, AgentName, MessageId, agent_name
from gitbus.inert import describe, unsafe
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


def decode(raw: str) -> Message:
    """Parse a commit message written by `encode`; raise `CorruptMessage` for anything else.

    Reading a whole history decodes every message, so this is written for speed (issue 16): one
    pass over the trailer lines, and names and paths checked once per process."""
    head, sep, rest = raw.partition("\n\n")
    if not sep:
        raise CorruptMessage("A bus commit has no gitbus trailers.")
    cut = rest.rstrip("\n").rfind("\n\n")
    text, block = ("", rest) if cut < 0 else (rest[:cut], rest[cut + 2 :])
    fields: dict[str, list[str]] = {}
    for line in block.strip("\n").split("\n"):
        k, colon, v = line.partition(": ")
        if not colon or not k.startswith("Gitbus-"):
            raise CorruptMessage(f"A bus commit has a malformed trailer line: {line[:60]!r}.")
        got = fields.get(k[7:])
        if got is None:
            fields[k[7:]] = [v]
        else:
            got.append(v)

    def one(name: str) -> str:
        vals = fields.get(name)
        if not vals or len(vals) != 1:
            raise CorruptMessage(f"A bus commit lacks exactly one Gitbus-{name} trailer.")
        return vals[0]

    version = one("Version")
    if version != _VERSION:
        raise CorruptMessage(
            f"A bus message has format version {version}; this gitbus reads {FORMAT_VERSION}. Upgrade gitbus."
        )
    kind = _KINDS.get(one("Type"))
    when = one("Time") if kind is not None else ""
    if kind is None or not _TIME.fullmatch(when) or not sane(int(when)):
        raise CorruptMessage(
            f"A bus message has a bad type, or a time outside {MIN_TIME_MS}-{MAX_TIME_MS}: {head[:60]!r}."
        )
    time_ms = int(when)
    metas = fields.get("Meta")
    meta = tuple(tuple(m.split("=", 1)) for m in metas if "=" in m) if metas else ()
    reply = fields.get("Reply-To")
    paths = fields.get("Path", ())
    # Messages may come from other clones or tools: hold them to the rules our own writers follow.
    try:
        if len(paths) > MAX_PATHS or len(meta) > MAX_META:
            raise GitbusError("too many paths or meta entries")
        for k, v in meta:
            if not k or len(k) + len(v) > MAX_META_CHARS or unsafe(k + v, one_line=True) is not None:
                raise GitbusError("a meta entry is too long or has characters gitbus refuses")
        if clean_text(text, kind) != text:
            raise GitbusError("the text is not as gitbus writes it (surrounding blank space)")
        to = one("To")
        msg = Message(
            id=MessageId(full_id(one("Id"))),
            kind=kind,
            sender=AgentName(_valid("name", one("From"))),
            to=EVERYONE if to == EVERYONE else AgentName(_valid("name", to)),
            text=text,
            time=time_ms,
            paths=tuple(_valid("path", p) for p in paths),
            reply_to=MessageId(full_id(reply[0])) if reply else None,
            meta=meta,  # type: ignore[arg-type]
        )
    except GitbusError as e:
        raise CorruptMessage(f"A bus message breaks the format: {e}") from None
    return msg


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
