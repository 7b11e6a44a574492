from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus import agents, settings
from gitbus import paths as P
from gitbus.bus import OPEN_WINDOW, Bus, Replies
from gitbus.clock import FakeClock
from gitbus.errors import Conflict, GitbusError, NotFound
from gitbus.git import Repository
from gitbus.ids import EVERYONE
from gitbus.message import MAX_PATHS, Kind

from .conftest import git
from .crowded import bulk_discoveries, counted

BusFor = Callable[[Path, str], Bus]


@pytest.fixture
def trio(worktrees: list[Path], bus_for: BusFor) -> tuple[Bus, Bus, Bus]:
    return bus_for(worktrees[0], "api-1"), bus_for(worktrees[1], "web-1"), bus_for(worktrees[2], "db-1")


def bus_refs(root: Path) -> str:
    return git(root, "for-each-ref", "--format=%(refname) %(objectname)")


def test_a_message_to_an_unknown_agent_fails_and_writes_nothing(trio: tuple[Bus, Bus, Bus]) -> None:
    api, _, _ = trio
    before = bus_refs(api.repo.root)
    with pytest.raises(NotFound, match="No agent named 'wbe-1'.*known: api-1, db-1, web-1"):
        api.ask("where is the db config?", to="wbe-1")
    assert bus_refs(api.repo.root) == before


