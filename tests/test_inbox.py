"""`gitbus.inbox`: who has been told what (an agent's cursor, the ids its sessions were shown).

How hook sessions and the agent's own reads stay level is driven through the hook handler in
test_hooks.py; these read the inbox through the library, as `gitbus inbox` and MCP do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus import state
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.git import Repository
from gitbus.ids import AgentName
from gitbus.inbox import Inbox
from gitbus.inbox_walk import count_text

from .conftest import git

BusFor = Callable[[Path, str], Bus]


@pytest.fixture
def trio(worktrees: list[Path], bus_for: BusFor) -> tuple[Bus, Bus, Bus]:
    return bus_for(worktrees[0], "api-1"), bus_for(worktrees[1], "web-1"), bus_for(worktrees[2], "db-1")


def walk_pages(inbox: Inbox, token: str | None, decoded: list[int], pages: int) -> list[str]:
    """The ids on every page from `token` on (at most `pages` of 5, marking them read), each page
    decoding at most what a page of 5 may cost: 4 windows of 10 and 4 more."""
    got: list[str] = []
    for _ in range(pages):
        decoded[0] = 0
        page = inbox.read_page(True, 5, before=token)
        assert decoded[0] <= 4 * 10 + 4
        got += [m.id for m in page.messages]
        if page.next is None:
            break
        token = page.next
    return got


def test_the_inbox_holds_what_is_for_me_and_never_my_own(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    for b in trio:
        b.inbox(mark_read=True)
    mine = web.discover("web is on vite")
    to_db = api.ask("db question", to="db-1")
    to_web = api.ask("web question", to="web-1")
    broadcast = db.discover("db is postgres")
    assert [m.id for m in web.inbox()] == [to_web.id, broadcast.id]
    assert mine.id not in [m.id for m in web.inbox()]
    assert to_db.id not in [m.id for m in web.inbox()]


def test_mark_read_advances_the_cursor_so_nothing_repeats(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    web.inbox(mark_read=True)
    first = api.discover("one")
    assert [m.id for m in web.inbox(mark_read=True)] == [first.id]
    assert web.inbox() == []
    second = api.discover("two")
    assert [m.id for m in web.inbox()] == [second.id]


def test_a_late_message_with_an_older_time_is_still_delivered(
    repo: Path, tmp_path: Path, clock: FakeClock
) -> None:
    other = tmp_path / "other-machine"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    early = Bus.open(other, "early", FakeClock(clock.now_ms() - 3_600_000))
    late = early.discover("from a machine whose clock is an hour behind")
    reader = Bus.open(repo, "reader", clock)
    reader.init()
    Bus.open(repo, "writer", clock).discover("on time")
    reader.inbox(mark_read=True)
    git(repo, "fetch", "-q", str(other), "refs/bus/agents/early:refs/bus/agents/early")
    assert late.time < reader.log(n=1)[0].time
    assert [m.text for m in reader.inbox()] == ["early joined from other-machine", late.text]


def test_an_inbox_needs_only_the_repository_and_pages_without_repeating(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    web.inbox(mark_read=True)
    sent = [api.discover(f"finding {i}") for i in range(3)]
    inbox = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    first, more = inbox.page(mark_read=True, limit=2)
    assert [m.id for m in first] == [m.id for m in sent[:2]] and more == 1
    rest, more = inbox.page(mark_read=True, limit=2)
    assert [m.id for m in rest] == [sent[2].id] and more == 0
    assert web.inbox() == [] and inbox.read_new() == ([], 0)


def test_a_flooded_agent_reading_through_mcp_decodes_a_window_and_gets_every_message_once(
    trio: tuple[Bus, Bus, Bus], decoded: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MCP inbox tool (`read_new`) past the window: each call decodes about a window, gives the
    newest that fit and remembers them, the next call the ones before (issue 16)."""
    api, web, _ = trio
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 10, raising=False)
    web.inbox(mark_read=True)
    sent = [api.discover(f"finding {i}").id for i in range(30)]
    inbox = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    decoded[0] = 0
    first, more = inbox.read_new()
    assert decoded[0] <= 10 + 4
    assert [m.id for m in first] == sent[-10:] and more >= 1
    got = [m.id for m in first]
    for _ in range(5):
        shown, more = inbox.read_new()
        got += [m.id for m in shown]
        if not more:
            break
    assert sorted(got) == sorted(sent) and len(got) == 30
    assert inbox.read_new() == ([], 0) and web.inbox() == []


