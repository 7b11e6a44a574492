from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitbus.clock import parse_duration, parse_since
from gitbus.errors import GitbusError
from gitbus.settings import parse as parse_setting

UNITS = [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
LONG = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds", "ms": "milliseconds"}


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1h30m", 5_400_000),
        ("1.5h", 5_400_000),
        ("2H", 7_200_000),
        ("1w", 604_800_000),
        ("500ms", 500),
        ("90", 90_000),
        ("1m30s", 90_000),
        ("1h 30m", 5_400_000),
        ("90 minutes", 5_400_000),
        ("1 hour 30 min", 5_400_000),
        (".5s", 500),
        ("2d12h", 216_000_000),
        ("1s500ms", 1500),
        ("  10m  ", 600_000),
    ],
)
def test_compound_fractional_and_any_case_durations_are_read(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "",
        "banana",
        "0",
        "0s",
        "-5m",
        "30m1h",
        "1h1h",
        "1e3s",
        "1.h",
        "5 parsecs",
        "1,5h",
        "h",
        "9" * 5000,
        "0.0001s",
    ],
)
def test_anything_else_is_refused_in_one_line_listing_the_forms(text: str) -> None:
    with pytest.raises(GitbusError) as e:
        parse_duration(text)
    line = str(e.value)
    assert "\n" not in line and "is not a duration" in line
    for form in ("500ms", "90s", "1.5h", "1h30m", "2d", "1w"):
        assert form in line


parts = st.lists(st.integers(min_value=0, max_value=999), min_size=6, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    counts=parts,
    upper=st.lists(st.booleans(), min_size=6, max_size=6),
    long=st.lists(st.booleans(), min_size=6, max_size=6),
    sep=st.sampled_from(["", " ", "  "]),
)
def test_a_sum_of_units_written_any_way_reads_back_as_that_sum(
    counts: list[int], upper: list[bool], long: list[bool], sep: str
) -> None:
    terms = []
    for (unit, _), n, up, lng in zip(UNITS, counts, upper, long, strict=True):
        if n:
            name = f" {LONG[unit]}" if lng else unit
            terms.append(f"{n}{name.upper() if up else name}")
    total = sum(n * ms for (_, ms), n in zip(UNITS, counts, strict=True))
    if not terms:
        return
    assert parse_duration(sep.join(terms)) == total


@settings(max_examples=300, deadline=None)
@given(
    whole=st.integers(min_value=0, max_value=10_000),
    frac=st.integers(min_value=0, max_value=999),
    unit=st.sampled_from(UNITS[:-1]),
)
def test_a_fractional_unit_reads_as_the_nearest_millisecond(
    whole: int, frac: int, unit: tuple[str, int]
) -> None:
    name, ms = unit
    exact = (Decimal(whole) + Decimal(frac) / 1000) * ms
    if exact < Decimal("0.5"):
        return
    assert parse_duration(f"{whole}.{frac:03d}{name}") == int(
        exact.to_integral_value(rounding="ROUND_HALF_UP")
    )


def test_since_takes_a_compound_duration_ago_or_an_iso_time() -> None:
    now = 1_800_000_000_000
    assert parse_since("1h30m", now) == now - 5_400_000
    assert parse_since("2026-11-25T14:00Z", now) == 1_795_615_200_000
    with pytest.raises(GitbusError, match="neither a duration"):
        parse_since("yesterday", now)


@pytest.mark.parametrize(
    ("typed", "seconds"), [("30", 30), ("0", 0), ("90s", 90), ("1.5m", 90), ("1h", 3600)]
)
def test_sync_interval_takes_a_duration_and_stores_whole_seconds(typed: str, seconds: int) -> None:
    assert parse_setting("sync_interval", typed) == seconds


@pytest.mark.parametrize("typed", ["500ms", "1.5s", "banana", "-1"])
def test_sync_interval_refuses_what_is_not_whole_seconds_in_one_line(typed: str) -> None:
    with pytest.raises(GitbusError, match="sync_interval is 0") as e:
        parse_setting("sync_interval", typed)
    assert "\n" not in str(e.value)
