"""gitbus with the real Codex CLI (the version pinned in clients.json), against a mock model.

alice works in the main checkout (through the gitbus CLI, as any peer would); bob runs `codex exec`
in worktree `wt-bob`, where `gitbus install codex` wired in gitbus's hooks, MCP server and
AGENTS.md. The model is `OpenAIMock`, a loopback Responses API: it follows the test's script and
records every request, which is what the model was given; the tests assert on those bodies.

How Codex 0.169.0 puts hook output in front of the model (observed, and relied on here): a
SessionStart, UserPromptSubmit or PostToolUse `additionalContext` is a developer message of its own;
a PreToolUse deny is the tool call's output, naming the hook's reason; a Stop `decision: block`
goes on with the turn, its reason given to the model.

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
    OpenAIMock,
    ResponsesRequest,
    Team,
    apply_patch,
    codex_env,
    make_team,
    run_codex,
    seen,
    shell,
    told_once,
)

if not os.environ.get("CI") and (_why := rc.missing("codex")):
    pytest.skip(f"real client codex: {_why}", allow_module_level=True)  # one line; under CI, fail


@pytest.fixture(scope="module")
def codex() -> rc.Client:
    return rc.require("codex")


@pytest.fixture
def team(tmp_path: Path, codex: rc.Client) -> Iterator[Team]:
    yield from make_team(tmp_path, ["alice", "bob"], {"bob": "codex"})


def run(team: Team, codex: rc.Client, api: OpenAIMock, prompt: str = "Carry on with the task.") -> rc.Run:
    env = codex_env(team.home, api, trusted=[team.worktrees["alice"]])
    return run_codex(codex, team.worktrees["bob"], prompt, env, api)


def steps(*replies: Reply) -> rc.Script:
    return rc.once_per_step(dict(enumerate(replies)))


def requests(api: OpenAIMock) -> list[ResponsesRequest]:
    reqs = [r for r in api.main_requests() if isinstance(r, ResponsesRequest)]
    assert reqs, f"codex never called the model; errors: {api.errors}"
    return reqs


def test_session_start_tells_codex_who_it_is_and_what_others_hold(team: Team, codex: rc.Client) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    with OpenAIMock(steps(shell("true"))) as api:
        run(team, codex, api)
    first = requests(api)[0]
    [block] = [b for b in first.blocks() if "you are agent bob" in b.text]
    assert block.role == "developer", block
    assert "alice holds internal/api/" in block.text and "splitting handlers" in block.text, block.text
    assert requests(api)[-1].received().count("you are agent bob") == 1, seen(api)
    assert "Coordinating with other agents (gitbus)" in first.received()  # AGENTS.md, read at start


def test_the_gitbus_mcp_tools_are_offered_to_codex(team: Team, codex: rc.Client) -> None:
    """Codex defers MCP tools: it names each server's namespace to the model, which loads the tools
    with `tool_search`; the server must have started and listed its tools for the name to appear."""
    with OpenAIMock(steps(shell("true"))) as api:
        run(team, codex, api)
    told = "\n".join(r.received() for r in requests(api))
    assert "mcp__gitbus" in told, seen(api)


def test_a_discovery_posted_mid_turn_reaches_codex_once_after_a_tool_call(
    team: Team, codex: rc.Client
) -> None:
    news = "the cache lives in var/cache, keyed by content hash"
    posted: list[int] = []

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 2 and not posted:  # two tool calls made: alice posts before the third
            team.gitbus("alice", "discover", news)
            posted.append(req.n)
        return shell("true") if k < 4 else say("Done.")

    with OpenAIMock(script) as api:
        run(team, codex, api)
    assert posted, seen(api)
    hit = told_once(api, news)
    assert hit.n > posted[0] and hit.step() == 3, f"first shown at request {hit.n}, step {hit.step()}"
    [block] = hit.where(news)
    assert block.role == "developer" and f'alice reported: "{news}"' in block.text, block
    # Codex files a PostToolUse context beside the call it followed: between the call and its output
    assert hit.items[block.message - 1]["type"] == "function_call", "the news does not follow a tool call"


def test_an_apply_patch_into_a_claimed_path_is_refused_naming_the_holder(
    team: Team, codex: rc.Client
) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    bob = team.worktrees["bob"]
    into_claim = (
        "*** Begin Patch\n*** Add File: internal/api/routes.go\n+package api\n"
        "*** Update File: README.md\n@@\n-README.md\n+README, patched\n*** End Patch\n"
    )
    elsewhere = (
        "*** Begin Patch\n*** Update File: README.md\n@@\n-README.md\n+README, patched\n*** End Patch\n"
    )
    with OpenAIMock(steps(apply_patch(into_claim), apply_patch(elsewhere))) as api:
        run(team, codex, api)
    final = requests(api)[-1]
    refused, allowed = (final.outputs()[c["call_id"]] for c in final.calls())
    assert "alice holds internal/api/" in refused and "splitting handlers" in refused, refused
    assert not (bob / "internal/api/routes.go").exists()  # the whole patch was refused…
    assert "README.md" in allowed and (bob / "README.md").read_text() == "README, patched\n", allowed


def test_a_patch_applied_through_the_shell_is_refused_too(team: Team, codex: rc.Client) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    patch = "*** Begin Patch\n*** Add File: internal/api/routes.go\n+package api\n*** End Patch\n"
    with OpenAIMock(steps(shell(f"apply_patch <<'EOF'\n{patch}EOF\n"))) as api:
        run(team, codex, api)
    final = requests(api)[-1]
    [out] = final.outputs().values()
    assert "alice holds internal/api/" in out, out
    assert not (team.worktrees["bob"] / "internal/api/routes.go").exists()


def test_a_question_posted_as_the_turn_ends_is_told_at_stop_once(team: Team, codex: rc.Client) -> None:
    question = "where do the migrations run?"
    asked: list[int] = []

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 1 and not asked:  # the model is about to end its turn: alice asks first
            team.gitbus("alice", "ask", question, "--to", "bob")
            asked.append(req.n)
            return say("Done.")
        return shell("true") if k < 1 else say("Done, and noted.")

    with OpenAIMock(script) as api:
        run(team, codex, api)
    assert asked, seen(api)
    hit = told_once(api, question)
    assert hit.n > asked[0], "the question was not told after the turn's end"
    [block] = hit.where(question)
    assert "alice asked you" in block.text, block


def test_a_shell_patch_after_cd_is_read_from_the_folder_it_changes_to(team: Team, codex: rc.Client) -> None:
    """The hook's `cwd` is the session's folder; a `cd internal &&` in front of the patch moves it."""
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    patch = "*** Begin Patch\n*** Add File: api/cd.go\n+package api\n*** End Patch\n"
    with OpenAIMock(steps(shell(f"cd internal && apply_patch <<'EOF'\n{patch}EOF\n"))) as api:
        run(team, codex, api)
    final = requests(api)[-1]
    [out] = final.outputs().values()
    assert "alice holds internal/api/" in out, out
    assert not (team.worktrees["bob"] / "internal/api/cd.go").exists()


def test_a_patch_with_indented_headers_is_refused_too(team: Team, codex: rc.Client) -> None:
    """Codex trims a patch's header lines before reading them: so does the guard."""
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    patch = "*** Begin Patch\n  *** Add File: internal/api/indent.go\n+package api\n*** End Patch\n"
    with OpenAIMock(steps(apply_patch(patch))) as api:
        run(team, codex, api)
    [out] = requests(api)[-1].outputs().values()
    assert "alice holds internal/api/" in out, out
    assert not (team.worktrees["bob"] / "internal/api/indent.go").exists()
