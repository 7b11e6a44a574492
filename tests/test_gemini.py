"""gitbus with the real Gemini CLI (the version pinned in clients.json), against a mock model.

alice works in the main checkout (through the gitbus CLI, as any peer would); carol runs `gemini -p`
in worktree `wt-carol`, where `gitbus install gemini` wired in gitbus's hooks and MCP server
(`.gemini/settings.json`) and GEMINI.md. The model is `GeminiMock`, a loopback Gemini API: it follows
the test's script and records every request, which is what the model was given; the tests assert on
those bodies.

How Gemini CLI 0.61.0 puts hook output in front of the model (observed, and relied on here): a
SessionStart or BeforeAgent `additionalContext` is a text part of the user's turn, an AfterTool one
is appended to the tool's function response, all inside `<hook_context>`; a BeforeTool deny is the
tool's response ("Tool execution blocked: <reason>"); an AfterAgent deny runs the loop again with
the reason as the user's turn.

Outside CI the module is skipped when node/npm or the pinned client is missing (`.ci/install-clients`
installs it); under `CI` that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import realclient as rc
from .realclient import Reply, Request, say
from .vendorapis import (
    GeminiMock,
    GeminiRequest,
    Team,
    call,
    gemini_env,
    make_team,
    run_gemini,
    seen,
    told_once,
)

if not os.environ.get("CI") and (_why := rc.missing("gemini")):
    pytest.skip(f"real client gemini: {_why}", allow_module_level=True)  # one line; under CI, fail


@pytest.fixture(scope="module")
def gemini() -> rc.Client:
    return rc.require("gemini")


@pytest.fixture
def team(tmp_path: Path, gemini: rc.Client) -> Iterator[Team]:
    yield from make_team(tmp_path, ["alice", "carol"], {"carol": "gemini"})


def run(team: Team, gemini: rc.Client, api: GeminiMock, prompt: str = "Carry on with the task.") -> rc.Run:
    return run_gemini(gemini, team.worktrees["carol"], prompt, gemini_env(team.home, api), api)


def steps(*replies: Reply) -> rc.Script:
    return rc.once_per_step(dict(enumerate(replies)))


def requests(api: GeminiMock) -> list[GeminiRequest]:
    reqs = [r for r in api.main_requests() if isinstance(r, GeminiRequest)]
    assert reqs, f"gemini never called the model; errors: {api.errors}"
    return reqs


def test_session_start_tells_gemini_who_it_is_and_what_others_hold(team: Team, gemini: rc.Client) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    with GeminiMock(steps(call("run_shell_command", command="true"))) as api:
        run(team, gemini, api)
    first = requests(api)[0]
    [block] = [b for b in first.blocks() if "you are agent carol" in b.text]
    assert block.role == "user", block
    assert "alice holds internal/api/" in block.text and "splitting handlers" in block.text, block.text
    assert requests(api)[-1].received().count("you are agent carol") == 1, seen(api)
    assert "Coordinating with other agents (gitbus)" in first.received()  # GEMINI.md, read at start


def test_the_model_can_call_the_gitbus_mcp_tools(team: Team, gemini: rc.Client) -> None:
    with GeminiMock(steps(call("mcp_gitbus_status"))) as api:
        run(team, gemini, api)
    first, final = requests(api)[0], requests(api)[-1]
    assert "mcp_gitbus_status" in first.tool_names, first.tool_names
    [(name, result)] = final.responses()
    assert name == "mcp_gitbus_status" and "you are carol" in result, result


def test_a_discovery_posted_mid_turn_reaches_gemini_once_after_a_tool_call(
    team: Team, gemini: rc.Client
) -> None:
    news = "the cache lives in var/cache, keyed by content hash"
    posted: list[int] = []

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 2 and not posted:  # two tool calls made: alice posts before the third
            team.gitbus("alice", "discover", news)
            posted.append(req.n)
        return call("run_shell_command", command="true") if k < 4 else say("Done.")

    with GeminiMock(script) as api:
        run(team, gemini, api)
    assert posted, seen(api)
    hit = told_once(api, news)
    assert hit.n > posted[0] and hit.step() == 3, f"first shown at request {hit.n}, step {hit.step()}"
    [block] = hit.where(news)
    assert block.kind == "functionResponse" and f'alice reported: "{news}"' in block.text, block


def test_a_write_into_a_claimed_path_is_refused_naming_the_holder(team: Team, gemini: rc.Client) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    carol = team.worktrees["carol"]
    script = steps(
        call("write_file", file_path="internal/api/routes.go", content="package api\n"),
        call(
            "replace",
            file_path=str(carol / "internal/api/handler.go"),
            old_string="internal",
            new_string="INTERNAL",
            instruction="shout",
        ),
        call("write_file", file_path="docs/notes.md", content="notes\n"),
    )
    with GeminiMock(script) as api:
        run(team, gemini, api)
    (w, refused_write), (r, refused_replace), (w2, allowed) = requests(api)[-1].responses()
    assert (w, r, w2) == ("write_file", "replace", "write_file")
    for refused in (refused_write, refused_replace):
        assert "blocked" in refused and "alice holds internal/api/" in refused, refused
        assert "splitting handlers" in refused, refused
    assert not (carol / "internal/api/routes.go").exists()
    assert (carol / "internal/api/handler.go").read_text() == "internal/api/handler.go\n"
    assert (carol / "docs/notes.md").read_text() == "notes\n", allowed


def test_a_question_posted_as_the_turn_ends_is_told_once_after_it(team: Team, gemini: rc.Client) -> None:
    question = "where do the migrations run?"
    asked: list[int] = []

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 1 and not asked:  # the model is about to end its turn: alice asks first
            team.gitbus("alice", "ask", question, "--to", "carol")
            asked.append(req.n)
            return say("Done.")
        return call("run_shell_command", command="true") if k < 1 else say("Done, and noted.")

    with GeminiMock(script) as api:
        run(team, gemini, api)
    assert asked, seen(api)
    hit = told_once(api, question)
    assert hit.n > asked[0], "the question was not told after the turn's end"
    [block] = hit.where(question)
    assert "alice asked you" in block.text, block
