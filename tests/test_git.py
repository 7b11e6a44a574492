"""The door to git: compare-and-swap ref writes and the one retry loop over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitbus import git, races
from gitbus.git import LostRaces, RefMoved, Repository

REF = "refs/bus/test"


def _commit(repo: Repository, text: str) -> git.Oid:
    return repo.commit(tree=repo.empty_tree, parents=[], message=text, author="t", time_ms=1_000_000)


def test_a_ref_write_that_names_a_stale_value_loses_and_names_the_winner(repo: Path) -> None:
    r = Repository.open(repo)
    first, second, mine = (_commit(r, t) for t in ("first\n", "second\n", "mine\n"))
    r.update_ref(REF, first, None, "test")
    r.update_ref(REF, second, first, "test")
    with pytest.raises(RefMoved) as lost:
        r.update_ref(REF, mine, first, "test")
    assert (lost.value.name, lost.value.actual) == (REF, second)
    assert r.ref(REF) == second


def test_retry_cas_decides_again_on_the_winners_value(repo: Path) -> None:
    r = Repository.open(repo)
    rival = _commit(r, "rival\n")
    seen: list[git.Oid | None] = []

    def attempt() -> str:
        tip = r.ref(REF)
        seen.append(tip)
        if tip is None:
            r.update_ref(REF, rival, None, "another writer gets there first")
        mine = r.commit(
            tree=r.empty_tree, parents=[tip or rival], message="m\n", author="t", time_ms=1_000_000
        )
        r.update_ref(REF, mine, tip, "test")
        return mine

    won = r.retry_cas(REF, attempt, f"writing {REF}")
    assert seen == [None, rival] and r.ref(REF) == won


def test_retry_cas_gives_up_after_the_one_limit_naming_the_ref_and_its_winner(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(races, "MAX_RACES", 5)
    r = Repository.open(repo)
    calls = 0

    def always_beaten() -> None:
        nonlocal calls
        calls += 1
        tip = r.ref(REF)
        r.update_ref(REF, _commit(r, f"rival {calls}\n"), tip, "a rival")
        r.update_ref(REF, _commit(r, "mine\n"), tip, "test")

    with pytest.raises(LostRaces) as gave_up:
        r.retry_cas(REF, always_beaten, f"writing {REF}")
    assert calls == 5
    assert (gave_up.value.ref, gave_up.value.winner) == (REF, r.ref(REF))
    assert f"Gave up writing {REF} after 5 lost races" in str(gave_up.value)
    assert gave_up.value.exit_code == 4  # a `Contended`: one line at the CLI
