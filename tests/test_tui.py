"""`gitbus tui`, driven for real (`gitbus log --follow` is tested with the CLI, in test_cli.py).

The app runs under Textual's pilot at 80x24 against real repositories and worktrees; agents post
through the library (or, for live updates, from another process), and the operator posts through the
keyboard. What the screen shows is read back from `App.export_screenshot()`. Every wait is bounded.
The main screens are compared with text snapshots in fixtures/tui/, made on a fake clock with
counted message ids; after a deliberate change, look at the diff and rerun with
GITBUS_UPDATE_SNAPSHOTS=1, which also rewrites the screenshot docs/tui.svg.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual import events
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import Static

from gitbus import settings
from gitbus.bus import Bus
from gitbus.claims import SKEW_MARGIN_MS
from gitbus.clock import FakeClock
from gitbus.ids import EVERYONE
from gitbus.message import Kind, Message, encode
from gitbus.render import KIND_STYLE
from gitbus.tui import (
    WINDOW,
    AgentsTable,
    ClaimsTable,
    ComposeScreen,
    FeedTable,
    GitbusApp,
    ThreadScreen,
    age,
)

WAIT = 10.0
SIZE = (80, 24)
Scenario = Callable[[Pilot[None], GitbusApp], Awaitable[None]]
_SEGMENT = re.compile(r'<text[^>]* x="([\d.]+)"[^>]*clip-path="url\(#[\w-]+-line-(\d+)\)">([^<]*)</text>')


# -- driving the app ------------------------------------------------------------------------------


def drive(app: GitbusApp, scenario: Scenario, size: tuple[int, int] = SIZE, notify: bool = False) -> None:
    """Run `scenario` against the app under the pilot (notifications shown only when asked: a toast
    would cover what other tests read)."""

    async def main() -> None:
        async with app.run_test(size=size, notifications=notify) as pilot:
            await settle(pilot, app)
            await scenario(pilot, app)

    asyncio.run(main())


async def wait_until(pilot: Pilot[None], what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}")
        await pilot.pause(0.02)


async def settle(pilot: Pilot[None], app: GitbusApp) -> None:
    """Until no load is running or due and every worker (thread view loads) is done."""
    await pilot.pause()
    await wait_until(pilot, "the bus to load", lambda: not app.busy and not list(app.workers))
    await pilot.pause()


CLEAR = ("ctrl+a", "ctrl+k")  # empty a prefilled field


async def paste(pilot: Pilot[None], text: str) -> None:
    """Paste `text` into the focused field, as a terminal does (the pilot types ~60 ms a key)."""
    assert pilot.app.focused is not None
    pilot.app.focused.post_message(events.Paste(text))
    await pilot.pause()


async def form(pilot: Pilot[None], app: GitbusApp, key: str, *answers: str | tuple[str, ...]) -> None:
    """Open a compose form with `key` and fill it: a string is pasted, a tuple is pressed as keys;
    enter after each field moves on, and after the last one posts."""
    await pilot.press(key)
    await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
    for answer in answers:
        if isinstance(answer, str):
            await paste(pilot, answer)
        else:
            await pilot.press(*answer)
        await pilot.press("enter")
    await wait_until(pilot, "the form to post", lambda: not isinstance(app.screen, ComposeScreen))
    await settle(pilot, app)


def screen(app: GitbusApp) -> list[str]:
    """The screen as lines of text, rebuilt from the SVG screenshot (12.2 px a column)."""
    width, height = app.size
    grid = [[" "] * width for _ in range(height)]
    for x, line, chunk in _SEGMENT.findall(app.export_screenshot()):
        col = round(float(x) / 12.2)
        for i, ch in enumerate(html.unescape(chunk).replace("\xa0", " ")):
            if col + i < width:
                grid[int(line)][col + i] = ch
    return ["".join(row).rstrip() for row in grid]


def shown(app: GitbusApp) -> str:
    return "\n".join(screen(app))


def detail(app: GitbusApp) -> str:
    """The detail pane: the lines between its top border and the footer."""
    lines = screen(app)
    top = max(i for i, line in enumerate(lines) if line.startswith("───"))
    return "\n".join(lines[top + 1 : -1])


async def select(
    pilot: Pilot[None], app: GitbusApp, table_type: type[FeedTable | ClaimsTable | AgentsTable], key: str
) -> None:
    """Put the cursor on the row of `key` (as the arrow keys would), and let the panes follow."""
    table = app.home.query_one(table_type)
    table.move_cursor(row=table.keys.index(key))
    await pilot.pause()


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def team(worktrees: list[Path], bus_for: Callable[[Path, str], Bus]) -> dict[str, Bus]:
    """Two agents in their own worktrees; the operator's app runs in the main checkout."""
    return {"api-1": bus_for(worktrees[1], "api-1"), "web-1": bus_for(worktrees[2], "web-1")}


