"""What an agent should know now, as text: the context file's sections, ranked for one agent and
fitted to a budget of characters.

The same sections make the context file (`render`) and the brief a first session starts with
(`brief`). Room is shared out round by round, most important entry first: each section shows its
top entry before any shows a second, and the rest of a section is one "N more" line, so a long list
(others' claims, say) can never push a later section out. The trade-off: the order a reader sees
is by importance, not complete; the "N more" lines name the command that lists the rest. Peer
strings are written inert (`delivery`'s facts and `gitbus.inert`): an agent reads this text as
part of its instructions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from gitbus import paths as P
from gitbus.board import unknown_claims
from gitbus.claims import Claim
from gitbus.clock import hhmm
from gitbus.context_view import View
from gitbus.delivery import claim_fact, name, path_list
from gitbus.ids import EVERYONE, AgentName
from gitbus.inert import inert, quoted, quoted_path
from gitbus.message import Message

MAX_CHARS = 8000  # the whole file, pointer included
POINTER = "More: `gitbus inbox`, `gitbus log`, `gitbus status`.\n"
MAX_DISCOVERIES = 20
# Sections by what an agent must not miss: its claims, questions to it, answers to its questions,
# others' claims, open requests, discoveries (indices into the sections as `render` lists them).
PRIORITY = (0, 2, 3, 1, 4, 5)
ROUNDS = (1, 3, 10, sys.maxsize)  # entries per section, raised round by round while room is left


@dataclass(frozen=True)
class Section:
    """One `##` section: its entries in display order, and which of them matter most."""

    title: str
    entries: list[str]
    more: str  # the command that lists the rest
    rank: list[int] | None = None  # indices into `entries`, most important first (None: in order)
    most: int | None = None  # never more than this many, however much room is left
    ids: list[str] | None = None  # the message behind each entry, where there is one
    unlisted: int = 0  # entries past `most`, left out of `entries` and counted in the "N more" line

    def ranked(self, n: int) -> list[int]:
        """The indices of the `n` entries that matter most."""
        return self.rank[:n] if self.rank is not None else list(range(min(n, len(self.entries))))

    def lines(self, shown: int) -> list[str]:
        if not self.entries:
            return ["", f"## {self.title}", "- none"]
        picked = [self.entries[i] for i in sorted(self.ranked(shown))]
        return ["", f"## {self.title}", *picked, *_more(len(self.entries) + self.unlisted - shown, self.more)]


def _more(n: int, command: str) -> list[str]:
    return [f"- … and {n} more: `{command}`"] if n > 0 else []


def render(view: View, me: AgentName, root: Path, changed: list[str], ignorecase: bool) -> str:
    """The context file for agent `me`: facts, newest first, within `MAX_CHARS` (pointer included)."""
    updated = view.once("now", lambda: hhmm(view.now))
    head = [
        f"# gitbus context for agent {me}",
        "",
        f"You are agent **{me}** in worktree {_where(root)}. Updated {updated}; this file is rewritten "
        "by `gitbus watch` as the bus changes. Text in quotes is other agents' words.",
    ]
    tail = ["", POINTER]
    body, _ = _fitted(sections(view, me, changed, ignorecase), MAX_CHARS - len("\n".join(head + tail)))
    return "\n".join(head + body + tail)


def _where(root: Path) -> str:
    """The worktree's path for the header: a plain one as code, any other quoted and inert
    (`quoted_path`), since a directory name may hold a backtick, escape sequences or a bidi override."""
    shown = quoted_path(str(root))
    return shown if shown.startswith('"') else f"`{shown}`"


def brief(
    view: View, me: AgentName, changed: list[str], ignorecase: bool, room: int
) -> tuple[str, list[str]]:
    """What an agent should know now, as the context file's sections within `room` characters (the
    empty ones left out), and the ids of the questions and requests it names (for a session that
    starts knowing them)."""
    lines, ids = _fitted(sections(view, me, changed, ignorecase), room, empty=False)
    return "\n".join(lines).strip("\n"), ids


def _fitted(secs: list[Section], room: int, empty: bool = True) -> tuple[list[str], list[str]]:
    """The lines of `secs` fitted to `room` (sections with nothing in them only with `empty`)."""
    shown = _fit(secs, room)
    lines = [
        line for sec, n in zip(secs, shown, strict=True) if empty or sec.entries for line in sec.lines(n)
    ]
    ids = [sec.ids[i] for sec, n in zip(secs, shown, strict=True) if sec.ids for i in sec.ranked(n)]
    return lines, ids


def sections(view: View, me: AgentName, changed: list[str], ignorecase: bool) -> list[Section]:
    """Everything an agent should know now, section by section, most important entries ranked first:
    its claims, others' claims (touching its paths first), questions to it, answers to its
    questions, open requests, and discoveries (touching its claimed and changed paths first)."""
    now = view.now
    mine = [c for c in view.claims if c.owner == me]
    near = [c.path for c in mine] + changed
    near_keys = [view.key(p, ignorecase) for p in near]

    def touches_mine(path: str) -> bool:
        k = view.key(path, ignorecase)
        return any(P.keys_overlap(k, q) for q in near_keys)

    def claim(c: Claim) -> str:  # by identity: the view holds its claims, and hashing one is slow
        return view.once(("claim", id(c)), lambda: f"- {claim_fact(c, now)}")

    def said(m: Message) -> str:  # the peer's words, quoted
        return view.once(("said", m.id), lambda: quoted(m.text, 200))

    def who(m: Message) -> str:
        return view.once(("who", m.id), lambda: name(m.sender))

    def short(text: str) -> str:
        return view.once(("id", text), lambda: inert(text[:8]))

    def found_line(m: Message) -> str:
        def make() -> str:
            on = " on " + path_list(m.paths) if m.paths else ""
            return f"- {who(m)}{on}: {said(m)}"

        return view.once(("found", m.id), make)

    others = [c for c in view.claims if c.owner != me and c.live(now)]
    if near:
        others.sort(key=lambda c: not touches_mine(c.path))
    open_qs = [m for m in view.open_questions if m.sender != me and m.to in (EVERYONE, me)]
    mine_qs = view.asked.get(me, set())
    answers = [m for m in view.answer_messages if m.reply_to in mine_qs] if mine_qs else []
    requests = [m for m in view.open_requests if m.to in (EVERYONE, me)]
    found = [(i, m) for i, m in view.discoveries if m.sender != me]
    if near:  # those touching my paths first, each part in bus order
        touching = view.touching(near, ignorecase)
        found = [im for im in found if im[0] in touching] + [im for im in found if im[0] not in touching]
    # Claims that could not all be read are unknown, not none: said first in both claims sections.
    why = view.board.claims_unknown
    unknown = [view.once("unknown", lambda: f"- {unknown_claims(why)}")] if why is not None else []
    return [  # in the order of the file
        Section("My claims", [*unknown, *(claim(c) for c in mine)], "gitbus claims"),
        Section(
            "Others' claims (edits there are refused)",
            [*unknown, *(claim(c) for c in others)],
            "gitbus claims",
        ),
        Section(
            "Open questions to me or to all",
            [f"- [{short(m.id)}] {who(m)} asks{' me' * (m.to == me)}: {said(m)}" for m in open_qs],
            "gitbus status",
            _to_me_first(open_qs, me),
            ids=[m.id for m in open_qs],
        ),
        Section(
            "Answers to my questions",
            [f"- {who(m)} on [{short(m.reply_to or '')}]: {said(m)}" for m in answers],
            "gitbus inbox",
        ),
        Section(
            "Open requests",
            [f"- [{short(m.id)}] from {who(m)}{' to me' * (m.to == me)}: {said(m)}" for m in requests],
            "gitbus status",
            _to_me_first(requests, me),
            ids=[m.id for m in requests],
        ),
        Section(
            "Recent discoveries (touching my paths first)",
            [found_line(m) for _, m in found[:MAX_DISCOVERIES]],  # never more are shown
            "gitbus log",
            most=MAX_DISCOVERIES,
            unlisted=max(0, len(found) - MAX_DISCOVERIES),
        ),
    ]


def _to_me_first(msgs: list[Message], me: AgentName) -> list[int]:
    return sorted(range(len(msgs)), key=lambda i: msgs[i].to != me)


def _fit(sections: list[Section], room: int) -> list[int]:
    """How many entries of each section to show in `room` characters.

    Every section gets its most important entry first, then up to 3, then 10, then all that fit;
    within a round, sections go in `PRIORITY` order. The rest of a section is one "N more" line, so
    a long list (others' claims, say) can never push a later section out of the file."""
    sizes = [_sizes(sec) for sec in sections]  # sizes[i][k]: section i's lines with k entries shown
    shown = [0] * len(sections)
    used = sum(size[0] for size in sizes)
    for limit in ROUNDS:
        for i in PRIORITY:
            total, size, k = len(sections[i].entries), sizes[i], shown[i]
            upto = min(total, limit, sections[i].most or total)
            others = used - size[k]
            while k < upto and others + size[k + 1] <= room:
                k += 1
            if upto == total and others + size[total] <= room:  # the last one replaces "1 more"
                k = total
            shown[i], used = k, others + size[k]
    return shown


def _sizes(sec: Section) -> list[int]:
    """The characters (newlines included) of `sec` with 0, 1, … all of its entries shown."""
    if not sec.entries:
        return [_chars(sec.lines(0))]
    n, title = len(sec.entries), _chars(sec.lines(0)[:2])
    total = n + sec.unlisted
    picked = list(accumulate((len(sec.entries[i]) + 1 for i in sec.ranked(n)), initial=0))
    more = _chars(_more(1, sec.more)) - len("1")  # the "N more" line, less N's digits
    return [title + picked[k] + (more + len(str(total - k)) if k < total else 0) for k in range(n + 1)]


def _chars(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)
