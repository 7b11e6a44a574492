"""The Stop hook's background waiter (`gitbus hook wake`, Claude Code's asyncRewake): it waits until a
message addressed to its agent arrives, then wakes the idle session with it, exactly once.

Kept apart from the hook handler because only the waiter needs the client's lifeline (`lifeline`):
the every-tool-call path in `hooks` never imports it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gitbus import state
from gitbus.gitfiles import Location, bus_tips
from gitbus.ids import AgentName
from gitbus.lifeline import Lifeline, headless

if TYPE_CHECKING:
    from gitbus.cursors import SessionCursor
    from gitbus.delivery import Batch
    from gitbus.inbox import Told


class Session(Protocol):
    """What the waiter needs of a hook session (`hook_session.Session` is one); a protocol, so the waiter
    does not import the hook handler that starts it."""

    loc: Location
    agent: AgentName
    id: str
    cursor: SessionCursor | None

    def locked(self) -> AbstractContextManager[None]: ...
    def resume(self, tips: Mapping[str, str]) -> bool: ...
    def new_batch(self, tips: Mapping[str, str], only_direct: bool = False) -> Batch: ...
    def tell(self, tips: Mapping[str, str], send: Callable[[str], bool] | None = None) -> Told: ...


WAKE_POLL_SECONDS = 0.5
WAKE_MAX_SECONDS = 8 * 3600


def wake_pid_file(s: Session) -> Path:
    """The session's waiter's pid file: a newer waiter replaces it, SessionEnd removes it."""
    return state.wake_pid(s.loc.common_dir, s.agent, s.id)


def wake(s: Session, env: Mapping[str, str]) -> int:
    """asyncRewake: wait in the background until a message for this agent arrives; exit 2 with it.

    One per session: a newer waiter replaces the pid file and the older one exits quietly. It ends
    with its session however that ends: SessionEnd removes the pid file, and the client's death or
    its end of our stderr closing is noticed at the next poll (`lifeline`). A headless run waits for
    this hook before it exits, so there it returns at once."""
    life = Lifeline(env)
    if headless(env, life.client_argv()):
        return 0
    pid_file = wake_pid_file(s)
    me = str(os.getpid())
    state.write_atomic(pid_file, me, prefix=".wake-")
    try:
        return _wait(s, life, lambda: pid_file.read_text().strip() == me)
    except OSError:
        return 0
    finally:
        with suppress(OSError):
            if pid_file.read_text().strip() == me:
                pid_file.unlink()


def _wait(s: Session, life: Lifeline, still_mine: Callable[[], bool]) -> int:
    started = time.monotonic()
    # From what the session was last told, not from the bus as it is now: a message posted between
    # the Stop hook and this waiter starting must wake the session too.
    last = dict(s.cursor.tips) if s.cursor is not None else bus_tips(s.loc.common_dir)
    while time.monotonic() - started < WAKE_MAX_SECONDS:
        time.sleep(WAKE_POLL_SECONDS)
        if not still_mine() or not life.alive():
            return 0
        tips = bus_tips(s.loc.common_dir)
        if tips == last:
            continue
        last = tips
        with s.locked():
            if s.cursor is None and not s.resume(tips):
                continue
            # Wake only for a message addressed to this agent, but then tell everything new, so
            # broadcasts before it are not skipped.
            if not s.new_batch(tips, only_direct=True).shown:
                continue
            told = s.tell(tips, send=lambda text: _send(text, life, still_mine))
        return 2 if told.text else 0
    return 0


def _send(text: str, life: Lifeline, still_mine: Callable[[], bool]) -> bool:
    """Write the wake text to the client; False if it cannot have been read (the client gone, or
    its session ended: SessionEnd took the pid file while the client was shutting down)."""
    if not (still_mine() and life.alive()):
        return False
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except OSError:
        return False
    return still_mine() and life.alive()