@pytest.fixture
def app(worktrees: list[Path], team: dict[str, Bus], clock: FakeClock) -> GitbusApp:
    return GitbusApp(worktrees[0], clock=clock)


# -- the screens ----------------------------------------------------------------------------------


def test_the_feed_shows_type_sender_paths_age_and_state_at_80x24(
    app: GitbusApp, team: dict[str, Bus], clock: FakeClock
) -> None:
    api, web = team["api-1"], team["web-1"]
    api.discover("the db config lives in config/db.yaml", ["config/db.yaml"])
    web.ask("who owns the handlers?", to="api-1", paths=["internal/api/"])
    api.request("please review the schema", paths=["config/"])
    clock.advance(5 * 60_000)

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        lines = screen(app)
        assert len(lines) == 24
        assert "operator" in lines[0] and "1 open Qs" in lines[0] and "1 open reqs" in lines[0]
        assert "1 Feed" in lines[1] and "2 Claims" in lines[1] and "3 Agents" in lines[1]
        text = "\n".join(lines)
        assert re.search(r"5m\s+request\s+api-1\s+config/\s+\[open\] please review", text)
        assert re.search(r"5m\s+question\s+web-1→api-1\s+internal/api/\s+\[unanswered\] who owns", text)
        assert re.search(r"5m\s+discovery\s+api-1\s+config/db.yaml\s+the db config", text)
        footer = lines[-1]
        for key in ("Thread", "Take", "Discover", "Ask", "Claim", "Filter", "Quit"):
            assert key in footer, footer
        assert "Answer" in footer  # shown, dimmed: the selected row is a request, not a question

    drive(app, scenario)


def test_the_status_line_counts_what_was_skipped_as_bad_data(
    worktrees: list[Path], team: dict[str, Bus], clock: FakeClock
) -> None:
    repo = worktrees[0]
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=repo, input=b"not a commit\n", capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    subprocess.run(["git", "update-ref", "refs/bus/agents/mallory", blob], cwd=repo, check=True)
    app = GitbusApp(repo, clock=clock)

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        assert "1 skipped" in screen(app)[0], screen(app)[0]

    drive(app, scenario)


def test_the_status_line_and_claims_pane_say_the_claims_are_unknown_when_a_ledger_is_damaged(
    worktrees: list[Path], team: dict[str, Bus], clock: FakeClock
) -> None:
    team["api-1"].claim(["internal/api/"])
    common = team["api-1"].repo.common_dir
    shard = next(p for p in (common / "refs" / "bus" / "ledgers").iterdir() if p.name != "main")
    shard.write_bytes(b"")
    app = GitbusApp(worktrees[0], clock=clock)

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        assert "claims unknown" in screen(app)[0], shown(app)
        await pilot.press("2")
        assert "no claims" not in shown(app) and "cannot be read" in shown(app), shown(app)

    drive(app, scenario)


