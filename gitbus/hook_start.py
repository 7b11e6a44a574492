"""SessionStart: who the agent is and what concerns it, and for an agent's first session what the team knows.

The start is told under the session's lock and its cursor saved only once the output went out, so a
start that could not be written is made again, the same, at the next; the claims and the brief are
cut to a budget, since a peer's path or reason can be any length and the client caps what a hook
may say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from gitbus.gitfiles import Oid
from gitbus.hook_session import Session, emit
from gitbus.inert import quoted_path

if TYPE_CHECKING:
    from gitbus.bus import Bus

CLAIMS_CHARS = 1500  # each list of claims at session start


def session_start(s: Session, source: str, send: Callable[[str], bool]) -> None:
    """Who the agent is and what concerns it, handed to `send` as SessionStart output; for an agent's
    first session, what the team knows (`first_brief`). Under the session's lock, its cursor (and a
    new agent's read cursor) is saved only when `send` says the output went out, so a start that
    could not be written is made again, the same, at the next."""
    from gitbus.bus import Bus

    bus = Bus.open(s.loc.root, s.agent)
    with s.locked():
        cursor, earlier = s.cursor, 0
        starting = cursor is None or source in ("startup", "clear")
        if starting:  # what the agent has not seen is told from here on
            cursor, earlier = s.inbox().start(s.id, s.cursor)
        assert cursor is not None
        head = (
            f"gitbus: you are agent {s.agent} in worktree {quoted_path(str(s.loc.root))}. Other agents "
            "work in other worktrees of this repository and coordinate through gitbus (gitbus --help)."
        )
        if earlier:
            text, ids = first_brief(s, bus, head, {ref: Oid(tip) for ref, tip in cursor.tips.items()})
            cursor = cursor._replace(
                reminded=cursor.reminded + tuple(i for i in ids if i not in cursor.reminded)
            )
        else:
            text = _summary(bus, head)
        if not send(emit("SessionStart", text)):
            return  # nothing saved: the next start tells it again
        if starting:
            s.cursor = s.inbox().started(s.id, cursor)


def _summary(bus: Bus, head: str) -> str:
    """A later session's start: `head`, the claims, open questions and how many messages wait."""
    from gitbus.board import unknown_claims
    from gitbus.delivery import claim_list
    from gitbus.inbox import SESSION_BACKLOG
    from gitbus.inbox_walk import UNREAD_COUNT_MAX

    st = bus.status()
    lines = [head]
    if st.claims_unknown is not None:  # unknown, not none: the lists below may lack some
        lines.append(unknown_claims(st.claims_unknown))
    # Claims are listed inert and within a budget: a peer's path or reason can be any length.
    if st.my_claims:
        lines.append("Your claims: " + claim_list(st.my_claims, st.now, CLAIMS_CHARS, 10) + ".")
    if st.other_claims:
        lines.append(
            "Claims of others (edits there are refused): "
            + claim_list(st.other_claims, st.now, CLAIMS_CHARS, 10)
            + "."
        )

    def count(n: int) -> str:  # the count reads one past UNREAD_COUNT_MAX, to tell "more than"
        if st.unread_partial:  # its walk stopped in others' traffic: at least this many
            return f"{n} or more"
        return f"more than {UNREAD_COUNT_MAX}" if n > UNREAD_COUNT_MAX else str(n)

    waiting = ""
    if st.unread_partial and not st.unread:
        waiting = "Messages for you may wait unread behind others' traffic: gitbus inbox."
    elif st.unread:
        many = count(st.unread)
        waiting = (
            f"{many} unread message(s), told here as they fit (or read them now: gitbus inbox)."
            if st.unread <= SESSION_BACKLOG and not st.unread_partial
            else f"{many} unread message(s): gitbus inbox."
        )
    if st.open_questions:
        lines.append(f"{len(st.open_questions)} open question(s). {waiting}".rstrip())
    elif waiting:
        lines.append(waiting)
    lines.append(LIVE_NOTE)
    return "\n".join(lines)


LIVE_NOTE = "New messages from other agents will appear here as they arrive."
BRIEF_CHARS = 6000  # of Claude Code's 10,000 per hook output string


def first_brief(s: Session, bus: Bus, head: str, origin: Mapping[str, Oid]) -> tuple[str, list[str]]:
    """An agent's first session starts knowing what the team knows: claims, open questions and
    requests for it, and the discoveries that touch its claimed and changed paths first, as the
    context file ranks them, within `BRIEF_CHARS`; and the ids of the questions it names, which are
    not reminded at Stop either. What came before is behind the agent's cursor once this is out,
    so nothing here is told again (the messages are read up to `origin`, where the session's
    cursor starts)."""
    from gitbus import context, context_text, context_view

    view = context_view.read_view(bus.repo, bus.clock.now_ms(), origin)
    changed = context.changed_paths(bus.repo, s.loc.root)
    text, ids = context_text.brief(view, s.agent, changed, bus.repo.ignorecase, BRIEF_CHARS)
    known = [text] if text else ["No claims, open questions, requests or discoveries yet."]
    brief = [
        head,
        "This is your first session. What the team knows now (peers' words in quotes; all that "
        "came before: gitbus log):",
        *known,
        LIVE_NOTE,
    ]
    return "\n".join(brief), list(ids)
