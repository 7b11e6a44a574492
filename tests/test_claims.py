from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import pytest

from gitbus import ledger_shards, ledger_state
from gitbus import paths as P
from gitbus.bus import Bus
from gitbus.claims import DEFAULT_TTL_MS, SKEW_MARGIN_MS, all_claims
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict, GitbusError, NotFound
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.message import Kind

from .conftest import git
from .crowded import PER_HOLDER, crowd, entries_read

BusFor = Callable[[Path, str], Bus]


@pytest.fixture
def pair(worktrees: list[Path], bus_for: BusFor) -> tuple[Bus, Bus]:
    return bus_for(worktrees[0], "api-1"), bus_for(worktrees[1], "web-1")


def assert_no_overlap_between_owners(bus: Bus) -> None:
    entries = all_claims(ledger_state.current(bus.repo))
    for a, b in combinations(entries, 2):
        assert a.owner == b.owner or not P.overlaps(a.path, b.path), (a, b)


def test_claim_on_parent_dir_names_the_holder(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["internal/api/handler.go"], reason="fixing a bug")
    with pytest.raises(ClaimConflict) as e:
        web.claim(["internal/"])
    assert e.value.holder == "api-1"
    assert e.value.held_path == "internal/api/handler.go"
    assert e.value.reason == "fixing a bug"
    assert "api-1 holds internal/api/handler.go until" in str(e.value)
    assert e.value.exit_code == 3


def test_a_glob_claim_is_refused_and_the_folder_claim_it_suggests_protects_the_files(
    pair: tuple[Bus, Bus],
) -> None:
    api, web = pair
    for pattern in ("internal/**", "src/*.py"):
        with pytest.raises(GitbusError, match="not patterns"):
            api.claim([pattern])
    assert api.claims() == []
    api.claim(["internal/"])
    with pytest.raises(ClaimConflict, match="api-1 holds internal/"):
        web.claim(["internal/foo.go"])


def test_claim_inside_a_held_directory_is_refused(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["internal/api/"])
    with pytest.raises(ClaimConflict, match="api-1 holds internal/api/"):
        web.claim(["internal/api/handler.go"])


def test_sibling_with_a_common_prefix_does_not_overlap(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["internal/api/"])
    web.claim(["internal/apis/"])
    assert {c.path for c in api.claims()} == {"internal/api/", "internal/apis/"}


def test_a_refused_claim_grants_none_of_its_paths(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["config/"])
    # `web/` and `config/` are on different shards: no ledger ref at all may move.
    before = git(api.repo.root, "for-each-ref", "refs/bus/ledger", "refs/bus/ledgers/")
    with pytest.raises(ClaimConflict):
        web.claim(["web/", "config/db.yaml"])
    assert git(api.repo.root, "for-each-ref", "refs/bus/ledger", "refs/bus/ledgers/") == before
    assert [c.owner for c in web.claims()] == ["api-1"]