def test_keys_move_through_the_feed_and_switch_panes(app: GitbusApp, team: dict[str, Bus]) -> None:
    team["api-1"].discover("first finding")
    team["web-1"].discover("second finding")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        feed = app.query_one(FeedTable)
        assert app.focused is feed and "second finding" in detail(app)
        await pilot.press("down")
        assert app.selected_message() is not None
        assert app.selected_message().text == "first finding"  # type: ignore[union-attr]
        assert "first finding" in detail(app)  # the detail pane follows the cursor
        await pilot.press("2")
        assert app.focused is app.query_one(ClaimsTable) and "no claims" in shown(app)
        await pilot.press("3")
        assert app.focused is app.query_one(AgentsTable)
        assert re.search(r"api-1\s+0s\s+0\s+0\s+discovery: first finding", shown(app))
        await pilot.press("1")
        assert app.focused is feed and app.selected_message().text == "first finding"  # type: ignore[union-attr]

    drive(app, scenario)


def test_the_filter_narrows_by_type_agent_path_and_text(app: GitbusApp, team: dict[str, Bus]) -> None:
    api, web = team["api-1"], team["web-1"]
    api.discover("retries are capped at 3", ["internal/api/handler.go"])
    web.discover("the css is generated")
    q = web.ask("is the cap configurable?", to="api-1")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        async def apply(text: str) -> list[str]:
            await pilot.press("slash")
            await paste(pilot, text)
            await pilot.press("enter")
            await settle(pilot, app)
            return [m.text for m in app.snap.feed]

        assert await apply("type:question") == [q.text]
        assert "1 match" in screen(app)[0] and "type:question" in screen(app)[3]
        await pilot.press("escape")
        await settle(pilot, app)
        assert len(app.snap.feed) == 5  # two joins and three posts
        assert await apply("a:web-1") == [
            "is the cap configurable?",
            "the css is generated",
            "web-1 joined from wt-c",
        ]
        await pilot.press("escape")
        assert await apply("p:internal/") == ["retries are capped at 3"]
        await pilot.press("escape")
        assert await apply("t:discovery,question cap") == [
            "is the cap configurable?",
            "retries are capped at 3",
        ]
        await pilot.press("escape")
        await pilot.press("slash", *"t:nope", "enter")
        await settle(pilot, app)
        assert not app.query_filter and len(app.snap.feed) == 5  # refused, with a notification:
        await wait_until(pilot, "the notification", lambda: "'nope' is not a message type;" in shown(app))

    drive(app, scenario, notify=True)


def test_enter_on_an_agent_or_a_claim_opens_its_feed(app: GitbusApp, team: dict[str, Bus]) -> None:
    team["api-1"].claim(["internal/api/"], reason="splitting handlers")
    team["web-1"].discover("unrelated")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await pilot.press("3")
        await select(pilot, app, AgentsTable, "web-1")
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.query_filter.sender == "web-1" and {m.sender for m in app.snap.feed} == {"web-1"}
        await pilot.press("2", "enter")
        await settle(pilot, app)
        assert app.query_filter.path == "internal/api/"
        assert [m.kind for m in app.snap.feed] == [Kind.CLAIM]

    drive(app, scenario)


# -- composing as the operator --------------------------------------------------------------------


def test_the_operator_posts_a_discovery_and_questions_to_one_agent_or_all(
    app: GitbusApp, team: dict[str, Bus]
) -> None:
    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await form(pilot, app, "d", "freeze at 5", "config/")
        await form(pilot, app, "question_mark", (*CLEAR, *"api-1"), "done by 4?", "")
        await form(pilot, app, "question_mark", "", "on call?", "")

    drive(app, scenario)
    posted = team["api-1"].log(3, sender="operator")
    assert [(m.kind, m.to, m.text, m.paths) for m in reversed(posted)] == [
        (Kind.DISCOVERY, EVERYONE, "freeze at 5", ("config/",)),
        (Kind.QUESTION, "api-1", "done by 4?", ()),
        (Kind.QUESTION, EVERYONE, "on call?", ()),
    ]


