"""Time as gitbus sees it: an injectable clock, durations and instants typed by people.

All bus times are integer milliseconds since the Unix epoch (UTC). The clock is injected so tests can
move time (lease expiry) without sleeping.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from gitbus.errors import GitbusError

# Every time on the bus has 13 digits: 2001-09-09 to 2286-11-20. A peer's time outside this range
# is refused when read (a message, a lease), so no arithmetic on it can overflow a commit date or a
# datetime, and `sort -r` on the decimal text stays bus order.
MIN_TIME_MS = 10**12
MAX_TIME_MS = 10**13 - 1

# Units largest first, each with the spellings people type; matched case-insensitively.
_UNITS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (604_800_000, ("w", "wk", "wks", "week", "weeks")),
    (86_400_000, ("d", "day", "days")),
    (3_600_000, ("h", "hr", "hrs", "hour", "hours")),
    (60_000, ("m", "min", "mins", "minute", "minutes")),
    (1000, ("s", "sec", "secs", "second", "seconds")),
    (1, ("ms", "msec", "msecs", "millisecond", "milliseconds")),
)
_UNIT_MS = {name: ms for ms, names in _UNITS for name in names}
# A number is at most 30 digits, with at most 9 after the point: far past any lease (which the caller
# then refuses in words), and far from Python's limit on converting long digit strings.
_TERM = re.compile(r"\s*(\d{1,30}(?:\.\d{1,9})?|\.\d{1,9})\s*([a-z]+)?", re.IGNORECASE)
DURATION_FORMS = (
    "a number and a unit (ms, s, m, h, d, w), alone or combined largest first: "
    "500ms, 90s, 1.5h, 1h30m, 2d, 1w, 90 minutes; a bare number is seconds"
)


def sane(ms: int) -> bool:
    """True when `ms` is a time the bus takes in (13 digits of epoch milliseconds)."""
    return MIN_TIME_MS <= ms <= MAX_TIME_MS


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that only moves when told to; for tests and the demo."""

    def __init__(self, start_ms: int = 1_764_000_000_000) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


def _duration_ms(text: str) -> int | None:
    """`text` as a positive number of milliseconds by the grammar of `parse_duration`, or None."""
    total, pos, last = Decimal(0), 0, None
    body = text.rstrip()
    while pos < len(body):
        m = _TERM.match(body, pos)
        if not m:
            return None
        number, unit = m.group(1), (m.group(2) or "").lower()
        if not unit:
            if pos or m.end() != len(body):  # a bare number is seconds, and only on its own
                return None
            unit = "s"
        ms = _UNIT_MS.get(unit)
        if ms is None or (last is not None and ms >= last):  # each unit once, largest first
            return None
        total += Decimal(number) * ms
        pos, last = m.end(), ms
    rounded = int(total.to_integral_value(rounding=ROUND_HALF_UP))
    return rounded if rounded > 0 else None


def parse_duration(text: str) -> int:
    """A duration typed by a person (`1h30m`, `1.5h`, `2H`, `1w`, `500ms`, `90 minutes`, bare seconds)
    to milliseconds, rounded to the nearest one; refused in one line that lists the forms.

    A grammar of our own rather than a library: it is a dozen lines, exact in milliseconds (decimal
    arithmetic, no floats), strict (each unit once, largest first, nothing left unread: `30m1h` and
    `1e3s` are refused, not guessed at), and its one refusal lists the forms.
    """
    ms = _duration_ms(text)
    if ms is None:
        raise GitbusError(f"'{text}' is not a duration; use {DURATION_FORMS}.")
    return ms


def parse_since(text: str, now_ms: int) -> int:
    """A duration ago (`2h`) or an ISO date/time, to epoch milliseconds."""
    ago = _duration_ms(text)
    if ago is not None:
        return now_ms - ago
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise GitbusError(
            f"'{text}' is neither a duration (2h) nor an ISO time (2026-11-25T14:00)."
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC string, for JSON output."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hhmm(ms: int) -> str:
    """Epoch milliseconds as local HH:MM (with the date when it is not today), for short human text."""
    when = datetime.fromtimestamp(ms / 1000)
    return when.strftime("%H:%M") if when.date() == datetime.now().date() else when.strftime("%b %d %H:%M")


def span(ms: int) -> str:
    """A duration in milliseconds as a short human string: 45s, 12m, 3h, 2d."""
    s = -(-max(0, ms) // 1000)  # round up: "1m left" until the lease is really over
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s % 3600 >= 60 else f"{s // 3600}h"
    return f"{s // 86400}d"
