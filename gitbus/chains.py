"""Message chains: appending a message to a ref, and reading many refs as one ordered history.

Each agent posts on its own chain (`refs/bus/agents/<name>`); the ledgers (`refs/bus/ledgers/*`,
`gitbus.ledger`) hold claims, releases, takes. Bus order is by (time, id) on every clone: time is a
hybrid logical clock in epoch ms, strictly increasing along a chain and past every tip the poster
could see, so an answer never sorts before its question. "Every tip" is one number, the horizon
mark (`stamp`): each writer raises it before its compare-and-swap and sync before it moves a
ref, so a post costs the same with two agents or two thousand (a stamp more than a day ahead never
counts). Reading from new tips down to remembered ones costs O(new): we walk parents ourselves
rather than libgit2's revwalk, whose `hide` degrades on equal times (§2).
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

from gitbus import state
from gitbus.clock import sane
from gitbus.errors import CorruptMessage, GitbusError, Unreadable
from gitbus.gitfiles import Commit, Oid
from gitbus.ids import AGENTS_PREFIX, BUS_PREFIX, LEDGER_REF, agent_name, is_ledger

if TYPE_CHECKING:
    from gitbus.git import Repository
from gitbus.inert import inert
from gitbus.message import LEDGER_KINDS, Message, decode, encode


class Entry(NamedTuple):
    """A message with where it lives: the commit and the chain ref it was reached from."""

    message: Message
    commit: Oid
    ref: str


def all_tips(repo: Repository) -> dict[str, Oid]:
    """The tip of every chain on the bus: each agent's, each ledger's, and the single ledger of
    old while it has not moved. A ref that is no chain (a name no agent can have, or pointing at
    something other than a commit) is left out and counted in `repo.skipped`."""
    found = repo.refs(BUS_PREFIX)  # one read of the bus's refs
    tips = {r: t for r, t in found.items() if r.startswith(AGENTS_PREFIX) or r == LEDGER_REF or is_ledger(r)}
    # `refs/bus/ledger` stays whatever it holds, as a session's cursor records it (`gitfiles.bus_tips`):
    # once the ledger moved, its tombstone is no chain, and reading passes over it without a count.
    return {
        ref: tip for ref, tip in tips.items() if ref == LEDGER_REF or chain_problem(repo, ref, tip) is None
    }


def is_ledger_chain(ref: str) -> bool:
    """True for a chain of ledger steps: a ledger, or the single ledger of old."""
    return ref == LEDGER_REF or is_ledger(ref)


_COMMITS: set[Oid] = set()  # objects known to be commits (an object's kind never changes)


def chain_problem(repo: Repository, ref: str, tip: Oid) -> str | None:
    """Why `ref` (at `tip`) is no chain gitbus reads, or None when it is one; counted when it is not."""
    why = None
    if not is_ledger_chain(ref):
        try:
            agent_name(ref[len(AGENTS_PREFIX) :])
        except GitbusError:
            why = "not a valid agent name"
    if why is None and tip not in _COMMITS:
        kind = repo.object_kind(tip)
        if kind == "commit":
            if len(_COMMITS) > 100_000:
                _COMMITS.clear()
            _COMMITS.add(tip)
        elif ref == LEDGER_REF and kind == "blob":
            return "the ledger moved"  # its tombstone (`ledger_shards`): nothing wrong, nothing to read
        else:
            why = f"it points at a {kind}, not a commit" if kind else "it points at a missing object"
    if why is not None:
        repo.skipped[ref] = why
    return why


def valid_on(msg: Message, ref: str, ledger: bool) -> str | None:
    """Why `msg` cannot stand on chain `ref`, or None: an agent chain carries only its owner's free
    messages, a ledger (`ledger`: `is_ledger_chain(ref)`) only ledger steps (docs/format.md, Chains)."""
    if ledger:
        return None if msg.kind in LEDGER_KINDS else f"a {msg.kind.value} message on the ledger"
    if msg.kind in LEDGER_KINDS:
        return f"a {msg.kind.value} message on an agent chain"
    if AGENTS_PREFIX + msg.sender != ref:
        return f"a message from {msg.sender} on {ref}"
    return None


def read_message(repo: Repository, commit: Commit, ref: str, parts: bool = False) -> Message | None:
    """The message of `commit` as read on chain `ref`, or None when it is none gitbus takes there:
    such commits are skipped (and counted in `repo.skipped`), their parents still walked. A step's
    commit on another ledger than its first (`part=`) is left out unless `parts`: it is no news."""
    return _read_on(repo, commit, ref, is_ledger_chain(ref), parts=parts)


def _read_on(repo: Repository, commit: Commit, ref: str, ledger: bool, *, parts: bool) -> Message | None:
    """`read_message` with whether `ref` is a ledger already known: a walk asks it once a chain."""
    try:
        msg = decode(commit.message)
    except CorruptMessage as e:
        if not is_sync_merge(commit):
            repo.skipped[commit.oid] = inert(str(e), 200)
        return None
    why = valid_on(msg, ref, ledger)
    if why is not None:
        repo.skipped[commit.oid] = inert(why, 200)
        return None
    return None if not parts and msg.meta and msg.get("part") is not None else msg


def is_sync_merge(commit: Commit) -> bool:
    """A merge gitbus's sync wrote to join two histories of one chain: no message, nothing wrong."""
    return len(commit.parents) > 1 and commit.message.startswith("gitbus: join diverged histories of ")


