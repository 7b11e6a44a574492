"""An agent's status: the one overview of what concerns it now (`Bus.status`, `gitbus status`).

Its claims and the others' live ones, the open questions and requests that concern it, how much is
unread, the last background sync, and what was skipped, refused or found damaged on the way, with
the repair a damaged ref needs. It is drawn from one read of the board (the newest `OPEN_WINDOW`
messages) and an unread count that stops one past `UNREAD_COUNT_MAX`: a status costs the same
however long the bus, at the price of saying "more than" or "at least" instead of an exact count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitbus.board import OpenRequest, concerns, damaged_refs
from gitbus.board import read as read_board
from gitbus.claims import Claim
from gitbus.git import Repository
from gitbus.gitfiles import PACKED
from gitbus.ids import AgentName
from gitbus.inbox import Inbox
from gitbus.inbox_walk import UNREAD_COUNT_MAX
from gitbus.message import Message
from gitbus.reading import OPEN_WINDOW
from gitbus.remote import bus_remote, last_refused, last_status


@dataclass(frozen=True)
class Status:
    me: AgentName
    now: int
    my_claims: list[Claim]
    other_claims: list[Claim]
    open_questions: list[Message]
    requests: list[OpenRequest]
    unread: int
    sync: dict[str, Any] | None = None  # the last background sync: remote, at (ms), error
    # Untrusted input passed over: commits, refs and ledger entries under refs/bus that are not valid
    # gitbus data, met while reading this status (never fatal), and what the last pull refused.
    skipped: int = 0
    refused: tuple[str, ...] = ()
    # Among them, the refs that are there but cannot be read (ref, or `packed-refs` itself -> why,
    # by name), and the shared git dir whose files they are: status names them and their repair.
    damaged: tuple[tuple[str, str], ...] = ()
    claims_unknown: str | None = None  # why the claims could not all be read: those listed may lack some
    common_dir: str = ""
    # My expired claims another agent took over since my last claim step: (path, by whom, when).
    taken_over: tuple[tuple[str, AgentName, int], ...] = ()
    unread_partial: bool = False  # `unread` is a lower bound: its walk stopped in others' traffic

    def damage(self) -> str | None:
        """One line on what was skipped or refused, or None when nothing was."""
        if not self.skipped and not self.refused:
            return None
        parts = []
        if self.skipped:
            parts.append(f"{self.skipped} entries under refs/bus that are not valid gitbus data were skipped")
        if self.refused:
            parts.append(f"the last sync refused {len(self.refused)} ref(s) (gitbus sync names them)")
        return "; ".join(parts) + "."

    def repair(self) -> str | None:
        """One line on mending the `damaged` refs (as `gitfiles.damage_text` says it for one), or None."""
        packed = f"{self.common_dir}/packed-refs"
        kinds = {
            "all" if r == PACKED else "line" if "packed-refs" in why else "file" for r, why in self.damaged
        }
        how = []
        if "file" in kinds:
            how.append(f"write a good commit id into its file, {self.common_dir}/<ref>, or delete that file")
        if "line" in kinds:
            how.append(f"put a good commit id on the ref's line in {packed}, or delete the line")
        if "all" in kinds:
            how.append(f"put {packed} back as git writes it ('<id> <ref>' lines, LF ends), never delete it")
        return (
            f"To repair a damaged ref: {'; '.join(how)}. gitbus writes over none till then." if how else None
        )


def status_of(repo: Repository, agent: AgentName, now: int) -> Status:
    """The status of `agent` at `now` (`Bus.status`)."""
    b = read_board(repo, now, OPEN_WINDOW)
    damaged = damaged_refs(repo)
    unread, partial = Inbox(repo, agent).count_unread(UNREAD_COUNT_MAX + 1)
    now, me = b.now, agent
    return Status(
        me=me,
        now=now,
        my_claims=[c for c in b.claims if c.owner == me],
        other_claims=[c for c in b.claims if c.owner != me and c.live(now)],
        open_questions=[q for q in b.open_questions() if concerns(q, me)],
        sync=last_status(repo) if bus_remote(repo) else None,
        requests=[r for r in b.open_requests() if concerns(r.message, me)],
        # one more than the cap says "more than"; a walk cut short by others' traffic, "at least"
        unread=unread,
        unread_partial=partial,
        skipped=len(repo.skipped),
        damaged=tuple(sorted(damaged.items())),
        claims_unknown=b.claims_unknown,
        common_dir=str(repo.common_dir),
        taken_over=b.taken_from(me),
        refused=tuple(last_refused(repo)),
    )
