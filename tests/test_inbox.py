"""`gitbus.inbox`: who has been told what (an agent's cursor, the ids its sessions were shown).

How hook sessions and the agent's own reads stay level is driven through the hook handler in
test_hooks.py; these read the inbox through the library, as `gitbus inbox` and MCP do.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.git import Repository
from gitbus.ids import AgentName
from gitbus.inbox import Inbox, count_text

from .conftest import git

BusFor = Callable[[Path, str], Bus]


@pytest.fixture
def trio(worktrees: list[Path], bus_for: BusFor) -> tuple[Bus, Bus, Bus]:
    return bus_for(worktrees[0], "api-1"), bus_for(worktrees[1], "web-1"), bus_for(worktrees[2], "db-1")


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
    monkeypatch.setattr("gitbus.inbox.INBOX_WINDOW", 10, raising=False)
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
