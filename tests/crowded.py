"""A crowded ledger and a call counter: tests that count the work a decision does (entries read,
claims parsed) among many claims, never its time (issue 16: costs that do not grow with the crowd)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus.bus import Bus
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.ids import LEDGER_REF

HOLDERS = ("api-1", "web-1", "db-1", "ops-1")
PER_HOLDER = 100


def crowd(root: Path, bus_for: Callable[[Path, str], Bus]) -> list[Bus]:
    """Four holders with a hundred `area<k>/mod<j>/` claims each, granted in one step each."""
    buses = [bus_for(root, name) for name in HOLDERS]
    for k, bus in enumerate(buses):
        bus.claim([f"area{k}/mod{j}/" for j in range(PER_HOLDER)], reason="crowd")
    return buses


def counted(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of `owner.name` from now on (the real one still runs)."""
    calls = [0]
    original = getattr(owner, name)

    def spy(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def entries_read(monkeypatch: pytest.MonkeyPatch, repo: Repository) -> list[int]:
    """Count the blobs read from now on, but for the tombstone at `refs/bus/ledger`: reading where the
    single ledger ended costs the same whatever the crowd (it holds no entry)."""
    stone = repo.ref(LEDGER_REF)
    assert stone is not None and repo.object_kind(stone) == "blob"
    calls = [0]
    original = Repository.read_blob

    def spy(self: Repository, oid: Oid, limit: int | None = None) -> bytes:
        calls[0] += oid != stone
        return original(self, oid, limit)

    monkeypatch.setattr(Repository, "read_blob", spy)
    return calls