def test_answering_a_question_shows_in_its_thread(app: GitbusApp, team: dict[str, Bus]) -> None:
    q = team["web-1"].ask("which port does the api use?")
    team["api-1"].discover("later noise")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await select(pilot, app, FeedTable, q.id)
        await form(pilot, app, "a", "8080")
        assert "[1 answer]" in shown(app)
        await select(pilot, app, FeedTable, q.id)
        await pilot.press("enter")
        await wait_until(pilot, "the thread", lambda: isinstance(app.screen, ThreadScreen))
        await settle(pilot, app)
        text = shown(app)
        assert "replies: 1, answers: 1" in text
        assert "which port does the api use?" in text and "\n█ 8080" in text
        assert re.search(r"answer [0-9a-f]{8} from operator, 0s ago", text)
        await pilot.press("escape")
        assert not isinstance(app.screen, ThreadScreen)
        await pilot.press("enter", "escape")  # closed before its thread is read: nothing breaks
        await settle(pilot, app)
        assert not isinstance(app.screen, ThreadScreen)

    drive(app, scenario)
    (answer,) = team["web-1"].replies(q).messages
    assert answer.sender == "operator" and answer.to == EVERYONE  # a question to all is answered to all


def test_a_form_keeps_the_error_and_stays_open(app: GitbusApp, team: dict[str, Bus]) -> None:
    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await pilot.press("question_mark")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press(*CLEAR, *"nobody", "enter", "h", "i", "enter", "enter")
        await wait_until(pilot, "the error", lambda: "No agent named 'nobody'" in shown(app))
        assert isinstance(app.screen, ComposeScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, ComposeScreen)

    drive(app, scenario)
    assert team["api-1"].log(5, sender="operator") == []


def test_claim_release_and_an_audited_force_release(app: GitbusApp, team: dict[str, Bus]) -> None:
    team["api-1"].claim(["internal/api/"], reason="splitting handlers")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await form(pilot, app, "c", "config/ README.md", "10m", "freeze")
        assert {(c.path, c.owner) for c in app.snap.claims} == {
            ("config/", "operator"),
            ("README.md", "operator"),
            ("internal/api/", "api-1"),
        }
        await pilot.press("2")
        assert re.search(r"config/\s+operator\s+10:00\s+freeze", shown(app))
        await select(pilot, app, ClaimsTable, "config/")
        await form(pilot, app, "r", "", "done")
        assert "config/" not in [c.path for c in app.snap.claims]

        await select(pilot, app, ClaimsTable, "internal/api/")
        await pilot.press("f")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        assert "held by api-1" in shown(app)
        await pilot.press("enter", "enter")  # no reason: refused, recorded nowhere
        await wait_until(pilot, "the refusal", lambda: "needs a reason" in shown(app))
        await pilot.press(*"stuck", "enter")
        await wait_until(pilot, "the form to post", lambda: not isinstance(app.screen, ComposeScreen))
        await settle(pilot, app)
        assert [c.path for c in app.snap.claims] == ["README.md"]
        await pilot.press("1")
        app.query_one(FeedTable).move_cursor(row=0)
        await pilot.pause()
        assert "[forced api-1 internal/api/]" in detail(app) and "stuck" in detail(app)

    drive(app, scenario)
    forced = team["api-1"].log(1, kinds=["release"])[0]
    assert forced.sender == "operator" and forced.get("forced") == "api-1 internal/api/"


def form_title(app: GitbusApp) -> str:
    return str(app.screen.query_one("#form-title", Static).content)


def form_error(app: GitbusApp) -> str:
    """The refusal shown in the open form, as one line of text."""
    return " ".join(str(app.screen.query_one("#form-error", Static).content).split())