_TIMES: dict[Oid, int] = {}  # commit -> message time; commits never change, so this never goes stale


def chain_time(repo: Repository, tip: Oid | None) -> int:
    """The time of the message at `tip` (0 for an empty chain).

    A commit that is not a message we can read (a newer format version, a foreign commit) counts
    from its committer time, so a later message still sorts after it."""
    if tip is None:
        return 0
    if tip not in _TIMES:
        if len(_TIMES) > 100_000:
            _TIMES.clear()
        try:
            commit = repo.read_commit(tip)
        except Unreadable:
            if repo.object_kind(tip) is not None:  # an object that is no commit never becomes one
                _TIMES[tip] = 0
            return 0  # no chain at all: nothing to sort after
        try:
            _TIMES[tip] = decode(commit.message).time
        except CorruptMessage:
            fallback = (commit.time + 1) * 1000
            _TIMES[tip] = fallback if sane(fallback) else 0
    return _TIMES[tip]


def time_to_follow(repo: Repository, tip: Oid | None, now_ms: int) -> int:
    """`chain_time(tip)`, or 0 when it is more than a day past `now_ms`. What an agent's next commit
    on its own chain is stamped past: a peer may put a commit dated in the year 2200 on any chain
    (readers skip it, it is no message), and following it would stamp every later post of that
    agent so far ahead that every clone refuses them. The horizon mark still orders the post."""
    t = chain_time(repo, tip)
    return t if t <= now_ms + FUTURE_MS else 0


def remember_time(commit: Oid, time_ms: int) -> None:
    """Record the time of a message commit we just wrote, sparing a read later."""
    _TIMES[commit] = time_ms


FUTURE_MS = 24 * 3_600_000  # a tip stamped further ahead of the wall clock is not followed


def horizon(repo: Repository, tips: Mapping[str, Oid], now_ms: int | None = None) -> int:
    """The latest time on any of `tips`: a new message is stamped past it (hybrid logical clock),
    so anything an agent could have seen before posting sorts before its post on every clone.

    With `now_ms`, a tip stamped more than a day past it is not followed: one chain from a broken
    or hostile clock must not drag every later message towards the end of time (`gitbus sync`
    refuses such messages; a clone that took them in with plain git still posts)."""
    times = (chain_time(repo, tip) for tip in tips.values())
    if now_ms is not None:
        times = (t for t in times if t <= now_ms + FUTURE_MS)
    return max(times, default=0)


_MARKS: dict[str, str] = {}  # common dir -> its horizon mark file (spares pathlib on every post)
# common dir -> a value its mark has reached: the mark never falls, so raising it to this or less is a
# no-op that needs no system call (a post raises it once, at `stamp`, not again before publishing).
_REACHED: dict[str, int] = {}


def _mark_file(repo: Repository) -> str:
    key = str(repo.common_dir)
    if key not in _MARKS:
        _MARKS[key] = os.fspath(state.horizon(repo.common_dir))
    return _MARKS[key]


