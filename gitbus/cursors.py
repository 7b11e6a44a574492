"""Read cursors: which messages an agent (for `gitbus inbox`) or a session (for hooks) has seen.

A cursor maps each chain ref to the last commit seen on it. Because chains only grow, "new" is the
commits between that commit and the tip, and a message that arrives late (synced from another
machine with an older time) is still new: a cursor never remembers a position in time order, the
mistake that made other mailboxes skip messages. Cursors are local to a clone and
live in the common git dir, written atomically.

A session cursor is written twice (two slots, a sequence number, temp file + rename each), so a torn
or damaged file falls back to an identical copy: nothing lost, nothing repeated. This module stays
light: hooks read it on every tool call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gitbus import state
from gitbus.gitfiles import Oid, is_oid
from gitbus.state import locked, write_atomic

if TYPE_CHECKING:
    from gitbus.git import Repository


def load(repo: Repository, name: str) -> dict[str, Oid]:
    """The cursor `name`; a missing or unreadable one means nothing was seen yet."""
    try:
        obj = json.loads(state.cursor(repo.common_dir, name).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    return {str(k): Oid(str(v)) for k, v in obj.items() if isinstance(v, str)}


def save(repo: Repository, name: str, tips: Mapping[str, Oid]) -> None:
    """Replace the cursor `name` atomically (temp file + rename)."""
    _write(state.cursor(repo.common_dir, name), json.dumps(dict(sorted(tips.items()))))


@contextmanager
def agent_lock(repo: Repository, name: str) -> Iterator[None]:
    """Serialise changes to agent `name`'s cursor and shown ids (hook sessions, inbox and MCP
    update them at once; a read-modify-write that interleaved would lose one of them)."""
    with locked(state.cursor_lock(repo.common_dir, name)):
        yield


SHOWN_MAX = 1000  # ids remembered past an agent's cursor (what its sessions were shown)


def load_shown(repo: Repository, name: str) -> list[str]:
    """Message ids agent `name` was shown (by its hook sessions) beyond its cursor, oldest first.

    A session shows only what arrived after it started; anything older that the agent has not read
    keeps its cursor behind, so what the session showed past that gap is remembered by id instead:
    `gitbus inbox` then lists the gap without repeating what the model already saw."""
    try:
        obj = json.loads(state.shown(repo.common_dir, name).read_text())
    except (OSError, ValueError, RecursionError):
        return []
    return [str(x) for x in obj] if isinstance(obj, list) else []


def save_shown(repo: Repository, name: str, ids: list[str]) -> None:
    _write(state.shown(repo.common_dir, name), json.dumps(ids[-SHOWN_MAX:]))


PAGES_MAX = 20  # continuation tokens an agent's inbox remembers (the newest); each names every chain moved


class Continuation(NamedTuple):
    """Where an inbox page past the window stopped, so the next one goes on from there (issue 16):
    the tips the first page read (`origin`), each chain's position reached (`frontier`), the (time,
    id) order of the last message passed (`boundary`: it and everything newer were passed), and
    whether every message for the agent passed so far was read (`clean`: then reaching the cursor
    lets it move to `origin`)."""

    origin: dict[str, str]
    frontier: dict[str, str]
    boundary: tuple[int, int] | None
    clean: bool
    stops: dict[str, str]  # the agent's cursor when the first page was read: where walks end

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "frontier": self.frontier,
            "boundary": self.boundary,
            "clean": self.clean,
            "stops": self.stops,
        }


def save_page(repo: Repository, name: str, page: Continuation) -> str:
    """Remember `page` for agent `name` and return its token (a hash of it: the same position is
    the same token). The caller holds the agent's lock. A page keeps only the chains it moved past
    its origin, and pages of one walk share their origin: with thousands of agent refs the file
    stays about one set of tips per walk, not one per page."""
    import hashlib

    def digest(obj: object) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]

    origin, stops = digest(page.origin), digest(page.stops)
    moved = {r: t for r, t in page.frontier.items() if page.origin.get(r) != t}
    entry = {"origin": origin, "stops": stops, "moved": moved, "boundary": page.boundary, "clean": page.clean}
    token = digest(entry)
    known = _load_pages(repo, name)
    pages = {k: v for k, v in known["pages"].items() if k != token}
    pages[token] = entry
    kept = dict(list(pages.items())[-PAGES_MAX:])
    used = {str(v.get(k)) for v in kept.values() if isinstance(v, dict) for k in ("origin", "stops")}
    origins = {k: v for k, v in known["origins"].items() if k in used}
    origins[origin], origins[stops] = page.origin, page.stops
    _write(state.pages(repo.common_dir, name), json.dumps({"origins": origins, "pages": kept}))
    return token


def load_page(repo: Repository, name: str, token: str) -> Continuation | None:
    """The page `token` names for agent `name`, or None when it is not (or no longer) known, or
    what is stored for it is not what `save_page` writes (a damaged file is never guessed at)."""
    known = _load_pages(repo, name)
    try:
        entry = known["pages"][token]
        origin = _tips(known["origins"][entry["origin"]])
        stops = _tips(known["origins"][entry["stops"]])
        moved = _tips(entry["moved"])
        b, clean = entry["boundary"], entry["clean"]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if b is not None and not (
        isinstance(b, list) and len(b) == 2 and all(type(x) is int and 0 <= x < 2**64 for x in b)
    ):
        return None
    if type(clean) is not bool:
        return None
    return Continuation(origin, {**origin, **moved}, None if b is None else (b[0], b[1]), clean, stops)




def _tips(obj: object) -> dict[str, str]:
    """Chain refs to commit ids, as `save_page` writes them; `ValueError` for anything else."""
    if not isinstance(obj, dict):
        raise ValueError("not a mapping")
    out: dict[str, str] = {}
    for ref, oid in obj.items():
        if not (isinstance(ref, str) and ref.startswith("refs/bus/") and isinstance(oid, str)):
            raise ValueError("not a chain tip")
        if not is_oid(oid):
            raise ValueError("not a commit id")
        out[ref] = oid
    return out


PAGES_BYTES_MAX = 32 << 20  # a page store past this is not read (20 pages of 10,000 moved chains fit)


def _load_pages(repo: Repository, name: str) -> dict[str, dict[str, Any]]:
    f = state.pages(repo.common_dir, name)
    try:
        obj = json.loads(f.read_text()) if f.stat().st_size <= PAGES_BYTES_MAX else None
    except (OSError, ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        obj = {}
    parts = {k: obj.get(k) for k in ("origins", "pages")}
    return {k: v if isinstance(v, dict) else {} for k, v in parts.items()}


def _write(f: Path, data: str) -> None:
    """Replace `f` atomically: a unique temp file beside it, then rename (one line when the disk
    refuses, and no temp file left)."""
    write_atomic(f, data, prefix=".cursor-")


class SessionCursor(NamedTuple):
    """What a session has been shown: chain tips, the questions it was reminded of at Stop, and
    messages past its tips that its agent read another way (`gitbus inbox`, the MCP tools), which
    the session is then not shown again."""

    tips: dict[str, str]
    seq: int = 0
    reminded: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"tips": self.tips, "seq": self.seq, "reminded": list(self.reminded), "skip": list(self.skip)}


def sessions_of(common_dir: Path, agent: str) -> list[str]:
    """The sessions of `agent` that have a cursor on this clone."""
    d = state.agent_sessions(common_dir, agent)
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


@contextmanager
def session_lock(common_dir: Path, agent: str, session: str) -> Iterator[None]:
    """Serialise one session's hook calls (Claude Code runs parallel tool calls' hooks at once):
    read cursor, select, save must not interleave, or two calls would show the same message."""
    with locked(state.session_dir(common_dir, agent, session) / state.SESSION_LOCK):
        yield


def load_session(common_dir: Path, agent: str, session: str) -> SessionCursor | None:
    """The session's cursor from whichever slot is valid and newest; None for a new session."""
    best: SessionCursor | None = None
    for slot in state.SESSION_SLOTS:
        try:
            obj = json.loads((state.session_dir(common_dir, agent, session) / slot).read_text())
            c = SessionCursor(
                {str(k): str(v) for k, v in obj["tips"].items()},
                int(obj["seq"]),
                tuple(str(x) for x in obj.get("reminded", [])),
                tuple(str(x) for x in obj.get("skip", [])),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue  # a slot nested too deep to parse is as damaged as one cut short
        if best is None or c.seq > best.seq:
            best = c
    return best


def save_session(common_dir: Path, agent: str, session: str, cursor: SessionCursor) -> SessionCursor:
    """Write `cursor` (with the next sequence number) to both slots; returns what was written."""
    d = state.session_dir(common_dir, agent, session)
    written = SessionCursor(cursor.tips, cursor.seq + 1, cursor.reminded[-200:], cursor.skip[-SHOWN_MAX:])
    data = json.dumps(written.to_json())
    for slot in state.SESSION_SLOTS:
        _write(d / slot, data)
    return written
