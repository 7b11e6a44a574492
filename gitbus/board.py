"""The board: one read of the bus that every overview is drawn from.

`gitbus status` (through `Bus.status`), the context file and the TUI each show the same few facts:
which questions are still open, what state each request is in, whose expired claims were taken
over. They used to work these out each on their own, with small differences; here each is worked
out once, from one `Board`: the newest `window` messages, every claim, and the state of every
request among them, read together (one ledger read). Each face then filters for its reader: the
status lists what concerns its agent, the context file what is addressed to it, the TUI per agent.

A board is a plain immutable value, built off the UI thread and handed around freely. "Did the bus
change?" is cheaper than a board and needs no libgit2: `gitfiles.bus_tips` and `gitfiles.bus_stamp`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice

from gitbus import ledger_state
from gitbus.chains import all_tips, history
from gitbus.claims import Claim, all_claims
from gitbus.delegation import RequestState, state_of
from gitbus.git import Repository
from gitbus.gitfiles import Oid, read_ref
from gitbus.ids import BUS_PREFIX, EVERYONE, AgentName
from gitbus.inert import inert
from gitbus.message import Kind, Message


@dataclass(frozen=True)
class OpenRequest:
    message: Message
    state: RequestState | None


def concerns(m: Message, me: AgentName) -> bool:
    """Sent by `me`, to `me`, or to everyone: what `status` lists as open for `me`."""
    return m.sender == me or m.to in (EVERYONE, me)


@dataclass(frozen=True)
class Board:
    """The recent bus (newest first), every claim (expired ones too), and the request states."""

    now: int
    recent: tuple[Message, ...]
    claims: tuple[Claim, ...]
    requests: Mapping[str, RequestState | None] = field(default_factory=dict)  # request id -> state
    skipped: int = 0  # entries under refs/bus that are no valid gitbus data, met while reading
    refused: tuple[str, ...] = ()  # refs the last sync would not take in (filled in by `Bus`)
    claims_unknown: str | None = None  # why the claims could not all be read (a damaged ledger ref)

    @cached_property
    def answers(self) -> Counter[str]:
        """How many answers each question in the window has (an answer sorts after its question)."""
        return Counter(m.reply_to for m in self.recent if m.kind is Kind.ANSWER and m.reply_to)

    def open_questions(self, to: str | None = None) -> list[Message]:
        """Unanswered questions in the window, newest first (only those to `to`, if given)."""
        done = self.answers
        return [
            m
            for m in self.recent
            if m.kind is Kind.QUESTION and m.id not in done and (to is None or m.to == to)
        ]

    def request_state(self, request_id: str) -> RequestState | None:
        """Who took the request and whether it is done; None when nobody has."""
        return self.requests.get(request_id)

    def untaken(self) -> int:
        """How many of the requests read nobody has taken yet."""
        return sum(st is None for st in self.requests.values())

    def open_requests(self) -> list[OpenRequest]:
        """Requests in the window not done yet (taken or not), newest first."""
        out = [OpenRequest(m, self.requests.get(m.id)) for m in self.recent if m.kind is Kind.REQUEST]
        return [r for r in out if r.state is None or r.state.done_at is None]

    def live_claims(self) -> list[Claim]:
        return [c for c in self.claims if c.live(self.now)]

    def took_over(self, claim_id: str) -> list[str]:
        """`owner path` of every expired claim the claim message `claim_id` took over."""
        for m in self.recent:
            if m.id == claim_id:
                return [v for k, v in m.meta if k == "took-over"]
        return []

    def taken_from(self, me: AgentName) -> tuple[tuple[str, AgentName, int], ...]:
        """`me`'s expired claims another agent took over since `me`'s latest claim step: (path, by
        whom, when), newest first."""
        taken: list[tuple[str, AgentName, int]] = []
        for m in self.recent:  # newest first, until my own latest claim step
            if m.sender == me and m.kind in (Kind.CLAIM, Kind.RENEW, Kind.RELEASE):
                break
            if m.kind is Kind.CLAIM:
                taken += [
                    (v.split(" ", 1)[1], m.sender, m.time)
                    for k, v in m.meta
                    if k == "took-over" and v.split(" ", 1)[0] == me and " " in v
                ]
        return tuple(taken)


def read(
    repo: Repository,
    now: int,
    window: int,
    tips: Mapping[str, Oid] | None = None,
    also: Iterable[Message] = (),
) -> Board:
    """The newest `window` messages up to `tips` (default: the bus as it is now), the claims as they
    are now, and the state of every request among those messages and `also` (say, a filtered feed)."""
    upto = dict(tips) if tips is not None else all_tips(repo)
    recent = tuple(e.message for e in islice(history(repo, upto), window))
    state = ledger_state.current(repo)
    requests: dict[str, RequestState | None] = {
        m.id: state_of(state, m.id) for m in (*recent, *also) if m.kind is Kind.REQUEST
    }
    return Board(
        now, recent, tuple(all_claims(state)), requests, len(repo.skipped), claims_unknown=state.tips.broken
    )


def unknown_claims(why: str) -> str:
    """The one sentence every face says where it lists claims it could not all read: some may be
    missing, so "none" would be no answer, and the guard refuses every edit meanwhile."""
    return (
        f"The claims cannot be read ({inert(why, 300)}): some may be missing here, and edits are "
        "refused until it is repaired (gitbus status names the ref)."
    )


def damaged_refs(repo: Repository) -> dict[str, str]:
    """Every ref under refs/bus that is there but cannot be read as an object id, and `packed-refs`
    when git cannot read it at all (-> why, as `gitfiles.read_refs` judges): what `gitbus status`
    names. Each is counted in `repo.skipped` too. A folder in a ref's place shows only to a reader
    that asks for that ref by name (the tombstone, a shard), so the refs the readers passed over
    are judged again here, one by one."""
    damaged: dict[str, str] = {}
    repo.refs(BUS_PREFIX, damaged)
    for name in list(repo.skipped):
        if name.startswith(BUS_PREFIX) and name not in damaged:
            read_ref(repo.common_dir, name, damaged)
    return damaged
