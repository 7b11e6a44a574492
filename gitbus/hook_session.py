"""One hook call's session (its worktree, agent, id and cursor) and the news it has not been told yet
(UserPromptSubmit, PostToolUse).

Hooks run on every prompt and tool call, so the common case (nothing new) is answered from git's
files and small JSON files without loading libgit2; the library is imported only when there is
something to say or to write. A session is identified by `session_id` and its agent by the worktree
of `cwd`; text reaches the model only as `hookSpecificOutput.additionalContext` (`emit`), as plain
stdout is dropped on PostToolUse (docs/claude-code.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitbus import agents, cursors
from gitbus.errors import GitbusError
from gitbus.gitfiles import Location, bus_tips, locate
from gitbus.ids import AgentName

if TYPE_CHECKING:
    from gitbus import delivery
    from gitbus.inbox import Inbox, Told


def emit(event: str, text: str = "", **extra: Any) -> str:
    out: dict[str, Any] = {"hookEventName": event, **extra}
    if text:
        out["additionalContext"] = text
    return json.dumps({"hookSpecificOutput": out})


class Session:
    """One hook call's view: the worktree, the agent, the session and its cursor.

    It reads and saves the session cursor itself (small JSON files: the fast path); what to tell and
    where a session starts are the inbox's (`gitbus.inbox`), loaded only when the tips moved."""

    def __init__(self, loc: Location, agent: AgentName, session_id: str, cwd: Path | None = None) -> None:
        self.loc, self.agent, self.id = loc, agent, session_id
        self.cwd = cwd or loc.root  # the folder the client runs in (its relative paths start here)
        self.cursor = cursors.load_session(loc.common_dir, agent, session_id)

    def save(self, tips: Mapping[str, str], reminded: tuple[str, ...] | None = None) -> None:
        base = self.cursor or cursors.SessionCursor({})
        self.cursor = cursors.save_session(
            self.loc.common_dir,
            self.agent,
            self.id,
            cursors.SessionCursor(
                dict(tips), base.seq, base.reminded if reminded is None else reminded, base.skip
            ),
        )

    def inbox(self) -> Inbox:
        """The agent's inbox, on a fresh handle (a waiter lives for hours; loads the library, so
        only called when there is something to do)."""
        from gitbus.git import Repository
        from gitbus.inbox import Inbox

        return Inbox(Repository.open(self.loc.root), self.agent)

    def new_batch(self, tips: Mapping[str, str], only_direct: bool = False) -> delivery.Batch:
        """What is new since the cursor (loads the library: only called when tips moved)."""
        return self.inbox().new_batch(self.cursor or cursors.SessionCursor({}), tips, only_direct)

    def resume(self, tips: Mapping[str, str]) -> bool:
        """Give a session without a readable cursor one to go on from (`Inbox.resume`), saved at
        once so the next call is the fast path again. False when there is nothing new to tell."""
        self.cursor = self.inbox().resume(self.id)
        return self.cursor.tips != dict(tips)

    def deliver(self, event: str, send: Callable[[str], bool]) -> None:
        """New messages for this session, handed to `send` as hook output, advancing the cursor over
        what is shown only when `send` says the output went out: a hook that cannot write its stdout
        loses nothing."""
        if self.cursor is not None and self.cursor.tips == bus_tips(self.loc.common_dir):
            return  # the fast path: nothing new, no lock, no libgit2
        with self.locked():
            tips = bus_tips(self.loc.common_dir)
            if self.cursor is None and not self.resume(tips):
                return
            assert self.cursor is not None
            if self.cursor.tips == tips:
                return
            self.tell(tips, lambda text: send(emit(event, text)) if text else True)

    def tell(self, tips: Mapping[str, str], send: Callable[[str], bool] | None = None) -> Told:
        """`Inbox.tell` for this session; the caller holds the lock and has a cursor."""
        assert self.cursor is not None
        told, self.cursor = self.inbox().tell(self.id, self.cursor, tips, send)
        return told

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this session's lock and re-read its cursor under it."""
        with cursors.session_lock(self.loc.common_dir, self.agent, self.id):
            self.cursor = cursors.load_session(self.loc.common_dir, self.agent, self.id)
            yield


def session_of(data: Mapping[str, Any], env: Mapping[str, str]) -> Session | None:
    """The session a hook call comes from: its worktree (of `cwd`), agent and id; None outside a
    repository."""
    cwd = _text(data, "cwd")
    if not cwd:
        try:
            cwd = os.getcwd()
        except OSError:  # the folder the hook was started in is gone
            raise GitbusError("the input names no cwd, and the hook's own folder is gone.") from None
    session_id = _text(data, "session_id") or "default"
    loc = locate(Path(cwd))
    if loc is None:
        return None
    return Session(loc, agents.resolve(loc, None, env), session_id, Path(cwd))


def _text(data: Mapping[str, Any], field: str) -> str:
    """A field that names a file: refused in one sentence when no file name can hold it (JSON
    can carry a NUL or a lone surrogate; a path or a session's file name cannot)."""
    value = data.get(field) or ""
    if not isinstance(value, str):
        raise GitbusError(f"the input's {field} is not text.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise GitbusError(f"the input's {field} is not valid text (it holds a lone surrogate).") from None
    if "\0" in value:
        raise GitbusError(f"the input's {field} holds a NUL character.")
    return value