def test_q_quits_as_people_expect(app: GitbusApp) -> None:
    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await pilot.press("q")
        await wait_until(pilot, "the app to quit", lambda: app.return_code is not None)
        assert not isinstance(app.screen, ComposeScreen)

    drive(app, scenario)


def test_each_form_opens_on_its_own_key_and_q_on_none(app: GitbusApp, team: dict[str, Bus]) -> None:
    team["api-1"].claim(["internal/api/"], reason="splitting handlers")
    opened: dict[str, str] = {}

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await form(pilot, app, "c", "config/", "", "mine")
        await pilot.press("2")
        for path, key in (("config/", "r"), ("internal/api/", "f")):
            await select(pilot, app, ClaimsTable, path)
            await pilot.press(key)
            await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
            opened[key] = form_title(app)
            await pilot.press("escape")
        for key in ("d", "question_mark", "c"):
            await pilot.press(key)
            await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
            opened[key] = form_title(app)
            await pilot.press("escape")

    drive(app, scenario)
    assert [opened[k].split(",")[0].split(" held")[0] for k in ("d", "question_mark", "c", "r", "f")] == [
        "Discovery",
        "Question",
        "Claim",
        "Release",
        "Force-release",
    ]


def test_the_claims_pane_offers_release_on_your_claim_and_force_on_anothers(
    app: GitbusApp, team: dict[str, Bus]
) -> None:
    team["api-1"].claim(["internal/api/"], reason="splitting handlers")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await form(pilot, app, "c", "config/", "", "mine")
        await pilot.press("2")
        await select(pilot, app, ClaimsTable, "internal/api/")
        await wait_until(pilot, "the footer", lambda: "f Force" in screen(app)[-1])
        assert "Release" not in screen(app)[-1], screen(app)[-1]
        assert not app.check_action("release", ())
        await pilot.press("r")  # not offered here, so nothing opens
        await pilot.pause()
        assert not isinstance(app.screen, ComposeScreen)
        await select(pilot, app, ClaimsTable, "config/")
        await wait_until(pilot, "the footer", lambda: "r Release" in screen(app)[-1])
        assert "Force" not in screen(app)[-1], screen(app)[-1]
        assert not app.check_action("force_release", ())

    drive(app, scenario)


def test_a_refusal_in_a_form_names_the_key_not_cli_flags(app: GitbusApp, team: dict[str, Bus]) -> None:
    team["api-1"].claim(["internal/api/"], reason="splitting handlers")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await form(pilot, app, "c", "config/", "", "mine")
        await pilot.press("2")
        await select(pilot, app, ClaimsTable, "config/")
        await pilot.press("r")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press(*CLEAR)
        await paste(pilot, "internal/api/")
        await pilot.press("enter", "enter")
        await wait_until(pilot, "the refusal", lambda: "only api-1 can release it" in shown(app))
        refusal = form_error(app)
        assert "press f" in refusal and "--force" not in refusal and "--reason" not in refusal, refusal
        await pilot.press("escape")
        await select(pilot, app, ClaimsTable, "internal/api/")
        await pilot.press("f")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press("enter", "enter")
        await wait_until(pilot, "the refusal", lambda: "needs a reason" in shown(app))
        assert "--reason" not in shown(app)

    async def conflict(pilot: Pilot[None], app: GitbusApp) -> None:
        await pilot.press("c")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        await paste(pilot, "internal/api/handler.go")
        await pilot.press("enter", "enter", "enter")
        await wait_until(pilot, "the refusal", lambda: "is refused" in shown(app))
        text = form_error(app)
        assert "gitbus ask" not in text and "Press ? to ask them (to: api-1)." in text, text

    drive(app, scenario)
    drive(GitbusApp(app.root, clock=app.clock), conflict)
    assert {(c.owner, c.path) for c in team["api-1"].claims()} == {
        ("operator", "config/"),
        ("api-1", "internal/api/"),
    }


