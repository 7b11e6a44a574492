"""Message chains: appending a message to a ref, and reading many refs as one ordered history.

Each agent posts on its own chain (`refs/bus/agents/<name>`); the ledger (`refs/bus/ledger`) holds
claims, releases, takes. Bus order is by (time, id) on every clone: time is a hybrid logical clock in
epoch ms, strictly increasing along a chain and past every tip the poster could see, so an answer
never sorts before its question. Reading from new tips down to remembered ones costs O(new): we walk
parents ourselves rather than libgit2's revwalk, whose `hide` degrades on equal times (§2).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

from gitbus.errors import Contended, CorruptMessage
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import AGENTS_PREFIX, LEDGER_REF

if TYPE_CHECKING:
    from gitbus.git import Repository
from gitbus.message import Message, decode, encode

_MAX_RACES = 10_000


class Entry(NamedTuple):
    """A message with where it lives: the commit and the chain ref it was reached from."""

    message: Message
    commit: Oid
    ref: str


def all_tips(repo: Repository) -> dict[str, Oid]:
    """The tip of every chain on the bus: each agent's and the ledger."""
    tips = repo.refs(AGENTS_PREFIX)
    led = repo.ref(LEDGER_REF)
    if led:
        tips[LEDGER_REF] = led
    return tips


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
        commit = repo.read_commit(tip)
        try:
            _TIMES[tip] = decode(commit.message).time
        except CorruptMessage:
            _TIMES[tip] = (commit.time + 1) * 1000
    return _TIMES[tip]


def remember_time(commit: Oid, time_ms: int) -> None:
    """Record the time of a message commit we just wrote, sparing a read later."""
    _TIMES[commit] = time_ms


def horizon(repo: Repository, tips: Mapping[str, Oid]) -> int:
    """The latest time on any of `tips`: a new message is stamped past it (hybrid logical clock),
    so anything an agent could have seen before posting sorts before its post on every clone."""
    return max((chain_time(repo, tip) for tip in tips.values()), default=0)


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
    for _ in range(_MAX_RACES):
        tip = repo.ref(ref)
        if start and tip is not None:
            return None
        msg = make(chain_time(repo, tip) + 1)
        oid = repo.commit(
            tree=repo.empty_tree,
            parents=[tip] if tip else [],
            message=encode(msg),
            author=msg.sender,
            time_ms=msg.time,
        )
        try:
            repo.update_ref(ref, oid, tip, f"gitbus: {msg.kind.value} {msg.id}")
            remember_time(oid, msg.time)
            return msg
        except RefMoved:
            continue
    raise Contended(f"Gave up appending to {ref} after {_MAX_RACES} lost races.")


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
    seen: set[Oid] = set()
    heap: list[tuple[tuple[int, int], Oid, str, Message]] = []

    def push(oid: Oid, ref: str) -> None:
        if oid in seen or oid in stop_set:
            return
        seen.add(oid)
        commit = repo.read_commit(oid)
        try:
            msg = decode(commit.message)
        except CorruptMessage:
            for parent in commit.parents:
                push(parent, ref)
            return
        heapq.heappush(heap, (_key(msg), oid, ref, msg))
        pending[oid] = commit.parents

    pending: dict[Oid, tuple[Oid, ...]] = {}
    for ref, tip in sorted(tips.items()):
        push(tip, ref)
    while heap:
        _, oid, ref, msg = heapq.heappop(heap)
        for parent in pending.pop(oid, ()):
            push(parent, ref)
        yield Entry(msg, oid, ref)
