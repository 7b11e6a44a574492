"""`gitbus.board`: the one read model behind `gitbus status`, the context file and the TUI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus import board, context_view
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.ids import AgentName

BusFor = Callable[[Path, str], Bus]


@pytest.fixture
def trio(worktrees: list[Path], bus_for: BusFor) -> tuple[Bus, Bus, Bus]:
    return bus_for(worktrees[0], "api-1"), bus_for(worktrees[1], "web-1"), bus_for(worktrees[2], "db-1")


def test_a_question_is_open_until_answered_and_every_face_agrees(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock
) -> None:
    api, web, db = trio
    open_q = api.ask("who owns the router?", to="web-1")
    answered = api.ask("is the schema frozen?")
    db.answer(answered.id, "yes")
    b = board.read(web.repo, clock.now_ms(), 100)
    assert [q.id for q in b.open_questions()] == [open_q.id]
    assert [q.id for q in b.open_questions(to="web-1")] == [open_q.id] and b.open_questions(to="db-1") == []
    assert [q.id for q in web.status().open_questions] == [open_q.id]
    view = context_view.read_view(web.repo, clock.now_ms())
    assert view.board.open_questions() == b.open_questions()


def test_request_states_come_from_one_ledger_read(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api, web, db = trio
    taken, done, fresh = api.request("port a"), api.request("port b"), api.request("port c")
    web.take(taken.id)
    db.take(done.id)
    db.done(done.id, "ported")
    b = board.read(api.repo, clock.now_ms(), 100)
    state = b.request_state(taken.id)
    assert state is not None and state.taker == "web-1" and state.done_at is None
    assert b.request_state(fresh.id) is None
    assert [r.message.id for r in b.open_requests()] == [fresh.id, taken.id]
    assert [r.message.id for r in api.status().requests] == [fresh.id, taken.id]


def test_a_claim_taken_over_is_named_for_its_old_owner(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api, web, _ = trio
    api.claim(["src/a.py"], ttl_ms=1000)
    clock.advance(60_000)
    took = web.claim(["src/a.py"])
    b = board.read(api.repo, clock.now_ms(), 100)
    assert b.took_over(took.id) == ["api-1 src/a.py"]
    assert b.taken_from(AgentName("api-1")) == (("src/a.py", "web-1", took.time),)
    assert api.status().taken_over == b.taken_from(AgentName("api-1"))


def test_the_tui_and_the_context_file_read_no_ledger_themselves() -> None:
    """Request states and claims reach the TUI and the context file through the board only."""
    import ast

    root = Path(__file__).resolve().parent.parent / "gitbus"
    faces = [*root.glob("tui*.py"), *root.glob("tui/*.py"), *root.glob("context*.py")]
    banned = (
        *("gitbus.ledger", "gitbus.ledger_shards", "gitbus.ledger_state", "gitbus.ledger_cas"),
        *("gitbus.sync", "gitbus.delegation.state_of"),
    )  # a type is fine; a read is not
    for f in faces:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                bad = [n for n in names if any(n == b or n.startswith(b + ".") for b in banned)]
                assert not bad, f"{f.name} imports {bad}"