def test_taking_a_request_shows_who_took_it(app: GitbusApp, team: dict[str, Bus]) -> None:
    req = team["api-1"].request("please review the schema")
    team["web-1"].discover("noise after it")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await select(pilot, app, FeedTable, req.id)
        assert "[open] please review" in shown(app)
        await pilot.press("t")
        await settle(pilot, app)
        await select(pilot, app, FeedTable, req.id)
        assert "[taken by operator]" in detail(app) and "[taken by operator] please" in shown(app)
        assert app.check_action("take", ()) is None  # no second take offered

    drive(app, scenario)


def test_ages_fit_the_five_cells_of_their_column() -> None:
    minutes, hours = 60_000, 3_600_000
    ages = [0, 45_000, 12 * minutes, 3 * hours + 2 * minutes, 13 * hours, 50 * hours, -5_000]
    assert [age(ms) for ms in ages] == ["0s", "45s", "12m", "3h", "13h", "2d", "0s"]


# -- claims and agents ----------------------------------------------------------------------------


def test_leases_tick_down_expire_and_takeovers_show(
    app: GitbusApp, team: dict[str, Bus], clock: FakeClock
) -> None:
    api, web = team["api-1"], team["web-1"]
    api.claim(["internal/api/"], ttl_ms=2_000, reason="quick fix")
    api.claim(["config/db.yaml"], ttl_ms=10 * 60_000, reason="schema")
    clock.advance(3_000 + SKEW_MARGIN_MS)  # expired, and past the margin for clock skew
    web.claim(["internal/api/handler.go"], ttl_ms=5 * 60_000, reason="taking over")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await pilot.press("2")
        text = shown(app)
        assert re.search(r"config/db.yaml\s+api-1\s+9:27\s+schema", text)
        assert re.search(r"internal/api/handler.go\s+web-1\s+5:00\s+took over api-1", text)
        clock.advance(61_000)
        await wait_until(pilot, "the countdown to tick", lambda: "8:26" in shown(app))
        clock.advance(10 * 60_000)
        await wait_until(pilot, "the leases to expire", lambda: "0 claims, 2 expired" in screen(app)[0])
        assert re.search(r"config/db.yaml\s+api-1\s+expired", shown(app))
        assert re.search(r"internal/api/handler.go\s+web-1\s+expired", shown(app))
        await pilot.press("3")
        assert re.search(r"api-1\s+\S+\s+0\s+0", shown(app))  # holds nothing now, without a reload

    drive(app, scenario)


def test_agents_show_activity_claims_and_questions_waiting_for_them(
    app: GitbusApp, team: dict[str, Bus], clock: FakeClock
) -> None:
    team["api-1"].claim(["internal/api/"])
    clock.advance(120_000)
    team["web-1"].ask("api-1: is the handler split done?", to="api-1")
    answered = team["web-1"].ask("api-1: and the tests?", to="api-1")
    team["api-1"].answer(answered.id, "yes")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        await pilot.press("3")
        await select(pilot, app, AgentsTable, "api-1")
        await pilot.pause()
        text = shown(app)
        assert re.search(r"api-1\s+0s\s+1\s+1\s+answer: yes", text)
        assert re.search(r"web-1\s+0s\s+0\s+0\s+question", text)
        assert "api-1 holds: internal/api/" in text
        assert "? from web-1, 0s ago: api-1: is the handler split done?" in text
        await pilot.press("question_mark")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        assert app.screen.query_one("#f-to").value == "api-1"  # type: ignore[attr-defined]

    drive(app, scenario)


def test_the_operator_name_comes_from_the_settings(worktrees: list[Path], team: dict[str, Bus]) -> None:
    settings.save(team["api-1"].repo.common_dir, "operator", "lead")
    app = GitbusApp(worktrees[0])

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        assert "lead" in screen(app)[0]
        await form(pilot, app, "d", "hi", "")

    drive(app, scenario)
    assert team["api-1"].log(1)[0].sender == "lead"