def test_reclaiming_ones_own_path_is_idempotent_and_extends_the_lease(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    api, _ = pair
    api.claim(["internal/api/"], reason="split")
    first = api.claims()[0]
    clock.advance(60_000)
    api.claim(["internal/api"])
    [again] = api.claims()
    assert again.claimed_at == first.claimed_at
    assert again.expires_at == clock.now_ms() + DEFAULT_TTL_MS > first.expires_at
    assert again.reason == "split"


def test_an_expired_claim_is_ignored_and_can_be_taken_over(pair: tuple[Bus, Bus], clock: FakeClock) -> None:
    api, web = pair
    api.claim(["internal/api/"], ttl_ms=10_000)
    clock.advance(10_000 + SKEW_MARGIN_MS)
    assert api.claims() == []
    msg = web.claim(["internal/api/handler.go"])
    assert ("took-over", "api-1 internal/api/") in msg.meta
    assert [(c.owner, c.path) for c in web.claims(include_expired=True)] == [
        ("web-1", "internal/api/handler.go")
    ]
    assert_no_overlap_between_owners(web)


def test_a_claim_expired_by_less_than_the_clock_skew_margin_is_not_taken_over_yet(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    api, web = pair
    api.claim(["internal/api/"], ttl_ms=10_000)
    clock.advance(10_000 + SKEW_MARGIN_MS - 1000)
    assert api.claims() == []  # expired for its owner and for the guards
    with pytest.raises(ClaimConflict, match=r"expired at .*can be taken over 1s from now.*clock skew"):
        web.claim(["internal/api/handler.go"])
    clock.advance(1000)
    assert ("took-over", "api-1 internal/api/") in web.claim(["internal/api/handler.go"]).meta


def test_an_expired_claim_cannot_be_revived_once_another_agent_holds_it(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    api, web = pair
    api.claim(["internal/api/"], ttl_ms=10_000)
    clock.advance(20_000 + SKEW_MARGIN_MS)
    web.claim(["internal/api/"])
    with pytest.raises(NotFound):
        api.renew(["internal/api/"])
    with pytest.raises(ClaimConflict):
        api.claim(["internal/api/"])


def test_an_expired_claim_nobody_took_can_be_renewed_by_its_owner(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    api, _ = pair
    api.claim(["internal/api/"], ttl_ms=10_000)
    clock.advance(20_000)
    api.renew()
    [c] = api.claims()
    assert c.expires_at == clock.now_ms() + 10_000


def test_one_fast_clock_on_the_bus_cannot_expire_the_live_leases_of_others(
    worktrees: list[Path], clock: FakeClock
) -> None:
    holder = Bus.open(worktrees[0], "holder", clock)
    fast = Bus.open(worktrees[1], "skewed", FakeClock(clock.now_ms() + 2 * 3_600_000))  # 2 h ahead
    other = Bus.open(worktrees[2], "other", clock)
    holder.claim(["src/"], ttl_ms=30 * 60_000, reason="refactor")
    ahead = fast.discover("my clock runs ahead")  # every later message is stamped past this one
    with pytest.raises(ClaimConflict) as refused:
        other.claim(["src/x.py"])
    assert refused.value.holder == "holder"
    mine = other.claim(["docs/"], ttl_ms=60_000)  # granted: its lease runs from the decider's clock
    [c] = [c for c in other.claims() if c.owner == "other"]
    assert c.expires_at == clock.now_ms() + 60_000 and mine.time > ahead.time
    holder.renew()
    assert [c.expires_at for c in holder.claims() if c.owner == "holder"] == [clock.now_ms() + 30 * 60_000]


def test_the_default_lease_is_thirty_minutes(pair: tuple[Bus, Bus], clock: FakeClock) -> None:
    api, _ = pair
    api.claim(["a/"])
    [c] = api.claims()
    assert c.expires_at - c.claimed_at == DEFAULT_TTL_MS == 30 * 60_000


def test_only_the_owner_releases(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["internal/api/"])
    with pytest.raises(GitbusError, match="only api-1 can release it"):
        web.release(["internal/api/"])
    with pytest.raises(GitbusError, match="needs --reason"):
        web.release(["internal/api/"], force=True)
    assert [c.owner for c in web.claims()] == ["api-1"]


def test_a_forced_release_is_recorded_and_reaches_the_previous_owner(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["internal/api/"])
    api.inbox(mark_read=True)
    msg = web.release(["internal/api/"], force=True, reason="api-1 crashed an hour ago")
    assert msg is not None and ("forced", "api-1 internal/api/") in msg.meta
    assert web.claims() == []
    assert [m.id for m in api.inbox()] == [msg.id]


def test_release_all_releases_only_my_claims(pair: tuple[Bus, Bus]) -> None:
    api, web = pair
    api.claim(["a/", "b/x.go"])
    web.claim(["c/"])
    released = api.release(everything=True)
    assert released is not None and set(released.paths) == {"a/", "b/x.go"}
    assert [c.path for c in api.claims()] == ["c/"]
    assert api.release(everything=True) is None


def test_releasing_an_unclaimed_path_says_so(pair: tuple[Bus, Bus]) -> None:
    api, _ = pair
    with pytest.raises(NotFound, match="no claim on config/"):
        api.release(["config"])


@pytest.mark.parametrize("ignorecase", ["true", "false"])
def test_claims_compare_case_insensitively_whatever_core_ignorecase_says(
    pair: tuple[Bus, Bus], ignorecase: str
) -> None:
    api, _ = pair
    git(api.repo.root, "config", "core.ignorecase", ignorecase)
    api2 = Bus.open(api.repo.root, "api-1", api.clock)
    web2 = Bus.open(pair[1].repo.root, "web-1", api.clock)
    api2.claim(["Internal/API/"])
    with pytest.raises(ClaimConflict, match="Internal/API/"):
        web2.claim(["internal/api/handler.go"])
    assert ledger_shards.shard_of_path("Internal/API/") == ledger_shards.shard_of_path("internal/api/")
    shard = ledger_shards.shard_of_path("internal/api/")
    assert git(api.repo.root, "ls-tree", "-r", "--name-only", shard).split() == ["claims/_internal/_api/@"]


def _commit_with_one_entry(repo: Repository, blob: str, entry: str, parent: str | None, message: str) -> str:
    """A ledger commit whose tree holds only `blob` at `entry`, on `parent`, written by plain git."""
    root = repo.root
    index = {**os.environ, "GIT_INDEX_FILE": str(repo.common_dir / "old-index")}
    for args in (
        ["read-tree", "--empty"],
        ["update-index", "--add", "--cacheinfo", f"100644,{blob},{entry}"],
    ):
        subprocess.run(["git", *args], cwd=root, env=index, check=True)
    tree = subprocess.run(
        ["git", "write-tree"], cwd=root, env=index, check=True, capture_output=True, text=True
    ).stdout.strip()
    return git(root, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message).strip()


@pytest.mark.parametrize("where", ["on-its-shard", "in-the-single-ledger-before-the-move"])
def test_a_claim_in_the_slot_an_older_gitbus_spelled_still_blocks_and_is_released(
    pair: tuple[Bus, Bus], where: str
) -> None:
    """Before slots were always folded, a case-sensitive clone wrote `claims/_Docs/@`: on the single
    ledger, whose claims the shards carry after the move, and on the shard it routes to."""
    api, web = pair
    root = api.repo.root
    shard = ledger_shards.shard_of_path("docs/")
    assert ledger_shards.route("claims/_Docs/@") == shard
    api.claim(["Docs/"])
    tip = git(root, "rev-parse", shard).strip()
    blob = git(root, "rev-parse", f"{shard}:claims/_docs/@").strip()
    if where == "on-its-shard":
        old = _commit_with_one_entry(api.repo, blob, "claims/_Docs/@", tip, "an older gitbus's slot")
        git(root, "update-ref", shard, old, tip)
    else:
        # This clone as an older gitbus left it: one ledger ref, a commit holding the claim.
        old = _commit_with_one_entry(api.repo, blob, "claims/_Docs/@", None, "an older gitbus's slot")
        stone = git(root, "rev-parse", "refs/bus/ledger").strip()
        git(root, "update-ref", "-d", shard, tip)
        assert git(root, "for-each-ref", "refs/bus/ledgers/") == ""
        git(root, "update-ref", "refs/bus/ledger", old, stone)
    with pytest.raises(ClaimConflict, match="Docs/"):
        web.claim(["docs/readme.md"])
    assert [c.path for c in web.claims()] == ["Docs/"]
    api.release(["docs/"])
    assert web.claims() == [] and git(root, "ls-tree", "-r", shard) == ""
    # The release moved the single ledger: it is the tombstone naming where it ended.
    assert git(root, "cat-file", "-t", "refs/bus/ledger").strip() == "blob"
    if where != "on-its-shard":
        assert git(root, "cat-file", "blob", "refs/bus/ledger") == ledger_shards.tombstone(Oid(old)).decode()
        assert git(root, "rev-parse", "refs/bus/ledgers/main").strip() == old


def test_every_grant_release_and_takeover_is_a_message_on_the_ledger(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    api, web = pair
    api.claim(["a/"], ttl_ms=1000)
    clock.advance(2000 + SKEW_MARGIN_MS)
    web.claim(["a/b/"])
    web.release(["a/b/"])
    kinds = [m.kind for m in api.log(n=None) if m.kind in (Kind.CLAIM, Kind.RELEASE)]
    assert kinds == [Kind.RELEASE, Kind.CLAIM, Kind.CLAIM]
    subjects = git(api.repo.root, "log", "--format=%s", ledger_shards.shard_of_path("a/")).splitlines()
    assert subjects == ["release: a/b/", "claim: a/b/", "claim: a/"]


def test_claims_never_show_in_git_status(pair: tuple[Bus, Bus], worktrees: list[Path]) -> None:
    api, web = pair
    api.claim(["internal/api/"])
    web.discover("x")
    for wt in worktrees:
        assert git(wt, "status", "--porcelain") == ""


def test_an_agent_whose_expired_claim_was_taken_over_is_told_plainly(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    from gitbus.delivery import fact

    api, web = pair
    api.claim(["internal/api/"], ttl_ms=10_000)
    clock.advance(10_000 + SKEW_MARGIN_MS)
    msg = web.claim(["internal/api/handler.go"])
    assert "your expired claim on internal/api/ is gone: web-1 took it over" in fact(msg, api.agent)
    assert "your expired claim" not in fact(msg, web.agent)
    assert [(p, by) for p, by, _ in api.status().taken_over] == [("internal/api/", "web-1")]
    assert msg.id in [m.id for m in api.inbox()]
    api.claim(["config/"])  # acting on claims again: the notice has been seen
    assert api.status().taken_over == ()


def test_renewing_a_path_among_many_claims_reads_only_its_slot(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = crowd(worktrees[0], bus_for)[0]
    clock.advance(DEFAULT_TTL_MS // 2)
    blobs = entries_read(monkeypatch, api.repo)
    api.renew(["area0/mod3/"])
    assert blobs[0] <= 1, f"{blobs[0]} ledger entries read to renew one claim among {4 * PER_HOLDER}"
    renewed = {c.path: c.expires_at for c in api.claims() if c.owner == "api-1"}
    assert renewed["area0/mod3/"] == clock.now_ms() + DEFAULT_TTL_MS
    assert renewed["area0/mod4/"] == clock.now_ms() + DEFAULT_TTL_MS // 2
    with pytest.raises(NotFound, match="area1/mod3/"):
        api.renew(["area1/mod3/"])  # web-1's: not api-1's to renew


def test_claim_decisions_among_many_claims_read_only_the_entries_along_their_path(
    worktrees: list[Path], bus_for: BusFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, web, _, _ = crowd(worktrees[0], bus_for)
    blobs = entries_read(monkeypatch, api.repo)
    with pytest.raises(ClaimConflict, match="api-1 holds area0/mod3/"):
        web.claim(["area0/mod3/x.py"])
    web.claim(["area1/mod3/y.py", "fresh/"])
    api.release(["area0/mod3/"])
    assert blobs[0] <= 4, f"{blobs[0]} ledger entries read for three decisions among {4 * PER_HOLDER}"
