"""Three vendors' agents on one bus: Claude Code, Codex CLI and Gemini CLI, each the real binary
pinned in clients.json, each against a loopback mock of its own model API.

alice runs Claude Code in the main checkout, bob Codex in `wt-bob`, carol Gemini CLI in `wt-carol`;
gitbus is installed for all three. Every step is taken by a model through its client's own tools
(the mocks' scripts decide the calls; the clients run them and their hooks): carol claims a folder,
bob's patch into it is refused naming carol, bob asks alice a question, alice is told it at the
start of her session, answers it and posts a discovery, and bob's next Codex session and carol's next
Gemini session are told what is new for them, once.

Outside CI the module is skipped when any of the three clients is missing; under `CI` that fails.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import realclient as rc
from .realclient import MockAPI, Reply, Request, say, use
from .vendorapis import (
    GeminiMock,
    OpenAIMock,
    ResponsesRequest,
    Team,
    apply_patch,
    call,
    codex_env,
    gemini_env,
    make_team,
    run_codex,
    run_gemini,
    seen,
    shell,
    told_once,
)

CLIENTS = ("claude-code", "codex", "gemini")
if not os.environ.get("CI") and (_why := "; ".join(filter(None, map(rc.missing, CLIENTS)))):
    pytest.skip(f"real clients: {_why}", allow_module_level=True)  # one line; under CI, fail

GITBUS = shlex.quote(str(rc.VENV_BIN / "gitbus"))  # Codex's shell is a login shell: its own PATH
QUESTION = "where do the migrations run?"
ANSWER = "at boot, from migrations/; never by hand"
DISCOVERY = "the test fixtures live in testdata/, one folder per service"


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    for name in CLIENTS:
        rc.require(name)
    installs = {"alice": "claude", "bob": "codex", "carol": "gemini"}
    teams = make_team(tmp_path, ["alice", "bob", "carol"], installs)
    t = next(teams)
    rc.seed_home(t.home, list(t.worktrees.values()))  # Claude Code's first-run screens, done
    yield t
    next(teams, None)


def codex(team: Team, api: OpenAIMock) -> rc.Run:
    env = codex_env(team.home, api, trusted=[team.worktrees["alice"]])
    return run_codex(rc.pinned("codex"), team.worktrees["bob"], "Carry on with the task.", env, api)


def test_three_vendors_share_one_claim_and_answer_one_question(team: Team) -> None:
    # carol (Gemini CLI) claims the API folder through her shell tool.
    claim = call("run_shell_command", command='gitbus claim internal/api/ --reason "splitting handlers"')
    with GeminiMock(rc.once_per_step({0: claim})) as gemini_api:
        run_gemini(
            rc.pinned("gemini"), team.worktrees["carol"], "Go.", gemini_env(team.home, gemini_api), gemini_api
        )
    assert "carol" in team.gitbus("alice", "claims"), seen(gemini_api)

    # bob (Codex): a patch into carol's folder is refused naming her; he asks alice instead.
    patch = "*** Begin Patch\n*** Add File: internal/api/routes.go\n+package api\n*** End Patch\n"
    ask = shell(f'{GITBUS} ask "{QUESTION}" --to alice')
    with OpenAIMock(rc.once_per_step({0: apply_patch(patch), 1: ask})) as codex_api:
        codex(team, codex_api)
    final = codex_api.main_requests()[-1]
    assert isinstance(final, ResponsesRequest)
    refused, asked = (final.outputs()[c["call_id"]] for c in final.calls())
    assert "carol holds internal/api/" in refused and "splitting handlers" in refused, refused
    assert not (team.worktrees["bob"] / "internal/api/routes.go").exists()
    assert "question" in asked, asked

    # alice (Claude Code) is told the question as her session starts, and answers it.
    answered: list[str] = []

    def alice(req: Request) -> Reply:
        if req.step() == 0:
            found = re.search(r"\[([0-9a-f]{8,})\] bob asks me: ", req.received())
            assert found, f"alice was not told the question: {req.received()[-2000:]}"
            answered.append(found.group(1))
            return use("Bash", command=f'gitbus answer {found.group(1)} "{ANSWER}"', description="answer")
        if req.step() == 1:
            return use("Bash", command=f'gitbus discover "{DISCOVERY}"', description="share a finding")
        return say("Done.")

    with MockAPI(alice) as claude_api:
        rc.run_print(
            rc.pinned("claude-code"),
            team.worktrees["alice"],
            "Carry on with the task.",
            rc.client_env(team.home, claude_api),
            60.0,
            done=lambda: claude_api.turn_over,
            grace=5.0,
        )
    assert answered and not claude_api.errors, claude_api.errors
    assert told_once(claude_api, QUESTION)

    # bob's next Codex session is told the answer, and alice's discovery, once each.
    with OpenAIMock(rc.once_per_step({0: shell("true")})) as codex_api:
        codex(team, codex_api)
    hit = told_once(codex_api, ANSWER)
    assert "alice answered question" in hit.received(), seen(codex_api)
    assert f'alice reported: "{DISCOVERY}"' in told_once(codex_api, DISCOVERY).received(), seen(codex_api)

    # …and carol's next Gemini session is told the discovery once.
    with GeminiMock(rc.once_per_step({0: call("run_shell_command", command="true")})) as gemini_api:
        run_gemini(
            rc.pinned("gemini"), team.worktrees["carol"], "Go.", gemini_env(team.home, gemini_api), gemini_api
        )
    told = told_once(gemini_api, DISCOVERY)
    assert f'alice reported: "{DISCOVERY}"' in told.received(), seen(gemini_api)