# -- live updates and size ------------------------------------------------------------------------


def test_a_post_from_another_process_appears_while_the_app_runs(
    worktrees: list[Path], team: dict[str, Bus]
) -> None:
    app = GitbusApp(worktrees[0])

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        before = len(app.snap.feed)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gitbus",
            "-C",
            str(worktrees[2]),
            "-a",
            "other",
            "discover",
            "live from afar",
        )
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        await wait_until(pilot, "the post to show", lambda: "live from afar" in shown(app))
        assert len(app.snap.feed) == before + 2  # its join and its discovery
        await pilot.press("3")
        assert "other" in app.query_one(AgentsTable).keys

    drive(app, scenario)


def _fast_import(root: Path, n: int) -> None:
    """`n` messages on four chains in seconds, written as the library writes them (bench/synth.py)."""
    names = [f"agent-{k}" for k in range(4)]
    t0 = time.time_ns() // 1_000_000 - n * 1000
    parts: list[bytes] = []
    for i in range(n):
        who, kind = names[i % 4], (Kind.QUESTION if i % 10 == 3 else Kind.DISCOVERY)
        msg = Message(f"{i:016x}", kind, who, EVERYONE, f"message {i}", t0 + i * 1000)  # type: ignore[arg-type]
        data, sig = encode(msg).encode(), f"{who} <{who}@gitbus.invalid> {msg.time // 1000} +0000"
        head = (
            f"commit refs/bus/agents/{who}\nmark :{i + 1}\nauthor {sig}\ncommitter {sig}\ndata {len(data)}\n"
        )
        parts += [head.encode(), data, f"from :{i - 3}\n\n".encode() if i >= 4 else b"\n"]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(parts), check=True)


def test_the_first_paint_of_a_long_bus_loads_only_the_recent_window(repo: Path) -> None:
    _fast_import(repo, 10_000)
    started = time.process_time()  # CPU, not wall time: a busy shared machine does not fail this
    app = GitbusApp(repo)

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        painted = time.process_time() - started
        assert app.query_one(FeedTable).row_count == WINDOW and len(app.snap.window) == WINDOW
        assert "message 9999" in shown(app)
        # about 0.3 s here; bench/tui.py measures the whole process against an empty bus
        assert painted < 2.0, painted

    drive(app, scenario)


def test_the_screen_reflows_when_the_terminal_is_resized(app: GitbusApp, team: dict[str, Bus]) -> None:
    team["api-1"].discover("a rather long finding about the retry policy of the internal api handlers")

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        assert "retry policy of the internal api handlers" not in shown(app).replace(detail(app), "")
        await pilot.resize_terminal(140, 30)
        await pilot.pause()
        assert "a rather long finding about the retry policy of the internal api handlers" in shown(app)
        assert len(screen(app)) == 30

    drive(app, scenario)


# -- snapshots of the main screens ----------------------------------------------------------------

SNAPSHOTS = Path(__file__).resolve().parent.parent / "fixtures" / "tui"
DOCS = Path(__file__).resolve().parent.parent / "docs"
UPDATE = bool(os.environ.get("GITBUS_UPDATE_SNAPSHOTS"))  # rewrite fixtures/tui/ and docs/tui.svg