def test_an_answer_reaches_the_asker_and_points_at_the_question(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    q = web.ask("where is the db config?", to="db-1")
    a = db.answer(q.id[:6], "config/db.yaml")
    assert (a.to, a.reply_to) == ("web-1", q.id)
    assert a.time > q.time
    assert [m.id for m in web.inbox()][-1] == a.id
    assert a.id not in [m.id for m in api.inbox()]


def test_an_answer_to_a_question_for_everyone_is_for_everyone(trio: tuple[Bus, Bus, Bus]) -> None:
    _, web, db = trio
    q = web.ask("who owns the migrations?")
    assert db.answer(q.id, "db-1 does").to == EVERYONE


def test_only_questions_can_be_answered(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    d = api.discover("found it")
    with pytest.raises(GitbusError, match="not a question"):
        web.answer(d.id, "thanks")


def test_exactly_one_agent_takes_a_request_and_only_it_finishes(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    r = api.request("add an index on users.email")
    db.take(r.id)
    with pytest.raises(Conflict, match="already taken by db-1"):
        web.take(r.id)
    with pytest.raises(Conflict, match="only they can finish"):
        web.done(r.id)
    d = db.done(r.id, "migrations/0042.sql")
    assert (d.kind, d.reply_to, d.to) == (Kind.DONE, r.id, "api-1")
    with pytest.raises(GitbusError, match="already done"):
        db.done(r.id)


def test_a_request_to_one_agent_can_be_taken_only_by_it(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    r = api.request("rotate the keys", to="db-1")
    with pytest.raises(GitbusError, match="addressed to db-1"):
        web.take(r.id)
    db.take(r.id)


def test_log_filters_by_type_sender_path_time_and_text(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api, web, db = trio
    d1 = api.discover("handlers are in internal/api", ["internal/api/"])
    clock.advance(60_000)
    q = web.ask("where is the DB config?", paths=["config/db.yaml"])
    d2 = db.discover("pool size lives in config/db.yaml", ["config/db.yaml"])
    assert [m.id for m in api.log(kinds=["discovery"])] == [d2.id, d1.id]
    assert [m.id for m in api.log(sender="web-1", kinds=["question"])] == [q.id]
    assert [m.id for m in api.log(path="config/")] == [d2.id, q.id]
    assert [m.id for m in api.log(path="internal/api/handler.go")] == [d1.id]
    assert [m.id for m in api.log(grep="db config")] == [q.id]
    assert [m.id for m in api.log(since=clock.now_ms() - 1000)] == [d2.id, q.id]
    assert len(api.log(n=2)) == 2


def test_history_is_in_time_order_with_ids_breaking_ties(trio: tuple[Bus, Bus, Bus]) -> None:
    api, _web, _db = trio
    for i in range(5):
        for b in trio:
            b.discover(f"{b.agent} {i}")
    msgs = api.log(n=None)
    keys = [(m.time, m.id) for m in msgs]
    assert keys == sorted(keys, reverse=True)
    assert len({m.id for m in msgs}) == len(msgs)


def test_show_finds_a_message_by_a_unique_prefix_and_refuses_bad_ids(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    d = api.discover("x")
    assert web.find(d.id[:4]).id == d.id
    with pytest.raises(NotFound):
        web.find("ffffffffffffffff" if not d.id.startswith("f") else "0000000000000000")
    for bad in ("xyz", "12", "../../etc"):
        with pytest.raises(GitbusError, match="not a message id"):
            web.find(bad)


def test_taking_a_request_twice_or_finishing_a_non_request_says_why(trio: tuple[Bus, Bus, Bus]) -> None:
    api, _, db = trio
    r = api.request("bump deps")
    db.take(r.id)
    db.done(r.id)
    with pytest.raises(GitbusError, match="You already took request .* and it is done"):
        db.take(r.id)
    d = api.discover("not a request")
    with pytest.raises(GitbusError, match="not a request"):
        db.done(d.id)


def test_an_unknown_message_type_is_a_one_line_error_in_the_library(trio: tuple[Bus, Bus, Bus]) -> None:
    with pytest.raises(GitbusError, match="'gossip' is not a message type"):
        trio[0].log(kinds=["gossip"])


def test_joining_with_a_name_another_live_worktree_uses_is_refused(
    worktrees: list[Path], clock: FakeClock
) -> None:
    Bus.open(worktrees[0], None, clock).join("api-1")
    with pytest.raises(GitbusError, match=r"Agent api-1 already joined from .*main"):
        Bus.open(worktrees[1], None, clock).join("api-1")
    assert Bus.open(worktrees[0], None, clock).join("api-1") is None


def test_an_init_name_given_up_for_a_joined_one_takes_no_more_messages(
    worktrees: list[Path], clock: FakeClock
) -> None:
    first = Bus.open(worktrees[1], None, clock)
    derived = first.agent
    assert first.init() is not None  # on the bus under the name derived from the worktree
    first.join("web-1")
    other = Bus.open(worktrees[0], "api-1", clock)
    with pytest.raises(NotFound, match=f"Agent {derived} is now web-1 .*nothing was sent. Send to web-1"):
        other.ask("still there?", to=derived)
    assert other.ask("there?", to="web-1").to == "web-1"
    assert Bus.open(worktrees[1], None, clock).join("web-1") is None  # again: nothing more said
    texts = [m.text for m in other.log(None, sender=derived)]
    assert texts == [f"{derived} is now web-1 (worktree wt-b)", f"{derived} joined from wt-b"]


def test_a_worktree_can_take_back_the_name_it_gave_up(worktrees: list[Path], clock: FakeClock) -> None:
    wt = Bus.open(worktrees[1], None, clock)
    derived = wt.agent
    wt.init()
    wt.join("web-1")
    Bus.open(worktrees[1], None, clock).join(derived)  # back again
    other = Bus.open(worktrees[0], "api-1", clock)
    assert other.ask("back?", to=derived).to == derived
    with pytest.raises(NotFound, match=f"Agent web-1 is now {derived}"):
        other.ask("still web-1?", to="web-1")


def test_status_lists_claims_open_questions_and_requests(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    api.claim(["internal/api/"])
    web.claim(["web/"])
    q1 = db.ask("who owns web/?")
    q2 = db.ask("answered already")
    web.answer(q2.id, "yes")
    r = db.request("bump deps")
    s = api.status()
    assert [c.path for c in s.my_claims] == ["internal/api/"]
    assert [c.path for c in s.other_claims] == ["web/"]
    assert [m.id for m in s.open_questions] == [q1.id]
    assert [x.message.id for x in s.requests] == [r.id]
    assert s.unread > 0


def test_agents_are_listed_with_their_last_activity(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api, web, _ = trio
    clock.advance(5000)
    web.discover("latest")
    api.claim(["a/"])
    infos = {a.name: a for a in api.agents()}
    assert set(infos) == {"api-1", "web-1", "db-1"}
    assert infos["web-1"].last_active == clock.now_ms()
    assert infos["web-1"].last_summary == "discovery: latest"
    assert infos["api-1"].live_claims == 1


def test_the_agent_name_comes_from_env_then_worktree_setting_then_folder(
    worktrees: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository.open(worktrees[1])
    assert agents.resolve(repo) == "wt-b"
    Bus.open(worktrees[1]).join("web-1")
    assert agents.resolve(Repository.open(worktrees[1])) == "web-1"
    assert agents.resolve(Repository.open(worktrees[2])) == "wt-c"
    monkeypatch.setenv("GITBUS_AGENT", "from-env")
    assert agents.resolve(Repository.open(worktrees[1])) == "from-env"
    assert git(worktrees[1], "status", "--porcelain") == ""


@pytest.mark.parametrize("name", ["../x", "refs/heads/main", "a b", "x.lock", "", "A", "-x", "a..b", "all"])
def test_hostile_agent_names_are_refused_and_touch_no_ref(repo: Path, name: str) -> None:
    before = bus_refs(repo)
    with pytest.raises(GitbusError, match="not a valid agent name"):
        Bus.open(repo, name or "\x00").discover("hi")
    assert bus_refs(repo) == before


def test_bus_commits_read_plainly_in_git_log(trio: tuple[Bus, Bus, Bus]) -> None:
    api, _, _ = trio
    api.discover("the db config is config/db.yaml", ["config/db.yaml"])
    out = git(api.repo.root, "log", "-1", "--format=%an%n%B", "refs/bus/agents/api-1")
    assert out.startswith("api-1\ndiscovery: the db config is config/db.yaml\n\nthe db config")
    assert "Gitbus-Path: config/db.yaml" in out


def test_init_is_idempotent_and_stores_the_remote(repo: Path, clock: FakeClock) -> None:
    bus = Bus.open(repo, "api-1", clock)
    with pytest.raises(GitbusError, match="git has no remote named 'origin'"):
        bus.init(remote="origin")  # every later claim would fail on it
    assert settings.load(bus.repo.common_dir)["remote"] is None
    git(repo, "remote", "add", "origin", str(repo.parent / "elsewhere.git"))
    assert bus.init(remote="origin") is not None
    assert bus.init(remote="origin") is None
    assert settings.load(bus.repo.common_dir)["remote"] == "origin"
    with pytest.raises(GitbusError, match="not a valid remote"):
        bus.init(remote="-bad")


def test_an_agent_in_a_worktree_whose_path_is_not_utf8_is_refused_in_one_line(repo: Path) -> None:
    """The join message records the worktree it came from; a path that is not UTF-8 cannot be
    written in a message, so posting from there says so instead of failing mid-commit."""
    odd = repo.parent / os.fsdecode(b"wt-\xff")
    git(repo, "worktree", "add", "-q", "-b", "odd", str(odd))
    bus = Bus.open(odd, "odd-1")
    with pytest.raises(GitbusError, match="not UTF-8"):
        bus.discover("hi")
    assert bus.repo.ref("refs/bus/agents/odd-1") is None  # nothing written


# -- replies ----------------------------------------------------------------------------------------


def test_replies_are_found_however_many_messages_came_after_them(
    repo: Path, bus_for: BusFor, clock: FakeClock
) -> None:
    """Replies are looked for back to the message's own time, not among a fixed window of recent ones."""
    web, api, filler = bus_for(repo, "web-1"), bus_for(repo, "api-1"), bus_for(repo, "filler")
    q = web.ask("which port does the api use?", to="api-1")
    clock.advance(1000)
    a = api.answer(q.id, "8080")
    bulk_discoveries(filler.repo, "filler", [f"finding {i}" for i in range(OPEN_WINDOW + 1)], clock)
    got = web.replies(q)
    assert ([m.id for m in got.messages], got.left_out) == ([a.id], 0)
    assert web.replies(a) == Replies([], 0)


def test_a_flood_of_replies_shows_the_first_ones_and_counts_the_rest(
    repo: Path, bus_for: BusFor, clock: FakeClock
) -> None:
    """A peer answering thousands of times cannot push the genuine answer out of sight, nor make a
    reader hold them all: the oldest are kept, the rest counted."""
    web, api, spammer = bus_for(repo, "web-1"), bus_for(repo, "api-1"), bus_for(repo, "spammer")
    q = web.ask("which port does the api use?")
    clock.advance(1000)
    a = api.answer(q.id, "8080")
    spam = bulk_discoveries(spammer.repo, "spammer", [f"no, {i}" for i in range(OPEN_WINDOW + 1)], clock, q)
    got = web.replies(q, most=10)
    assert [m.id for m in got.messages] == [a.id] + [m.id for m in spam[:9]]
    assert got.left_out == len(spam) - 9


# -- how many paths a message names -----------------------------------------------------------------


def test_too_many_paths_are_refused_before_the_rest_are_read(
    trio: tuple[Bus, Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """100,000 paths took 13 s to normalise before the refusal: it comes at the first path too many."""
    api, _, _ = trio
    before = bus_refs(api.repo.root)
    normalised = counted(monkeypatch, P, "normalize")
    many = [f"src/f{i}.py" for i in range(100_000)]
    for post in (api.discover, api.ask, api.request):
        with pytest.raises(GitbusError, match=f"at most {MAX_PATHS} paths"):
            post("x", paths=many)
    assert normalised[0] <= 3 * (MAX_PATHS + 1)
    assert bus_refs(api.repo.root) == before


def test_a_claim_release_or_renew_of_more_paths_than_a_message_may_name_is_refused(
    trio: tuple[Bus, Bus, Bus],
) -> None:
    """Every reader skips a message naming more than MAX_PATHS paths as broken (docs/format.md), so a
    claim of 1,001 paths was granted by a message nobody could read: it is refused, nothing written."""
    api, web, _ = trio
    api.claim(["src/"])
    before = bus_refs(api.repo.root)
    many = [f"src/f{i}.py" for i in range(MAX_PATHS + 1)]
    for step in (api.claim, api.release, api.renew):
        with pytest.raises(GitbusError, match=f"at most {MAX_PATHS} paths"):
            step(many)
    assert bus_refs(api.repo.root) == before
    assert [c.path for c in web.claims()] == ["src/"]
    with_repeats = [*many[:MAX_PATHS], *many[:MAX_PATHS]]  # the same path named twice counts once
    assert len(api.claim(with_repeats).paths) == MAX_PATHS
