"""Losing a compare-and-swap: how long a loser waits, when it takes its turn, and when it gives up.

A ref write names the value it replaces (`Repository.update_ref`); when another writer got there
first it raises `gitfiles.RefMoved` naming the winner, and `Repository.retry_cas` decides again on
the winner's value. These are that loop's rules, one set for every ref: a jittered exponential
backoff (`Backoff`), a turn for a writer that lost `STARVED_AFTER` in a row (`state.taking_turn`), and
one limit, `MAX_RACES`, past which it gives up with `LostRaces`. Standard library only, so the sync
layer's pushes use the same rules (`REMOTE_BACKOFF`).
"""

from __future__ import annotations

import random
from typing import NamedTuple

from gitbus.errors import Contended
from gitbus.gitfiles import RefMoved

# The one limit on lost races: a writer that lost this many in a row gives up (`LostRaces`). With the
# backoff below that is tens of seconds of a crowd winning every time, not a few busy milliseconds.
MAX_RACES = 1000
STARVED_AFTER = 3  # lost races in a row after which a writer takes its turn (`retry_cas`)


class Backoff(NamedTuple):
    """How long a loser waits before deciding again: "full jitter" exponential backoff, a uniform
    draw below `first * 2**lost`, capped. The jitter spreads the losers out, so they do not collide
    again in step; the draw reaching down to zero keeps an old loser as likely to go first as the
    winner coming back; the cap bounds what one more loss can cost."""

    first: float  # seconds
    cap: float

    def delay(self, lost: int) -> float:
        """Seconds to wait after the `lost`-th lost race in a row (from 0)."""
        return random.uniform(0.0, min(self.cap, self.first * 2 ** min(lost, 32)))


LOCAL_BACKOFF = Backoff(first=0.001, cap=0.1)  # a compare-and-swap in this clone costs about 1 ms
REMOTE_BACKOFF = Backoff(first=0.02, cap=0.25)  # a push to the remote costs a round trip or more
TURN_POLL = Backoff(first=0.0005, cap=0.002)  # a turn is short: its waiters look again often


class LostRaces(Contended):
    """A compare-and-swap lost `MAX_RACES` times in a row; names the ref and its last winner."""

    def __init__(self, what: str, lost: RefMoved) -> None:
        winner = lost.actual[:12] if lost.actual else "nothing (deleted)"
        super().__init__(
            f"Gave up {what} after {MAX_RACES} lost races in a row: other writers kept moving "
            f"{lost.name} (last to {winner}). Nothing was changed; retry."
        )
        self.ref = lost.name
        self.winner = lost.actual
