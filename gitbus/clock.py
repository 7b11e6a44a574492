"""Time as gitbus sees it: an injectable clock, durations and instants typed by people.

All bus times are integer milliseconds since the Unix epoch (UTC). The clock is injected so tests can
move time (lease expiry) without sleeping.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Protocol

from gitbus.errors import GitbusError

# Every time on the bus has 13 digits: 2001-09-09 to 2286-11-20. A peer's time outside this range
# is refused when read (a message, a lease), so no arithmetic on it can overflow a commit date or a
# datetime, and `sort -r` on the decimal text stays bus order.
MIN_TIME_MS = 10**12
MAX_TIME_MS = 10**13 - 1

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


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


def parse_duration(text: str) -> int:
    """`30s`, `10m`, `2h`, `1d` or bare seconds, to milliseconds."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise GitbusError(
            f"'{text}' is not a duration; use a positive number with ms, s, m, h or d (e.g. 10m)."
        )
    return int(m.group(1)) * _UNIT_MS[m.group(2) or "s"]


def parse_since(text: str, now_ms: int) -> int:
    """A duration ago (`2h`) or an ISO date/time, to epoch milliseconds."""
    if _DURATION.match(text):
        return now_ms - parse_duration(text)
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