def test_a_count_that_went_past_the_cap_says_so() -> None:
    assert (count_text(3), count_text(1000), count_text(1001)) == ("3", "1000", "1000+")


def test_the_inbox_does_not_import_the_bus() -> None:
    """The inbox sits below `Bus` (bus -> inbox, never back): importing it loads no `gitbus.bus`."""
    code = "import sys, gitbus.inbox; print('gitbus.bus' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def flood_behind(trio: tuple[Bus, Bus, Bus], others: int) -> list[str]:
    """Three questions for web-1, then `others` messages between two peers (api-1 asks db-1): the
    reviewer's flood (issue 16), where web-1's few unread lie behind a crowd's traffic."""
    api, web, db = trio
    web.inbox(mark_read=True)  # the joins
    mine = [db.ask(f"question {i} for web", to="web-1").id for i in range(3)]
    for i in range(others):
        api.ask(f"chat {i}", to="db-1")
    return mine


def test_messages_behind_a_flood_of_others_traffic_are_reached_page_by_page_each_page_bounded(
    trio: tuple[Bus, Bus, Bus], decoded: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `gitbus inbox` page walks a bounded window (`WALK_MAX` x `INBOX_WINDOW` commits); past
    it the page names where the next one goes on (`next`), not an offset, so following the tokens
    reaches every unread message however much other traffic lies above it; read to the end with
    --mark-read, the agent's cursor moves to the tips the first page read."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 10, raising=False)
    mine = flood_behind(trio, 200)
    inbox = Inbox(Repository.open(trio[1].repo.root), AgentName("web-1"))
    got: list[str] = []
    token, pages = None, 0
    while pages < 20:
        decoded[0] = 0
        page = inbox.read_page(True, 5, before=token)
        assert decoded[0] <= 4 * 10 + 4  # the window, and a chain tip or so each
        got += [m.id for m in page.messages]
        pages += 1
        if page.next is None:
            break
        token = page.next
    assert sorted(got) == sorted(mine) and len(got) == 3 and pages > 2
    # the pages of one walk share its origin (the tips of the first page) and where its walks stop
    # (the cursor the first page read) in the state
    stored = json.loads(state.pages(inbox.repo.common_dir, "web-1").read_text())
    assert len(stored["origins"]) == 2 and len(stored["pages"]) == pages - 1
    assert inbox.unread()[0] == [] and inbox.read_page(False, 5) == inbox.read_page(False, 5)._replace(
        messages=[], more=0, newest=False, next=None
    )


def test_the_mcp_inbox_behind_a_flood_of_others_traffic_reaches_every_message_once(
    trio: tuple[Bus, Bus, Bus], decoded: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 10, raising=False)
    mine = flood_behind(trio, 200)
    inbox = Inbox(Repository.open(trio[1].repo.root), AgentName("web-1"))
    got: list[str] = []
    token = None
    for _ in range(20):
        decoded[0] = 0
        batch = inbox.read_batch(before=token)
        assert decoded[0] <= 4 * 10 + 4
        got += [m.id for m in batch.messages]
        if batch.next is None:
            break
        token = batch.next
    assert sorted(got) == sorted(mine) and len(got) == 3
    assert inbox.read_batch() == inbox.read_batch()._replace(messages=[], more=0, next=None)
    assert inbox.unread()[0] == []


def test_an_unknown_page_token_is_one_line(trio: tuple[Bus, Bus, Bus]) -> None:
    from gitbus.errors import GitbusError

    inbox = Inbox(Repository.open(trio[1].repo.root), AgentName("web-1"))
    for bad in ("0123456789ab", "../../x"):
        with pytest.raises(GitbusError, match="gitbus inbox") as e:
            inbox.read_page(False, 5, before=bad)
        assert "\n" not in str(e.value)


def test_status_in_a_flood_of_others_traffic_walks_a_bounded_window_and_says_at_least(
    trio: tuple[Bus, Bus, Bus], decoded: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SessionStart's status and a session's origin count the unread within a bounded walk: a crowd's
    traffic is not walked whole, and a count cut short says "or more" (issue 16)."""
    monkeypatch.setattr("gitbus.inbox_walk.UNREAD_COUNT_MAX", 10, raising=False)
    monkeypatch.setattr("gitbus.status.UNREAD_COUNT_MAX", 10, raising=False)
    flood_behind(trio, 200)
    web = trio[1]
    inbox = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    decoded[0] = 0
    assert inbox.count_unread() == (0, True)  # 200 of others' above; the walk stopped before mine
    assert decoded[0] <= 4 * 11 + 4
    st = web.status()
    assert (st.unread, st.unread_partial) == (0, True) and count_text(0, True) == "0+"
    decoded[0] = 0
    inbox.session_origin(backlog=5)
    assert decoded[0] <= 4 * 6 + 4


def test_a_new_session_does_not_show_again_what_an_earlier_session_showed(
    trio: tuple[Bus, Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session past the hook window shows the newest and remembers them by id (the agent's cursor
    stays behind the rest); a session started later, once the rest were read, starts at that
    cursor and must skip what the first one showed: each message once per agent (issue 16)."""
    monkeypatch.setattr("gitbus.inbox.HOOK_WINDOW", 10, raising=False)
    api, web, _ = trio
    web.inbox(mark_read=True)
    inbox = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    s1, _ = inbox.start("s1", None)
    for i in range(25):
        api.ask(f"q{i}", to="web-1")
    tips = {r: str(t) for r, t in inbox.tips().items()}
    told1, _ = inbox.tell("s1", s1, tips)
    assert told1.shown
    for _ in range(10):
        if len(inbox.unread()[0]) <= 5:
            break
        inbox.read_page(True, 5)
    s2, _ = inbox.start("s2", None)
    told2, _ = inbox.tell("s2", s2, tips)
    assert not set(told1.shown) & set(told2.shown)


def _page_through(inbox: Inbox, limit: int, pages_max: int = 40) -> tuple[list[str], int, list[str | None]]:
    """Follow the tokens from the first page with --mark-read: (ids shown, pages, tokens seen)."""
    got: list[str] = []
    tokens: list[str | None] = []
    token: str | None = None
    for n in range(1, pages_max + 1):
        page = inbox.read_page(True, limit, before=token)
        got += [m.id for m in page.messages]
        tokens.append(page.next)
        if page.next is None or page.next == token:
            return got, n, tokens
        token = page.next
    return got, pages_max, tokens


def test_a_hook_call_between_pages_makes_no_page_show_again_what_was_read(
    trio: tuple[Bus, Bus, Bus], decoded: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session level with the agent moves its cursor on a quiet chain past where the pages' walk
    stood there: the pages must not then walk that chain to its root and show what was read long ago."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 10, raising=False)
    api, web, db = trio
    old = [db.discover(f"old finding {i}").id for i in range(30)]
    inbox = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    _page_through(inbox, 1000)
    assert inbox.unread()[0] == []
    session, _ = inbox.start("s1", None)
    mine = [api.ask(f"q{i} for web", to="web-1").id for i in range(3)]
    for i in range(200):
        api.ask(f"chat {i}", to="db-1")
    first = inbox.read_page(True, 5)
    assert first.next is not None
    new = db.discover("new finding").id  # the quiet chain moves; the hook call shows it
    told, _ = inbox.tell("s1", session, {r: str(t) for r, t in inbox.tips().items()})
    got = [m.id for m in first.messages] + walk_pages(inbox, first.next, decoded, 40)
    assert not set(old) & set(got), "pages showed messages read long before"
    assert set(mine) <= set(got) | set(told.shown) and new in set(got) | set(told.shown)
    assert inbox.unread()[0] == []


def crowd_behind(worktrees: list[Path], bus_for: BusFor, peers: int, rounds: int) -> tuple[Inbox, list[str]]:
    """web-1 has read everything; then db-1 asks it three questions, and `peers` other agents each
    post `rounds` messages to db-1 on top: web-1's inbox, and the ids of its three unread."""
    web, db = bus_for(worktrees[1], "web-1"), bus_for(worktrees[2], "db-1")
    crowd = [bus_for(worktrees[0], f"peer-{i}") for i in range(peers)]
    inbox = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    _page_through(inbox, 1000)
    mine = [db.ask(f"q{i} for web", to="web-1").id for i in range(3)]
    for r in range(rounds):
        for peer in crowd:
            peer.ask(f"chat {r}", to="db-1")
    return inbox, mine


def test_pages_go_on_past_a_crowd_of_chains_each_moved_once(
    worktrees: list[Path], bus_for: BusFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chain a page walked is where the next page goes on: with more chains moved than one
    page's walk may read, the pages must still make progress and reach what lies behind."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 2, raising=False)
    monkeypatch.setattr("gitbus.inbox_walk.WALK_MAX", 2, raising=False)
    inbox, mine = crowd_behind(worktrees, bus_for, 12, 3)
    got, pages, tokens = _page_through(inbox, 1)
    assert tokens[-1] is None, f"the pages stalled after {pages}: {tokens[-3:]}"
    assert sorted(got) == sorted(mine)


@pytest.mark.parametrize(
    "damage",
    [
        ("moved", "../../etc/passwd"),
        ("moved", "abc"),
        ("moved", "z" * 40),
        ("boundary", "12"),
        ("boundary", [True, False]),
        ("boundary", [float("inf"), 0]),
        ("clean", "false"),
        ("origin_tip", "not-hex"),
        ("nested", None),
    ],
    ids=lambda d: f"{d[0]}={str(d[1])[:10]}",
)
def test_a_damaged_page_store_is_an_unknown_page_never_a_moved_cursor(
    trio: tuple[Bus, Bus, Bus], monkeypatch: pytest.MonkeyPatch, damage: tuple[str, object]
) -> None:
    from gitbus.errors import GitbusError

    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 10, raising=False)
    mine = flood_behind(trio, 200)
    inbox = Inbox(Repository.open(trio[1].repo.root), AgentName("web-1"))
    token = inbox.read_page(False, 5).next
    assert token is not None
    f = state.pages(inbox.repo.common_dir, "web-1")
    store = json.loads(f.read_text())
    entry = store["pages"][token]
    what, value = damage
    if what == "moved":
        entry["moved"] = {r: value for r in (entry["moved"] or {"refs/bus/agents/api-1": ""})}
    elif what == "origin_tip":
        store["origins"][entry["origin"]] = {r: value for r in store["origins"][entry["origin"]]}
    elif what == "nested":
        f.write_text("[" * 100_000 + "]" * 100_000)
    else:
        entry[what] = value
    if what != "nested":
        f.write_text(json.dumps(store))
    with pytest.raises(GitbusError, match="gitbus inbox") as refused:
        inbox.read_page(True, 5, before=token)
    assert "\n" not in str(refused.value)
    assert set(mine) <= {m.id for m in inbox.unread()[0]}, "unread messages were lost"


def test_the_last_page_moves_the_cursor_without_an_ancestry_walk_per_chain(
    worktrees: list[Path], bus_for: BusFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the cursor has not moved since the first page, the first page's tips are known to be
    ahead of it: asking git (a walk of each chain's backlog) cost most of a flood's last page."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 2, raising=False)
    inbox, mine = crowd_behind(worktrees, bus_for, 6, 4)
    asked: list[tuple[str, str]] = []
    real = inbox.repo.is_ancestor

    def counting(a: str, b: str) -> bool:
        asked.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(inbox.repo, "is_ancestor", counting)
    got, _, tokens = _page_through(inbox, 1)
    assert tokens[-1] is None and sorted(got) == sorted(mine)
    assert asked == [] and inbox.unread()[0] == []


def test_two_reads_marking_at_once_never_list_one_message_twice(
    trio: tuple[Bus, Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `gitbus inbox --mark-read` of one agent at once (two terminals, two tools): what one
    listed and marked, the other must not list again; each goes on from what the other left."""
    _, web, db = trio
    web.inbox(mark_read=True)
    mine = [db.ask(f"q{i} for web", to="web-1").id for i in range(4)]
    a = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    b = Inbox(Repository.open(web.repo.root), AgentName("web-1"))
    other: list[str] = []
    real = Inbox._scan

    def racing(self: Inbox, *args: object, **kw: object) -> object:
        out = real(self, *args, **kw)  # type: ignore[arg-type]
        if self is a and not other:  # b reads and marks while a is between its read and its mark
            other.extend(m.id for m in b.read_page(True, 2).messages)
        return out

    monkeypatch.setattr(Inbox, "_scan", racing)
    first = [m.id for m in a.read_page(True, 2).messages]
    assert other and not set(first) & set(other), "both reads listed the same messages"
    rest = [m.id for m in a.read_page(True, 10).messages]
    assert sorted(first + other + rest) == sorted(mine)
