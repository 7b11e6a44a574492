"""Stop and SessionEnd: the news and the open questions recalled when a turn ends, and a session's end.

A Stop recalls only a few unanswered questions at a time (the longest waiting first) and counts
nothing as told or reminded unless it went out, so a Stop that could not be written is made again
at the next; a session's end only removes its waiter's pid file (the waiter, `gitbus.waiter`, then
exits by itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from gitbus import state
from gitbus.gitfiles import bus_tips
from gitbus.hook_session import Session, emit

STOP_REMINDERS = 5  # open questions recalled per Stop; the rest at the next ones


def stop(s: Session, data: Mapping[str, Any], send: Callable[[str], bool]) -> None:
    """New messages and a few open questions to this agent not yet reminded, handed to `send` as
    Stop output; nothing counts as told or reminded unless `send` says it went out."""
    if data.get("stop_hook_active"):
        return
    from gitbus.board import read
    from gitbus.bus import OPEN_WINDOW

    with s.locked():
        tips = bus_tips(s.loc.common_dir)
        if s.cursor is None and not s.resume(tips):
            return
        assert s.cursor is not None
        moved = s.cursor.tips != tips
        inbox = s.inbox()  # one handle for the news, the board and the telling
        # a question the news shows now is not repeated in the reminder below
        news = {m.id for m in inbox.new_batch(s.cursor, tips).shown} if moved else set()
        board = read(inbox.repo, int(time.time() * 1000), OPEN_WINDOW)
        pending = [  # oldest first: the longest waiting are reminded first
            q
            for q in reversed(board.open_questions(to=s.agent))
            if q.id not in s.cursor.reminded and q.id not in news
        ]
        open_qs, later = pending[:STOP_REMINDERS], len(pending) - STOP_REMINDERS
        tail = _reminder(s, open_qs, later)
        went: list[bool] = []

        def out(told: str) -> bool:
            text = "\n".join(t for t in (told, tail) if t)
            went.append(send(emit("Stop", text)) if text else True)
            return went[-1]

        shown: tuple[str, ...] = ()
        if moved:
            told, s.cursor = inbox.tell(s.id, s.cursor, tips, out)
            shown = told.shown
            if not all(went):
                return  # it did not go out: nothing is told or reminded, the next Stop tries again
        elif not out(""):
            return
        assert s.cursor is not None
        if open_qs or shown:  # only what is shown counts as reminded: the rest waits for a later Stop
            s.save(s.cursor.tips, s.cursor.reminded + shown + tuple(q.id for q in open_qs))


def _reminder(s: Session, open_qs: list[Any], later: int) -> str:
    from gitbus import delivery

    if not open_qs:
        return ""
    text = "Still unanswered questions to you:\n" + "\n".join(delivery.fact(q, s.agent) for q in open_qs)
    if later > 0:
        text += f"\n{later} more unanswered question(s) to you (all open questions: gitbus status)."
    return text


def session_end(s: Session) -> str:
    """The session is over: its waiter, if any, sees its pid file gone and exits."""
    with suppress(OSError):
        state.wake_pid(s.loc.common_dir, s.agent, s.id).unlink()
    return ""