@pytest.fixture
def scene(
    worktrees: list[Path], team: dict[str, Bus], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> GitbusApp:
    """A demo-like bus with every state the screens show, made the same on every run: the fake clock,
    message ids from a counter, UTC for the claim times."""
    ids = iter(range(1, 256))
    monkeypatch.setattr("gitbus.bus.new_message_id", lambda: f"{next(ids):02x}" * 8)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    api, web = team["api-1"], team["web-1"]
    api.claim(["internal/api/"], reason="splitting handlers")
    web.claim(["config/db.yaml"], ttl_ms=2 * 60_000, reason="bump the pool size")
    web.claim(["web/"], ttl_ms=60_000, reason="CORS middleware")
    api.discover("handlers now live in internal/api/v2", ["internal/api/"])
    q = web.ask("does v2 keep the old routes?", to="api-1", paths=["internal/api/"])
    clock.advance(90_000)
    api.answer(q.id, "yes, until the next release")
    web.request("please bump the schema version", paths=["config/db.yaml"])
    clock.advance(3 * 60_000)
    api.claim(["config/db.yaml"], ttl_ms=10 * 60_000, reason="schema v3")  # web-1's lease ran out
    web.ask("who owns config/ now?")
    clock.advance(45_000)
    return GitbusApp(worktrees[0], clock=clock)


def matches_snapshot(app: GitbusApp, name: str) -> None:
    """The screen as text against fixtures/tui/<name>.txt (GITBUS_UPDATE_SNAPSHOTS=1 rewrites it)."""
    got = "\n".join(screen(app)) + "\n"
    fixture = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        fixture.parent.mkdir(parents=True, exist_ok=True)
        fixture.write_text(got)
    assert got == fixture.read_text(), f"{name} changed; look, then rerun with GITBUS_UPDATE_SNAPSHOTS=1"


async def steady(pilot: Pilot[None], app: GitbusApp, name: str) -> None:
    """`matches_snapshot` once the tab underline has stopped sliding (it moves for a moment after
    a pane change, and a footer rebuild on the same frame can catch it halfway)."""
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
    matches_snapshot(app, name)


def test_snapshots_of_the_main_screens(scene: GitbusApp) -> None:
    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        question = next(m for m in app.snap.feed if m.text == "does v2 keep the old routes?")
        await select(pilot, app, FeedTable, question.id)
        await steady(pilot, app, "feed")
        if UPDATE:  # the screenshot in README.md and docs/tui.md
            app.save_screenshot("tui.svg", str(DOCS))
        await pilot.press("enter")
        await wait_until(pilot, "the thread", lambda: isinstance(app.screen, ThreadScreen))
        await settle(pilot, app)
        await steady(pilot, app, "thread")
        await pilot.press("escape", "2")
        await select(pilot, app, ClaimsTable, "config/db.yaml")
        await steady(pilot, app, "claims")
        await pilot.press("3")
        await select(pilot, app, AgentsTable, "api-1")
        await steady(pilot, app, "agents")
        await pilot.press("question_mark")
        await wait_until(pilot, "the form", lambda: isinstance(app.screen, ComposeScreen))
        await paste(pilot, "")
        await steady(pilot, app, "ask")
        await pilot.press("escape", "1", "slash")
        await paste(pilot, "type:question,answer")
        await pilot.press("enter")
        await settle(pilot, app)
        await steady(pilot, app, "filtered")

    drive(scene, scenario)


def test_each_type_has_its_colour_in_the_feed(scene: GitbusApp) -> None:
    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        table = app.home.query_one(FeedTable)
        kinds = {m.id: m.kind for m in app.snap.feed}
        assert table.row_count == len(kinds) == 11
        for row, key in enumerate(table.keys):
            cell = table.get_cell_at(Coordinate(row, 1))
            assert (cell.plain, str(cell.style)) == (kinds[key].value, KIND_STYLE[kinds[key]])
        assert len({str(style) for style in KIND_STYLE.values()}) >= 6  # the kinds tell apart at a glance

    drive(scene, scenario)


def test_a_subclass_of_the_app_in_another_folder_keeps_its_stylesheet(
    worktrees: list[Path], clock: FakeClock
) -> None:
    """Textual reads a relative `CSS_PATH` beside the subclass's own module: bench/tui.py's subclass
    (which times the first paint) found no stylesheet and never painted."""

    class Elsewhere(GitbusApp):
        pass

    async def scenario(pilot: Pilot[None], app: GitbusApp) -> None:
        assert "operator" in screen(app)[0]

    drive(Elsewhere(worktrees[0], clock=clock), scenario)
