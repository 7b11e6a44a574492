"""Identifiers: agent names, message ids and bus ref names, each its own type.

An agent name becomes one ref component (`refs/bus/agents/<name>`), so it is validated strictly: a
hostile name (`../x`, `refs/heads/main`, `x.lock`) must never reach a ref outside the bus.
"""

from __future__ import annotations

import re
from typing import NewType

from gitbus import namerules, reffiles
from gitbus.errors import GitbusError
from gitbus.namerules import RESERVED as RESERVED

AgentName = NewType("AgentName", str)
MessageId = NewType("MessageId", str)
RefName = NewType("RefName", str)

EVERYONE = AgentName("*")
BUS_PREFIX = "refs/bus/"
KEPT_PREFIX = "refs/gitbus/"  # what this clone keeps of each remote's bus: as fetched, as vouched for
AGENTS_PREFIX = reffiles.AGENTS_PREFIX  # one spelling, shared with the hooks' fast path
LEDGER_REF = RefName(reffiles.LEDGER_REF)  # the single ledger of old; now the mark that it moved
LEDGERS_PREFIX = reffiles.LEDGERS_PREFIX  # the ledgers: `main` and the claim shards
MAIN_LEDGER = RefName(LEDGERS_PREFIX + "main")

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]|\.(?!\.)){0,62}$")
_ID = re.compile(r"^[0-9a-f]{4,16}$")


def agent_name(text: str) -> AgentName:
    """Validate an agent name: 1-63 of a-z 0-9 . _ -, starting alphanumeric, no `..`, not `.lock`."""
    shown = _excerpt(text)
    if text in RESERVED:
        raise GitbusError(
            f"'{shown}' is not a valid agent name; it is reserved ({', '.join(sorted(RESERVED))})."
        )
    if text.endswith((".lock", ".")):
        raise GitbusError(f"'{shown}' is not a valid agent name; it may not end in '.lock' or '.'.")
    if not _NAME.fullmatch(text):
        raise GitbusError(
            f"'{shown}' is not a valid agent name; use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, with no '..'."
        )
    return AgentName(text)


SHOWN_CHARS = 70  # of a refused name in its error line: it may be any length and hold anything


def _excerpt(text: str) -> str:
    """A refused name as its error line shows it: inert (escaped when not printable) and short."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    if len(shown) <= SHOWN_CHARS:
        return shown
    return f"{shown[: SHOWN_CHARS - 1]}… ({len(text)} characters)"


def derive_agent_name(text: str) -> AgentName:
    """Turn a worktree folder name into a valid agent name (lowercase, unsafe characters to '-')."""
    return agent_name(namerules.derive_name(text))  # the hooks' fast path derives the name the same way


def agent_ref(name: AgentName) -> RefName:
    return RefName(AGENTS_PREFIX + name)


def ledger_ref(name: str) -> RefName | None:
    """The ledger ref `refs/bus/ledgers/<name>`, or None when `name` names no ledger gitbus keeps
    (`main`, or a shard: 4 hex digits)."""
    return RefName(LEDGERS_PREFIX + name) if reffiles.ledger_name(name) else None


def is_ledger(ref: str) -> bool:
    """True for a ledger ref gitbus reads as a chain of ledger steps (`ledger_ref`)."""
    return ref.startswith(LEDGERS_PREFIX) and ledger_ref(ref[len(LEDGERS_PREFIX) :]) is not None


def new_message_id() -> MessageId:
    """64 random bits as 16 hex digits: unique without coordination, the same on every clone."""
    import secrets  # here, not at the top: the hooks' fast path never makes ids

    return MessageId(secrets.token_hex(8))


def message_id_prefix(text: str) -> str:
    """Validate a message id or unique prefix of one (4-16 hex digits)."""
    t = text.strip().lower()
    if not _ID.fullmatch(t):
        raise GitbusError(f"'{text}' is not a message id; ids are 4 to 16 hex digits (see `gitbus log`).")
    return t
