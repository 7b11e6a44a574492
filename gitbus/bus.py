"""The bus: the typed library API that every face (CLI, hooks, TUI, MCP) calls.

A `Bus` is one agent's handle on one repository. Free messages go on the agent's own chain;
anything two agents could race for goes through the ledger. The clock and the identity are injected
so orchestrators and tests can drive several agents in one process. What a `Bus` reads (history,
log, find, the inbox) is `gitbus.reading.Reading`'s, which `Bus` takes on; `Bus` itself joins,
posts, takes ledger steps (`gitbus.steps`) and draws the overviews.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitbus import agents, chains, ledger, roster, settings, steps, sync
from gitbus import paths as P
from gitbus.board import Board, OpenRequest, concerns, damaged_refs
from gitbus.board import read as read_board
from gitbus.claims import DEFAULT_TTL_MS, Claim, all_claims
from gitbus.clock import Clock, SystemClock
from gitbus.errors import GitbusError, NotFound
from gitbus.git import Oid, Repository
from gitbus.gitfiles import PACKED
from gitbus.ids import EVERYONE, AgentName, MessageId, agent_name, agent_ref, new_message_id
from gitbus.inbox import Inbox
from gitbus.inbox_walk import UNREAD_COUNT_MAX
from gitbus.inert import inert
from gitbus.message import MAX_PATHS, Kind, Message, clean_text, decode
from gitbus.reading import OPEN_WINDOW, REPLIES_SHOWN, Reading, Replies
from gitbus.remote import bus_remote, last_refused, last_status, remote_carrying_bus, require_remote
from gitbus.roster import AgentInfo

__all__ = ["OPEN_WINDOW", "REPLIES_SHOWN", "AgentInfo", "Bus", "OpenRequest", "Replies", "Status"]


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


class Bus(Reading):
    """One agent's handle on the bus of one repository (its read side: `gitbus.reading.Reading`)."""

    def __init__(
        self,
        repo: Repository,
        agent: AgentName,
        clock: Clock | None = None,
        cwd: Path | None = None,
        offline: bool = False,
        named: bool = True,
    ) -> None:
        self.repo = repo
        self.offline = offline
        self.agent = agent
        self.named = named  # the agent's name was asked for, not derived from the folder's name
        self.clock = clock or SystemClock()
        self.cwd = cwd or repo.root
        self.notices: list[str] = []  # one-line news of the last ledger step (e.g. a refused tip replaced)
        self._remote_asked = False  # whether `_adopt_remote` looked at origin already
        self._has_chain: AgentName | None = None  # an agent whose chain this Bus saw (never deleted)
        # The worktree root and working directory resolved through symlinks once, for `paths`.
        self._real_dirs: tuple[tuple[Path, Path], tuple[str, str]] | None = None

    @classmethod
    def open(
        cls,
        path: str | Path = ".",
        agent: str | None = None,
        clock: Clock | None = None,
        offline: bool = False,
    ) -> Bus:
        """Open the bus of the repository at `path`, as `agent` (else resolved from the worktree).

        With a bus remote set, ledger steps (claim, release, renew, take, done) are decided by the
        remote; `offline` decides them locally, to be reconciled at the next sync."""
        repo = Repository.open(path)
        named = agents.named(repo, agent)
        return cls(repo, agents.resolve(repo, agent), clock, Path(path).resolve(), offline, named)

    # -- identity ---------------------------------------------------------------------------------

    def init(self, remote: str | None = None) -> Message | None:
        """Prepare the repository and register this worktree's agent; safe to repeat.

        The main checkout is where people run git, not where an agent works: it joins only when its
        agent's name was asked for (`-a`, `GITBUS_AGENT`, `join --name`), so a plain `gitbus init`
        there does not put it in every list."""
        if remote is not None:
            self.set_remote(remote)
        else:
            self._adopt_remote()
        if not self.named and self.is_main_checkout:
            return None
        return self._ensure_joined()

    def _adopt_remote(self) -> None:
        """With no bus remote set, make `origin` the bus remote and pull its bus when it carries one
        (asked by init and join, and by an agent's first post: `_ensure_joined`; never by a read)."""
        if self.offline or self._remote_asked or bus_remote(self.repo) is not None:
            return
        self._remote_asked = True  # one `git ls-remote` per Bus at most
        found = remote_carrying_bus(self.repo)
        if found is not None:
            self.set_remote(found)
            sync.sync(self.repo, found, send=False)

    @property
    def is_main_checkout(self) -> bool:
        return self.repo.git_dir == self.repo.common_dir

    def on_bus(self) -> bool:
        """True once this worktree's agent has a chain (it joined, or posted)."""
        return self.repo.ref(agent_ref(self.agent)) is not None

    def set_remote(self, remote: str) -> str:
        """Share the bus through git remote `remote` from now on; refused, with nothing stored, if
        git has no such remote (every later claim would fail on it)."""
        name = require_remote(self.repo, settings.parse("remote", remote))
        settings.save(self.repo.common_dir, "remote", name)
        return name

    def join(self, name: str) -> Message | None:
        """Name this worktree's agent `name` for good, and announce it if new."""
        wanted = agent_name(name)
        elsewhere = self._joined_from(wanted)
        if elsewhere is not None and elsewhere != self.repo.root and elsewhere.exists():
            raise GitbusError(
                f"Agent {wanted} already joined from {elsewhere}; pick another name for this worktree."
            )
        self._adopt_remote()
        old, self.agent = self.agent, wanted
        agents.remember(self.repo, self.agent)
        joined = self._ensure_joined() if self._moved_to(wanted) is None else self._rejoin()
        if old != wanted and self._joined_from(old) == self.repo.root:
            self._mark_moved(old, wanted)
        return joined

    def _rejoin(self) -> Message:
        """Take back a name whose chain ends by saying it moved: a fresh join, from this worktree."""
        return chains.append(self.repo, agent_ref(self.agent), self._joining(self.agent))

    def _mark_moved(self, old: AgentName, new: AgentName) -> None:
        """This worktree's agent was `old` (say, the name `gitbus init` derived) and is `new` now: say
        so on `old`'s chain, so a message to `old` is refused rather than left where nobody reads."""
        chains.append(self.repo, agent_ref(old), self._joining(old, moved_to=new))

    def _joining(self, name: AgentName, moved_to: AgentName | None = None) -> Callable[[int], Message]:
        """The `make` of a join message on `name`'s chain (`chains.start`/`append`): it joined from
        this worktree, or, with `moved_to`, it goes by that name now. Stamped past every tip."""
        where = self.repo.root
        try:
            str(where).encode("utf-8")  # a name that is not UTF-8 cannot be written in a message
        except UnicodeEncodeError:
            raise GitbusError(
                f"This worktree's path {inert(str(where), 200)} is not UTF-8 text, and an agent's join "
                "records where it joined from; move the worktree to such a path (git worktree move)."
            ) from None
        mid, past = new_message_id(), chains.stamp(self.repo, self.clock.now_ms())
        if moved_to is None:
            text, meta = f"{name} joined from {where.name}", (("worktree", str(where)),)
        else:
            text, meta = f"{name} is now {moved_to} (worktree {where.name})", (("moved-to", moved_to),)

        def make(min_time: int) -> Message:
            t = max(self.clock.now_ms(), min_time, past)
            return Message(mid, Kind.JOIN, name, EVERYONE, text, t, meta=meta)

        return make

    def _moved_to(self, name: AgentName) -> str | None:
        """The name `name`'s worktree took instead, if its chain ends by saying so ("" when its
        chain ends with a retirement)."""
        tip = self.repo.ref(agent_ref(name))
        if tip is None:
            return None
        try:
            last = decode(self.repo.read_commit(tip).message)
        except GitbusError:
            return None
        if last.kind is not Kind.JOIN:
            return None
        return "" if roster.is_retirement(last) else last.get("moved-to")

    def _joined_from(self, name: AgentName) -> Path | None:
        """The worktree `name` last joined from, if it is on the bus (a walk of its chain)."""
        tip = self.repo.ref(agent_ref(name))
        if tip is None:
            return None
        for entry in chains.history(self.repo, {agent_ref(name): Oid(tip)}):
            where = entry.message.get("worktree")
            if entry.message.kind is Kind.JOIN and where:
                return Path(where)
        return None

    def _ensure_joined(self, adopt_only: bool = False) -> Message | None:
        """Start this agent's chain if it has none. In a clone with no bus remote set, an agent's
        first post first adopts `origin` when it carries a bus (issue 14): else a fresh clone would
        claim locally what another clone holds. `adopt_only`: just that, before a ledger step is
        decided; the chain is started after it, so a refused step writes nothing."""
        ref = agent_ref(self.agent)
        if self._has_chain == self.agent or self.repo.ref(ref) is not None:
            self._has_chain = self.agent  # a chain is never deleted: no need to look again
            return None
        self._adopt_remote()
        return None if adopt_only else chains.start(self.repo, ref, self._joining(self.agent))

    def agents(self, retired: bool = False, board: Board | None = None) -> list[AgentInfo]:
        """Every agent on the bus with its newest message; those retired only with `retired`. Their
        claims are counted from `board` when given (which may say they are unknown), else read here
        (refused when they cannot be read)."""
        held = self.claims() if board is None else [c for c in board.claims if c.live(board.now)]
        return roster.listing(self.repo, held, retired)

    def retire(self, name: str) -> Message | None:
        """Retire agent `name`, which left (`gitbus.roster.retire`): it drops out of `agents` and
        takes no more messages; all it said stays on the bus. None when it was retired already.
        Refused where this clone signs or requires signatures (`roster.retire`)."""
        signs = self.repo.signing or bool(settings.load(self.repo.common_dir)["require_signed"])
        return roster.retire(self.repo, name, self.agent, self._live_claims, self.clock.now_ms, signs)

    def _live_claims(self) -> list[Claim]:
        """The live claims as whoever decides the ledger has them: the bus remote's, fetched (as a
        ledger step fetches them), when one is set and this bus is not offline; else this clone's."""
        arbiter = self._arbiter()
        arbiter.tips()
        self.notices = [inert(n, 400) for n in arbiter.notices]
        return self.claims()

    # -- posting ----------------------------------------------------------------------------------

    def _post(
        self,
        kind: Kind,
        text: str,
        *,
        to: AgentName = EVERYONE,
        paths: Iterable[str] = (),
        reply_to: MessageId | None = None,
        after: int = 0,
    ) -> Message:
        text, norm = clean_text(text, kind), tuple(paths)
        if len(norm) > MAX_PATHS:
            raise GitbusError(f"A message names at most {MAX_PATHS} paths; name their folders instead.")
        if to != EVERYONE:
            self._require_agent(to)
        self._ensure_joined()
        mid = new_message_id()
        past = chains.stamp(self.repo, self.clock.now_ms())  # the clock read once: the mark holds it

        def make(min_time: int) -> Message:
            t = max(min_time, after, past)
            return Message(mid, kind, self.agent, to, text, t, norm, reply_to)

        return chains.append(self.repo, agent_ref(self.agent), make)

    def _require_agent(self, name: str) -> AgentName:
        who = agent_name(name)
        if self.repo.ref(agent_ref(who)) is None:
            known = ", ".join(sorted(agents.known(self.repo))) or "none yet"
            raise NotFound(f"No agent named '{who}' is on the bus (known: {known}); nothing was sent.")
        moved = self._moved_to(who)
        if moved == "":
            raise NotFound(f"Agent {who} was retired; nothing was sent.")
        if moved:
            raise NotFound(f"Agent {who} is now {moved} (same worktree); nothing was sent. Send to {moved}.")
        return who

    def paths(self, raw: Iterable[str], literal: bool = False, most: int | None = None) -> tuple[str, ...]:
        """Normalise user-typed paths against this bus's worktree and working directory, each once;
        `literal` takes `*`, `?` and `[` as part of a file's name, never as a pattern
        (`paths.normalize`). With `most`, more distinct paths than that are refused at the first
        one too many, before the rest are read (normalising 100,000 took seconds)."""
        out: dict[str, None] = {}
        read: set[str] = set()  # a string given again is the same path: not normalised again
        if self._real_dirs is None or self._real_dirs[0] != (self.repo.root, self.cwd):
            self._real_dirs = ((self.repo.root, self.cwd), P.real_dirs(self.repo.root, self.cwd))
        root, cwd = self._real_dirs[1]
        for r in raw:
            if r in read:
                continue
            read.add(r)
            out[P.normalize(r, root=root, cwd=cwd, literal=literal, resolved=True)] = None
            if most is not None and len(out) > most:
                raise GitbusError(f"A message names at most {most} paths; name their folders instead.")
        return tuple(out)

    def _named(self, raw: Iterable[str], literal: bool = False) -> tuple[str, ...]:
        """`paths` for a message to name: at most `MAX_PATHS` (readers refuse a message with more)."""
        return self.paths(raw, literal, most=MAX_PATHS)

    def _recipient(self, to: str | None) -> AgentName:
        return EVERYONE if to in (None, "", "*", "all", "everyone") else self._require_agent(str(to))

    def discover(self, text: str, paths: Iterable[str] = ()) -> Message:
        return self._post(Kind.DISCOVERY, text, paths=self._named(paths))

    def ask(self, text: str, to: str | None = None, paths: Iterable[str] = ()) -> Message:
        return self._post(Kind.QUESTION, text, to=self._recipient(to), paths=self._named(paths))

    def request(self, text: str, to: str | None = None, paths: Iterable[str] = ()) -> Message:
        return self._post(Kind.REQUEST, text, to=self._recipient(to), paths=self._named(paths))

    def answer(self, question_id: str, text: str) -> Message:
        q = self.find(question_id)
        if q.kind is not Kind.QUESTION:
            raise GitbusError(f"{q.id} is a {q.kind.value}, not a question.")
        to = EVERYONE if q.to == EVERYONE or q.sender == self.agent else q.sender
        return self._post(Kind.ANSWER, text, to=to, paths=q.paths, reply_to=q.id, after=q.time + 1)

    def take(self, request_id: str) -> Message:
        req = self.find(request_id)
        return self._ledger(steps.Take(self.agent, req, after=req.time + 1))

    def done(self, request_id: str, text: str = "") -> Message:
        req = self.find(request_id)
        return self._ledger(steps.Done(self.agent, req, clean_text(text, Kind.DONE)))

    # -- claims -----------------------------------------------------------------------------------

    def claim(
        self, raw_paths: Iterable[str], ttl_ms: int | None = None, reason: str = "", literal: bool = False
    ) -> Message:
        """Claim every path or none; raises `ClaimConflict` naming the holder. `literal`: the paths
        are files a tool names (`lib/n[1].py`, `app/[slug]/page.tsx`), never patterns."""
        wanted = list(self._named(raw_paths, literal))
        if not wanted:
            raise GitbusError("Name at least one path to claim.")
        reason = clean_text(reason, Kind.CLAIM)
        return self._ledger(steps.Claim(self.agent, tuple(wanted), ttl_ms or DEFAULT_TTL_MS, reason))

    def release(
        self,
        raw_paths: Iterable[str] = (),
        *,
        everything: bool = False,
        force: bool = False,
        reason: str = "",
    ) -> Message | None:
        """Release claims; None when `everything` found nothing to release. A path is taken as it
        is written: it names a claim, which is never a pattern, and its file may be gone."""
        wanted = list(self._named(raw_paths, literal=True))
        if not wanted and not everything:
            raise GitbusError("Name the paths to release, or use --all.")
        if wanted and everything:
            raise GitbusError("Name paths or use --all, not both.")
        reason = clean_text(reason, Kind.RELEASE)
        return self._ledger_maybe(steps.Release(self.agent, tuple(wanted), everything, force, reason))

    def renew(self, raw_paths: Iterable[str] = (), ttl_ms: int | None = None) -> Message | None:
        """Extend this agent's leases; None when it holds nothing (paths taken as in `release`)."""
        return self._ledger_maybe(steps.Renew(self.agent, self._named(raw_paths, literal=True), ttl_ms))

    def claims(self, include_expired: bool = False) -> list[Claim]:
        """The claims on the ledgers; a `GitbusError` when a ledger cannot be read (a damaged
        ref), whose claims are then unknown, not none."""
        now = self.clock.now_ms()
        state = ledger.current(self.repo)
        if state.tips.broken is not None:
            raise GitbusError(f"The claims cannot be read: {inert(state.tips.broken, 300)}.")
        return [c for c in all_claims(state) if include_expired or c.live(now)]

    def _ledger_maybe(self, step: steps.Step) -> Message | None:
        """Take `step` on the ledger: decided on its tip, again after each lost race. Its time is
        past every tip this agent could see; its leases go by this agent's clock."""
        self._ensure_joined(adopt_only=True)  # the bus remote, if any, decides this step
        mid = new_message_id()
        past = chains.past(self.repo, self.clock.now_ms())  # a refused step writes nothing, not even this

        def decide(state: ledger.State, min_time: int) -> ledger.Change | None:
            broken = state.tips.broken
            if broken is not None and broken in self.repo.skipped.values():  # a damaged ledger ref:
                # its claims are unknown, not none ("you hold none" would be no answer), and the
                # sentence already says how to repair it
                raise GitbusError(f"The claims cannot be read: {inert(broken, 300)}.")
            now = self.clock.now_ms()
            at = max(now, min_time, past)
            change = step.decide(state, at, mid, lease_now=now)
            if change is not None:  # its time, which may pass `at` (a take: after its request)
                chains.raise_mark(self.repo, change.message.time, now)  # before it is published
            return change

        arbiter = self._arbiter()
        msg = ledger.transact(self.repo, decide, arbiter, step.ledgers())
        self.notices = [inert(n, 400) for n in arbiter.notices]
        try:
            self._ensure_joined()  # after: a refused step writes nothing, not even a join
        except GitbusError as e:  # the step is taken: say so, and why the join is missing
            self.notices.append(
                inert(f"The step was taken, but {self.agent}'s chain could not be started: {e}", 400)
            )
        return msg

    def _arbiter(self) -> ledger.Arbiter:
        """The remote decides ledger steps when a bus remote is set, unless this bus is offline."""
        remote = None if self.offline else bus_remote(self.repo)
        return (
            sync.RemoteArbiter(self.repo, require_remote(self.repo, remote))
            if remote
            else ledger.LocalArbiter(self.repo)
        )

    def _ledger(self, step: steps.Step) -> Message:
        msg = self._ledger_maybe(step)
        assert msg is not None
        return msg

    # -- overviews (the rest of the read side is `Reading`'s) ---------------------------------------

    def board(self, window: int = OPEN_WINDOW, also: Iterable[Message] = ()) -> Board:
        """The read model every overview is drawn from (`gitbus.board`): the newest `window`
        messages, the claims, the request states, and what the last sync refused."""
        b = read_board(self.repo, self.clock.now_ms(), window, also=also)
        return replace(b, skipped=len(self.repo.skipped), refused=tuple(last_refused(self.repo)))

    def status(self) -> Status:
        b = read_board(self.repo, self.clock.now_ms(), OPEN_WINDOW)
        damaged = damaged_refs(self.repo)
        unread, partial = Inbox(self.repo, self.agent).count_unread(UNREAD_COUNT_MAX + 1)
        now, me = b.now, self.agent
        return Status(
            me=me,
            now=now,
            my_claims=[c for c in b.claims if c.owner == me],
            other_claims=[c for c in b.claims if c.owner != me and c.live(now)],
            open_questions=[q for q in b.open_questions() if concerns(q, me)],
            sync=last_status(self.repo) if bus_remote(self.repo) else None,
            requests=[r for r in b.open_requests() if concerns(r.message, me)],
            # one more than the cap says "more than"; a walk cut short by others' traffic, "at least"
            unread=unread,
            unread_partial=partial,
            skipped=len(self.repo.skipped),
            damaged=tuple(sorted(damaged.items())),
            claims_unknown=b.claims_unknown,
            common_dir=str(self.repo.common_dir),
            taken_over=b.taken_from(me),
            refused=tuple(last_refused(self.repo)),
        )
