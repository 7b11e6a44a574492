"""The read side of a `Bus`: one agent's view of the bus's history.

The chain tips to read, every message newest first in the bus order every clone shares, `log`'s
filters, finding a message by an id prefix (the first carrier of a reused id wins, on every clone),
which messages git verifies as signed by their senders, replies (back to the message replied to,
however old), and the agent's inbox. `Bus` takes these verbs on (a mixin); the overviews built on
them (`board`, `status`) stay with `Bus`.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from itertools import islice
from operator import attrgetter
from typing import NamedTuple

from gitbus import chains, searchindex, settings, vouch
from gitbus import paths as P
from gitbus.clock import Clock
from gitbus.errors import GitbusError, NotFound
from gitbus.git import Oid, Repository
from gitbus.gitobjects import commits_read_once
from gitbus.ids import AgentName, MessageId, agent_name, agent_ref, message_id_prefix
from gitbus.inbox import Inbox
from gitbus.message import Message, carrier_order, decode, kind_named

OPEN_WINDOW = 2000  # how many recent messages `status` reads to find open questions
REPLIES_SHOWN = 100  # the replies to one message `show` lists; it counts the newer ones it leaves out


class Replies(NamedTuple):
    """The replies to one message: the oldest ones, oldest first, and how many newer ones were left out."""

    messages: list[Message]
    left_out: int

    @property
    def total(self) -> int:
        return len(self.messages) + self.left_out


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector stopped while a list of messages is built: messages hold no cycles,
    and with 100,000 of them alive its passes took a tenth of reading a whole history (issue 16)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Reading:
    """What a `Bus` reads (a mixin: `Bus` supplies the repository, the agent, the clock, and `paths`)."""

    repo: Repository
    agent: AgentName
    clock: Clock

    def paths(self, raw: Iterable[str], literal: bool = False) -> tuple[str, ...]:
        raise NotImplementedError

    def tips(self, sender: str | None = None) -> dict[str, Oid]:
        """The chain tips to read: every agent and the ledgers, or one agent and the ledgers."""
        if sender is None:
            return chains.all_tips(self.repo)
        ref = agent_ref(agent_name(sender))
        tip = self.repo.ref(ref)
        tips = {r: t for r, t in chains.all_tips(self.repo).items() if chains.is_ledger_chain(r)}
        if tip:
            tips[ref] = tip
        return tips

    def history(self, sender: str | None = None) -> Iterator[Message]:
        """Every message, newest first, in the bus order shared by all clones."""
        entries = chains.history(self.repo, self.tips(sender))
        if sender is None:
            yield from map(attrgetter("message"), entries)  # no layer of Python per message
        else:
            yield from (e.message for e in entries if e.message.sender == sender)

    def log(
        self,
        n: int | None = 20,
        *,
        kinds: Iterable[str] = (),
        sender: str | None = None,
        path: str | None = None,
        since: int | None = None,
        grep: str | None = None,
    ) -> list[Message]:
        """The newest `n` messages matching every filter given, newest first."""
        want = {kind_named(k) for k in kinds} if kinds else None
        norm = self.paths([path])[0] if path else None
        needle = grep.casefold() if grep is not None else None

        def matches(m: Message) -> bool:
            return (
                (want is None or m.kind in want)
                and (norm is None or any(P.overlaps(norm, p, self.repo.ignorecase) for p in m.paths))
                and (needle is None or needle in m.text.casefold() or needle in m.summary().casefold())
            )

        def until_since(ms: Iterator[Message]) -> Iterator[Message]:
            for m in ms:
                if since is not None and m.time < since:
                    return
                yield m

        if grep is not None:  # the search index finds candidates, newest first; the exact filter decides
            from gitbus.searchindex import matching

            source: Iterator[Message] = matching(self.repo, grep)
        else:
            source = self.history(sender)
        if grep is None and since is None and want is None and norm is None:
            picked = source  # the walk as it comes: each layer costs on every message of a history
        else:
            picked = (m for m in until_since(source) if matches(m) and (sender is None or m.sender == sender))
        whole = commits_read_once() if n is None else nullcontext()  # the whole history: each commit once
        with _collector_paused(), whole:
            return list(picked if n is None else islice(picked, n))

    def find(self, prefix: str) -> Message:
        """The message whose id is `prefix` or starts with it; refuses an ambiguous prefix.

        Ids are chosen by their writers, so a peer can post another message's id. Every clone then
        takes the same one, the first carrier: the earliest in (time, chain, commit) order. Later
        carriers of that id are skipped and counted in `repo.skipped` (docs/format.md, Ids)."""
        want = message_id_prefix(prefix)
        firsts: dict[MessageId, tuple[tuple[int, str, str], Message]] = {}
        for commit in self._carriers(want):
            try:
                msg = decode(self.repo.read_commit(commit).message)
            except GitbusError:
                continue
            if not msg.id.startswith(want):
                continue
            key = carrier_order(msg, commit)
            first = firsts.get(msg.id)
            if first is None or key < first[0]:
                if first is not None:
                    self._skip_reused(first[0][2], msg.id)
                firsts[msg.id] = (key, msg)
            else:
                self._skip_reused(commit, msg.id)
        if not firsts:
            raise NotFound(f"No message has id {want}; see `gitbus log`.")
        if len(firsts) > 1:
            a, b = sorted(firsts)[:2]
            raise GitbusError(f"The id {want} is ambiguous ({a}, {b}, …); give more digits.")
        return next(iter(firsts.values()))[1]

    def _carriers(self, want: str) -> list[Oid]:
        """Every commit carrying a message whose id starts with `want` (`searchindex.carriers`)."""
        return [c for _, _, c in searchindex.carriers(self.repo, want)]

    def verified(self, msgs: Iterable[Message]) -> dict[str, bool] | None:
        """For each of `msgs`: True when git verifies its commit's signature as good and the signer
        is its sender (`vouch.signed_by`, docs/format.md). None where this clone neither signs nor
        requires signatures: there, nobody is verified, and listings do not ask git."""
        if not (self.repo.signing or settings.load(self.repo.common_dir)["require_signed"]):
            return None
        wanted = {m.id: m for m in msgs}
        carriers = searchindex.commits_of(self.repo, set(wanted))
        verdicts = self.repo.verdicts([c for cs in carriers.values() for c in cs])
        result: dict[str, bool] = {}
        for mid, m in wanted.items():
            result[mid] = False
            for commit in carriers.get(mid, []):
                verdict, signer = verdicts.get(commit, ("N", ""))
                if verdict == "G" and vouch.signed_by(signer, m.sender) and self._carries(commit, m):
                    result[mid] = True
        return result

    def _carries(self, commit: Oid, m: Message) -> bool:
        try:
            return decode(self.repo.read_commit(commit).message) == m
        except GitbusError:
            return False

    def _skip_reused(self, commit: str, mid: str) -> None:
        self.repo.skipped[f"{commit} id"] = f"a message that reuses the id {mid} of an earlier one"

    def replies(self, message: Message, most: int = REPLIES_SHOWN) -> Replies:
        """The replies to `message`, oldest first, at most `most` of them, and how many newer ones
        were left out. gitbus stamps a reply past every tip its poster could see (docs/format.md),
        so past what it replies to: the walk goes back to `message`'s time, however far, and no
        further. Only `most` replies are held, whatever a peer posts."""
        kept: deque[Message] = deque(maxlen=most)  # walked newest first: the oldest `most` stay
        found = 0
        with ExitStack() as once:
            for walked, m in enumerate(self.history()):
                if m.time < message.time:
                    break
                if walked == OPEN_WINDOW:  # a long walk: each commit is read once, none kept cached
                    once.enter_context(commits_read_once())
                if m.reply_to == message.id:
                    kept.append(m)
                    found += 1
        return Replies(list(reversed(kept)), found - len(kept))

    def unread(
        self, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[Message], dict[str, Oid]]:
        """Messages for this agent not yet seen by `cursor` (oldest first), and the tips read."""
        return Inbox(self.repo, self.agent).unread(cursor, limit)

    def inbox(self, mark_read: bool = False) -> list[Message]:
        """Everything unread, oldest first; with `mark_read`, the cursor moves past it."""
        return Inbox(self.repo, self.agent).page(mark_read)[0]

    def read_new(self, budget: int = 4000) -> tuple[list[Message], int]:
        """What this agent has not seen, as much as fits in `budget`; marks seen what it returns."""
        return Inbox(self.repo, self.agent).read_new(budget)