def _parse_mark(text: bytes) -> int | None:
    return int(text) if text.strip().isdigit() and sane(int(text)) else None


def read_mark(repo: Repository) -> int | None:
    """The horizon mark: the newest message time this clone's writers and syncs have put on the bus,
    or None when no gitbus that keeps it has written here yet (or it cannot be read)."""
    import fcntl

    try:
        fd = os.open(_mark_file(repo), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a writer rewrites it in place: never read half of it
        return _parse_mark(os.pread(fd, 32, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def _update_mark(repo: Repository, now_ms: int, to: Callable[[int], int]) -> int:
    """Set the horizon mark to `to(base)` under an exclusive `flock`; the value `to` gave. `base`
    is the mark, or, when there is none or it is more than a day past `now_ms` (a clock set back, a
    stamp from further ahead than vouching takes), the time of every tip read afresh (`horizon`):
    such a mark is replaced, lower or not. Else the mark is never lowered."""
    import fcntl

    f = _mark_file(repo)
    try:
        try:
            fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(f), exist_ok=True)
            fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.pread(fd, 32, 0)
            stored = _parse_mark(text)
            fresh = stored is None or stored > now_ms + FUTURE_MS
            value = to(horizon(repo, all_tips(repo), now_ms) if stored is None or fresh else stored)
            if sane(value) and (fresh or stored is None or value > stored):
                data = b"%013d\n" % value
                os.pwrite(fd, data, 0)
                if len(text) > len(data):
                    os.ftruncate(fd, len(data))
                stored = value
        finally:
            os.close(fd)
    except OSError as e:
        raise GitbusError(f"Could not write {f}: {state.disk_problem(e) or e.strerror or e}.") from None
    _REACHED[str(repo.common_dir)] = stored or 0  # what the file holds now: it may have been lowered
    return value


def raise_mark(repo: Repository, time_ms: int, now_ms: int | None = None) -> None:
    """Make the horizon mark at least `time_ms` (never lower it), under an exclusive `flock`: two
    writers raising it at once both count. Called before the compare-and-swap that publishes a
    message, so whoever can see the message can also see a mark at least its time. A time more
    than a day past `now_ms` (by default `time_ms` itself: a message this clone writes) does not
    count: vouching refuses such stamps, and the mark would pin every later post to it."""
    now = time_ms if now_ms is None else now_ms
    if not sane(time_ms) or time_ms > now + FUTURE_MS:
        return
    if time_ms <= _REACHED.get(str(repo.common_dir), 0) <= now + FUTURE_MS:
        return  # the mark never falls below what it reached, save a far-ahead one being replaced
    _update_mark(repo, now, lambda base: max(base, time_ms))


def past(repo: Repository, now_ms: int) -> int:
    """`stamp` without raising the mark: for a step that may yet be refused, which writes nothing
    (it raises the mark with `raise_mark` once it is decided, before it is published). Without a
    mark, every tip is read; a mark more than a day ahead is replaced by what they say (it was never
    this step's to write, and left there it would cost every later post a read of every tip)."""
    mark = read_mark(repo)
    if mark is None:
        mark = horizon(repo, all_tips(repo), now_ms)
    elif mark > now_ms + FUTURE_MS:
        mark = _update_mark(repo, now_ms, lambda base: base)
    return max(now_ms, mark + 1)


def stamp(repo: Repository, now_ms: int) -> int:
    """The time of a new message: `now_ms`, or past every tip of the bus when one is later (the
    horizon mark + 1); the mark is raised to it at once, in the same locked look. Without a mark (a
    clone a gitbus without it wrote), or with one more than a day past `now_ms` (this clock was set
    back, or a stamp from far ahead got in), every tip is read once (`horizon`) and the mark
    replaced."""
    return _update_mark(repo, now_ms, lambda base: max(now_ms, base + 1))


def append(repo: Repository, ref: str, make: Callable[[int], Message]) -> Message:
    """Append the message `make(min_time)` to chain `ref` with a compare-and-swap, retrying races.

    `make` gets the least time the message may carry (one past the chain tip) and is called again if
    another writer moved the tip first; it must return a message with the same id each time.
    """
    msg = _append(repo, ref, make, start=False)
    assert msg is not None  # only a start can find nothing to do
    return msg


def start(repo: Repository, ref: str, make: Callable[[int], Message]) -> Message | None:
    """Write the first message of chain `ref`, or nothing if another writer started it first."""
    return _append(repo, ref, make, start=True)


def _append(repo: Repository, ref: str, make: Callable[[int], Message], start: bool) -> Message | None:
    def attempt() -> Message | None:
        tip = repo.ref(ref)
        if start and tip is not None:
            return None
        msg = make(time_to_follow(repo, tip, int(time.time() * 1000)) + 1)
        oid = repo.commit(
            tree=repo.empty_tree,
            parents=[tip] if tip else [],
            message=encode(msg),
            author=msg.sender,
            time_ms=msg.time,
        )
        raise_mark(repo, msg.time)
        repo.update_ref(ref, oid, tip, f"gitbus: {msg.kind.value} {msg.id}")
        remember_time(oid, msg.time)
        return msg

    return repo.retry_cas(ref, attempt, f"appending to {ref}")


def last_message(repo: Repository, ref: str, tip: Oid) -> Message | None:
    """The newest message on chain `ref` at `tip`: the tip's own, read directly (times rise along a
    chain), unless the tip is no message there (a sync merge, a foreign commit): then the walk's."""
    try:
        commit = repo.read_commit(tip)
    except Unreadable as e:
        repo.skipped[ref] = str(e)
        return None
    msg = read_message(repo, commit, ref) if len(commit.parents) <= 1 else None
    return msg if msg is not None else next((e.message for e in history(repo, {ref: tip})), None)


def _key(msg: Message) -> tuple[int, int]:
    """Heap key for newest-first order: larger (time, id) pops first."""
    try:
        return (-msg.time, -int(msg.id, 16))
    except ValueError:
        return (-msg.time, 0)


def history(
    repo: Repository, tips: Mapping[str, Oid], stops: Mapping[str, Oid] | None = None
) -> Iterator[Entry]:
    """Every message reachable from `tips`, newest first by (time, id), each exactly once.

    Walking a chain stops at its entry in `stops` (already seen), so an incremental read costs what
    is new, not the whole history. Commits that are not gitbus messages (merges written by sync,
    foreign commits) are passed through without being yielded.
    """
    stop_set = set((stops or {}).values())
    # A commit is walked once per chain that reaches it: whether it is a message there depends on
    # the chain (bob's chain never carries alice's messages), and one chain's forgery must not hide
    # the genuine message on its owner's chain.
    seen: dict[str, set[Oid]] = {ref: set() for ref in tips}  # each chain's commits walked
    ledgers = {ref: is_ledger_chain(ref) for ref in tips}
    yielded: set[Oid] = set()
    # A message waits in the heap with its commit's parents: popping it walks on from there.
    heap: list[tuple[tuple[int, int], Oid, str, Message, tuple[Oid, ...]]] = []
    read, push_heap = repo.read_commit, heapq.heappush  # looked up once: a walk calls them per commit

    def push(start: Oid, ref: str) -> None:
        walked, ledger = seen[ref], ledgers[ref]
        todo = [start]  # iterative: a chain may carry any number of foreign commits in a row
        while todo:
            oid = todo.pop()
            if oid in walked or oid in stop_set:
                continue
            walked.add(oid)
            try:
                commit = read(oid)
            except Unreadable as e:
                repo.skipped[oid] = str(e)
                continue
            msg = _read_on(repo, commit, ref, ledger, parts=False)
            if msg is None:
                todo.extend(reversed(commit.parents))
                continue
            push_heap(heap, (_key(msg), oid, ref, msg, commit.parents))

    for ref, tip in sorted(tips.items()):
        if chain_problem(repo, ref, tip) is None:
            push(tip, ref)
    while heap:
        _, oid, ref, msg, parents = heapq.heappop(heap)
        for parent in parents:
            push(parent, ref)
        if oid not in yielded:
            yielded.add(oid)
            yield Entry(msg, oid, ref)
