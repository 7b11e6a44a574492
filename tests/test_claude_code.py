"""gitbus with the real Claude Code (the version pinned in clients.json), against a mock model.

Each test sets up a repository with two agents in two worktrees (alice in the main checkout, bob in
`wt-b`), runs `gitbus install claude`, and runs the real `claude` binary, in print mode (`-p`) or
interactively in a private tmux server. The model is `MockAPI`: it follows the test's script and
records every request, which is exactly what the model was given; the tests assert on those bodies.

How Claude Code 2.1.328 puts hook output in front of the model (observed, and relied on here): a
SessionStart or PostToolUse `additionalContext` is a mid-conversation system message
("SessionStart hook additional context: …", "PostToolUse:Bash hook additional context: …"); a
PreToolUse deny is the tool's result, with `is_error`; an asyncRewake wake-up is a user turn
("Stop hook blocking error from command …").

Outside CI the module is skipped when node/npm or the pinned client is missing (`.ci/install-clients`
installs it); under `CI` that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import realclient as rc
from .conftest import git, make_repo
from .realclient import MockAPI, Reply, Request, Tmux, say, use

if not os.environ.get("CI") and (_why := rc.missing("claude-code")):
    pytest.skip(f"real client claude-code: {_why}", allow_module_level=True)  # one line; under CI, fail

PRINT_TIMEOUT = 45.0  # seconds a `claude -p` may take at the most (a few, normally)
EXIT_PROMPTLY = 15.0  # …and with gitbus installed, it must have exited by then (about 3 s here)
QUIET = 5.0  # seconds without a request that show a session was not woken
WAKE = 20.0  # seconds within which a question to an idle session wakes it
GRACE = 5.0  # seconds a waiter may take to notice its session is gone


@pytest.fixture(scope="module")
def claude() -> rc.Client:
    return rc.require("claude-code")


@dataclass
class Team:
    """alice in the main checkout, bob in worktree wt-b; gitbus installed for Claude Code."""

    home: Path
    worktrees: dict[str, Path]
    client: rc.Client

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{rc.VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def gitbus(self, agent: str, *args: str) -> str:
        """Run the gitbus CLI as `agent` (in its worktree), as another agent would; its stdout."""
        r = subprocess.run(
            [str(rc.VENV_BIN / "gitbus"), *args],
            cwd=self.worktrees[agent],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, f"gitbus {' '.join(args)} as {agent}: {r.stdout}{r.stderr}"
        return r.stdout

    def print_mode(self, agent: str, api: MockAPI, prompt: str = "Carry on with the task.") -> rc.Run:
        """`claude -p` as `agent`, stopped (if it has not exited) a few seconds after its turn ended:
        these tests look at what the model received; exiting is test_print_mode_exits_promptly's."""
        return rc.run_print(
            self.client,
            self.worktrees[agent],
            prompt,
            rc.client_env(self.home, api),
            PRINT_TIMEOUT,
            done=lambda: api.turn_over,
            grace=10.0,
        )


TRACKED_MCP_JSON = '{"mcpServers": {}}\n'  # a team's committed file: gitbus must leave it alone


def make_team(tmp_path: Path, claude: rc.Client, tracked_mcp_json: bool = False) -> Iterator[Team]:
    repo = make_repo(tmp_path / "main")
    if tracked_mcp_json:
        (repo / ".mcp.json").write_text(TRACKED_MCP_JSON)
        git(repo, "add", ".mcp.json")
        git(repo, "commit", "-qm", "the team's MCP servers")
    wt = tmp_path / "wt-b"
    git(repo, "worktree", "add", "-q", "-b", "wt-b", str(wt))
    home = Path(os.environ["HOME"])  # the hermetic fixture's, this test's own
    t = Team(home, {"alice": repo, "bob": wt}, claude)
    t.gitbus("alice", "join", "--name", "alice")
    t.gitbus("bob", "join", "--name", "bob")
    if tracked_mcp_json:  # install writes the server into ~/.claude.json, which seeding would replace
        rc.seed_home(home, [repo, wt])
    t.gitbus("alice", "install", "claude")
    if not tracked_mcp_json:
        rc.seed_home(home, [repo, wt])
    try:
        yield t
    finally:
        rc.reap(home)  # hook waiters, MCP servers, clients: whatever this test's clients left


@pytest.fixture
def team(tmp_path: Path, claude: rc.Client) -> Iterator[Team]:
    yield from make_team(tmp_path, claude)


@pytest.fixture(params=["mcp-json", "tracked-mcp-json"])
def mcp_team(request: pytest.FixtureRequest, tmp_path: Path, claude: rc.Client) -> Iterator[Team]:
    """A team whose MCP server install put in `.mcp.json`, or, where the team tracks its own
    `.mcp.json`, in Claude Code's local scope (`~/.claude.json`) with the tracked file untouched."""
    tracked = request.param == "tracked-mcp-json"
    yield from make_team(tmp_path, claude, tracked)
    if tracked:
        for wt in (tmp_path / "main", tmp_path / "wt-b"):
            assert (wt / ".mcp.json").read_text() == TRACKED_MCP_JSON
            assert git(wt, "status", "--porcelain") == ""


def first_hit(api: MockAPI, text: str) -> Request | None:
    return next((r for r in api.main_requests() if r.where(text)), None)


def last(api: MockAPI) -> Request:
    reqs = api.main_requests()
    assert reqs, f"the client never called the model; errors: {api.errors}"
    return reqs[-1]


def shown(api: MockAPI) -> str:
    """What the model received over the session, for failure messages: the last request's messages."""
    reqs = api.main_requests()
    if not reqs:
        return "(no request reached the mock)"
    lines = [f"{b.message}/{b.role}/{b.kind}: {b.text[:400]!r}" for b in reqs[-1].blocks() if b.message >= 0]
    return "\n".join(lines[-30:])


def assert_told_once(api: MockAPI, text: str) -> Request:
    """`text` reached the model exactly once over the whole session: once in the final conversation,
    and in exactly one request's new part. Returns the request that first held it."""
    final = last(api)
    assert final.received().count(text) == 1, f"{text!r} in the final conversation:\n{shown(api)}"
    added = sum(r.tail_text().count(text) for r in api.main_requests())
    assert added == 1, f"{text!r} was added {added} times:\n{shown(api)}"
    hit = first_hit(api, text)
    assert hit is not None
    return hit


def steps(*replies: Reply) -> rc.Script:
    return rc.once_per_step(dict(enumerate(replies)))


def bash(command: str) -> Reply:
    return use("Bash", command=command, description="a step of the scripted turn")


# -- what the model is told --------------------------------------------------------------------------


def test_session_start_tells_the_model_who_it_is_and_what_others_hold(team: Team) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    with MockAPI(steps(bash("true"))) as api:
        team.print_mode("bob", api)
    assert api.main_requests(), f"the client never called the model: {api.errors}"
    first = api.main_requests()[0]
    told = first.hook_context("SessionStart")
    assert len(told) == 1, shown(api)
    assert "you are agent bob" in told[0]
    assert "alice holds internal/api/" in told[0] and "splitting handlers" in told[0], told[0]
    assert last(api).received().count("you are agent bob") == 1


def test_an_edit_inside_another_agents_claim_is_refused_to_the_model_naming_the_holder(team: Team) -> None:
    team.gitbus("alice", "claim", "internal/api/", "--reason", "splitting handlers")
    target = team.worktrees["bob"] / "internal" / "api" / "handler.go"
    new_file = target.parent / "routes.go"
    before = target.read_text()
    script = steps(
        use("Read", file_path=str(target)),  # Claude Code edits only what it has read
        use("Edit", file_path=str(target), old_string="internal", new_string="INTERNAL"),
        use("Write", file_path=str(new_file), content="package api\n"),
    )
    with MockAPI(script) as api:
        team.print_mode("bob", api)
    final = last(api)
    uses = {u["name"]: u["id"] for u in final.tool_uses()}
    assert set(uses) >= {"Read", "Edit", "Write"}, shown(api)
    read = final.result_for(uses["Read"])
    assert read is not None and not read.get("is_error"), read  # reading is no edit: allowed
    assert "internal/api/handler.go" in rc.block_text(read)  # (make_repo's file holds its own path)
    for tool in ("Edit", "Write"):
        result = final.result_for(uses[tool])
        assert result is not None and result.get("is_error") is True, f"{tool}: {result}"
        reason = rc.block_text(result)
        assert "alice holds internal/api/" in reason and "splitting handlers" in reason, reason
        assert "gitbus ask --to alice" in reason, reason
    assert target.read_text() == before
    assert not new_file.exists()


def test_a_discovery_posted_mid_turn_reaches_the_model_once_after_a_tool_call(team: Team) -> None:
    news = "the cache lives in var/cache, keyed by content hash"
    posted_at: list[int] = []

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 2 and not posted_at:  # two tool calls made: alice posts before the third
            team.gitbus("alice", "discover", news)
            posted_at.append(req.n)
        return bash("true") if k < 5 else say("Done.")

    with MockAPI(script) as api:
        team.print_mode("bob", api)
    assert posted_at, shown(api)
    hit = assert_told_once(api, news)
    assert hit.n > posted_at[0] and hit.step() == 3, f"first shown at request {hit.n}, step {hit.step()}"
    [block] = hit.where(news)
    assert block.kind == "text" and block.text.startswith("PostToolUse:Bash hook additional context:"), block
    before = hit.messages[block.message - 1]
    assert before["role"] == "user" and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in before["content"]
    ), "the news does not follow a tool result"
    assert f'alice reported: "{news}"' in block.text, block.text


def test_an_answer_reaches_the_asker_once(team: Team) -> None:
    question = "where do the migrations run?"
    reply = "at boot, from migrations/; never by hand"
    answered: list[str] = []

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 0:
            return bash(f'gitbus ask "{question}" --to alice')
        if k == 1 and not answered:
            asked = rc.block_text(req.tool_results()[-1])
            found = re.search(r"question ([0-9a-f]{8,})", asked)
            assert found, f"gitbus ask said: {asked!r}"
            team.gitbus("alice", "answer", found.group(1), reply)
            answered.append(found.group(1))
        return bash("true") if k < 4 else say("Done.")

    with MockAPI(script) as api:
        team.print_mode("bob", api)
    assert not api.errors, api.errors
    assert answered, shown(api)
    hit = assert_told_once(api, reply)
    [block] = hit.where(reply)
    assert block.text.startswith("PostToolUse:Bash hook additional context:"), block


def test_the_agents_own_words_never_come_back_to_it(team: Team) -> None:
    mine = "bob found: the tests need TZ=UTC"
    theirs = "alice found: the linter is ruff"

    def script(req: Request) -> Reply:
        k = req.step()
        if k == 0:
            return bash(f'gitbus discover "{mine}"')
        if k == 1:
            team.gitbus("alice", "discover", theirs)  # so the hooks have something to tell
        return bash("true") if k < 4 else say("Done.")

    with MockAPI(script) as api:
        team.print_mode("bob", api)
    assert_told_once(api, theirs)  # delivery works in this session…
    assert mine in team.gitbus("alice", "log", "--json")  # bob did post it…
    for req in api.main_requests():  # …and it only ever came back as the output of his own command
        for block in req.where(mine):
            assert block.kind == "tool_result", f"request {req.n} told bob his own words: {block}"


# -- the MCP server -------------------------------------------------------------------------------------


def test_the_model_can_call_the_gitbus_mcp_tools(mcp_team: Team) -> None:
    team = mcp_team
    text = "the staging database is read-only on Fridays"
    offered: list[bool] = []

    def script(req: Request) -> Reply:
        # alwaysLoad: the tools are listed whole from the first request, not deferred behind ToolSearch
        offered.append("mcp__gitbus__discover" in req.tool_names)
        called = [u["name"] for u in req.tool_uses()]
        if "mcp__gitbus__discover" not in called:
            return use("mcp__gitbus__discover", text=text)
        if "mcp__gitbus__status" not in called:
            return use("mcp__gitbus__status")
        return bash("true") if "Bash" not in called else say("Done.")

    with MockAPI(script) as api:
        team.print_mode("bob", api)
    assert offered and offered[0], "the first request does not offer the gitbus MCP tools"
    final = last(api)
    uses = {u["name"]: u["id"] for u in final.tool_uses()}
    assert {"mcp__gitbus__discover", "mcp__gitbus__status"} <= set(uses), shown(api)
    said = final.result_for(uses["mcp__gitbus__discover"])
    assert said is not None and not said.get("is_error"), said
    assert "posted" in rc.block_text(said) and text in rc.block_text(said), said
    status = final.result_for(uses["mcp__gitbus__status"])
    assert status is not None and "you are bob" in rc.block_text(status), status
    assert text in team.gitbus("alice", "log", "--json")
    for block in final.where(text):  # the agent's own words, again, only as its tool's output
        assert block.kind == "tool_result", block


def test_a_slow_starting_gitbus_mcp_server_still_has_its_tools_in_the_first_request(team: Team) -> None:
    """Claude Code starts a session without waiting for its MCP servers unless a server is marked
    `alwaysLoad`: on a loaded machine gitbus's server (seconds to import the MCP SDK) missed the first
    request, so a headless agent's first turn had no gitbus tools. Here the server starts 3 s late."""
    for wt in team.worktrees.values():
        f = wt / ".mcp.json"
        config = json.loads(f.read_text())
        entry = config["mcpServers"]["gitbus"]
        entry["args"] = ["-c", 'sleep 3; exec "$0" "$@"', entry["command"], *entry["args"]]
        entry["command"] = "/bin/sh"
        f.write_text(json.dumps(config))
    offered: list[bool] = []

    def script(req: Request) -> Reply:
        offered.append("mcp__gitbus__status" in req.tool_names)
        return say("Done.")

    with MockAPI(script) as api:
        team.print_mode("bob", api)
    assert offered, f"the client never called the model; errors: {api.errors}"
    assert offered[0], "the first request does not offer the gitbus MCP tools"


def test_the_gitbus_mcp_server_is_offered_without_an_approval_prompt(mcp_team: Team) -> None:
    """In an interactive session without bypass mode, a `.mcp.json` server Claude Code was not told to
    trust waits behind "New MCP server found in this project"; gitbus's install approves its own (a
    local-scope server, where the team's `.mcp.json` is tracked, needs no approval)."""
    team = mcp_team
    with MockAPI() as api, Session(team, "bob", api, "--permission-mode", "default") as s:
        screen = s.tmux.wait_screen(lambda x: "New MCP server found" in x or s.is_ready(x), 30) or ""
        assert "New MCP server found" not in screen, f"the session asks to approve gitbus's server:{screen}"
        s.ready()
        connected = rc.wait_until(lambda: 'MCP server "gitbus": Successfully connected' in s.debug(), 20)
        assert connected, f"the gitbus MCP server never connected; screen:\n{s.tmux.screen()}"
        req = s.prompt("hello")
        assert "mcp__gitbus__status" in req.received() or "mcp__gitbus__status" in req.tool_names


# -- ending: print mode -------------------------------------------------------------------------------


def test_print_mode_exits_promptly_with_gitbus_installed(team: Team) -> None:
    with MockAPI(steps(bash("true"))) as api:
        run = rc.run_print(
            team.client, team.worktrees["bob"], "Run true.", rc.client_env(team.home, api), EXIT_PROMPTLY
        )
    assert api.turn_over, f"the turn never ended: {shown(api)}"
    assert run.code is not None, f"claude -p was still running after {EXIT_PROMPTLY:.0f} s (killed)"
    assert run.code == 0 and run.result.get("result") == "Done.", (run.code, run.stdout, run.stderr[-2000:])
    assert rc.wait_until(lambda: not rc.waiters(team.home), GRACE), rc.waiters(team.home)


# -- interactive sessions: waking, ending ------------------------------------------------------------------


class Session:
    """An interactive `claude` as one agent in a private tmux server (killed at exit)."""

    def __init__(self, team: Team, agent: str, api: MockAPI, *args: str, **env: str) -> None:
        self.team, self.api = team, api
        self.log = team.home / f"claude-debug-{agent}.log"
        argv = [str(team.client.binary), "--debug-file", str(self.log), *args]
        if "--permission-mode" not in args:
            argv.append("--dangerously-skip-permissions")
        self.argv = argv
        self.tmux = Tmux(rc.client_env(team.home, api, **env), team.worktrees[agent])

    def __enter__(self) -> Session:
        self.tmux.__enter__()
        self.tmux.start(self.argv)
        return self

    def __exit__(self, *exc: object) -> None:
        self.tmux.__exit__(*exc)

    def debug(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def is_ready(screen: str) -> bool:
        """The input box is up, with no dialog in front of it."""
        return "❯" in screen and "─" in screen and "Enter to confirm" not in screen

    def ready(self) -> str:
        """The screen once the prompt takes input."""
        screen = self.tmux.wait_screen(self.is_ready, 30)
        assert screen is not None, f"the session never became ready:\n{self.tmux.screen()}"
        time.sleep(0.5)  # the input box is drawn a moment before it listens
        return screen

    def prompt(self, text: str) -> Request:
        """Type a prompt; the main-loop request that carries it."""
        n = self.api.count()
        self.tmux.type_line(text)
        req = self.api.wait_for(lambda r: r.main and text in r.prompt(), 20, after=n)
        if req is None:  # the first Enter can land while the box is still settling: once more
            self.tmux.send("Enter")
            req = self.api.wait_for(lambda r: r.main and text in r.prompt(), 15, after=n)
        assert req is not None, f"the prompt never reached the model:\n{self.tmux.screen()}"
        return req

    def stops_done(self) -> int:
        """How many times the client logged our (foreground) Stop hook as finished."""
        return len(re.findall(r"Hooks: Stop \[[^\]\n]*gitbus hook\] finished", self.debug()))

    def turn(self, text: str) -> Request:
        """A whole turn: the prompt, the model's reply, the Stop hooks done, its waiter up.

        The waiter goes to the background before the Stop hook beside it has finished; on a loaded
        machine a message posted in between is the Stop hook's to tell, so wait for both."""
        before = self.stops_done()
        req = self.prompt(text)
        assert rc.wait_until(lambda: self.api.turn_over, 20), self.tmux.screen()
        up = rc.wait_until(lambda: bool(rc.waiters(self.team.home)), 15)
        assert up, f"no `gitbus hook wake` waiter started after the turn:\n{self.debug()[-3000:]}"
        done = rc.wait_until(lambda: self.stops_done() > before, 15)
        assert done, f"the Stop hook never finished:\n{self.debug()[-3000:]}"
        return req


@pytest.mark.parametrize(
    "inherited",
    [{}, {"CLAUDE_CODE_ENTRYPOINT": "sdk-py"}],
    ids=["from a shell", "started by an SDK orchestrator"],
)
def test_an_idle_session_is_woken_by_a_question_to_it_not_by_a_broadcast(
    team: Team, inherited: dict[str, str]
) -> None:
    """An interactive client keeps an entrypoint it inherited (`sdk-…`); it is still attended."""
    broadcast = "the build now uses make, not tox"
    question = "bob, is the cache still under var/?"
    with MockAPI() as api, Session(team, "bob", api, **inherited) as s:
        s.ready()
        s.turn("Say hello.")
        n = api.count()
        team.gitbus("alice", "discover", broadcast)
        woken = api.wait_for(lambda r: r.main, QUIET, after=n)
        assert woken is None, f"a message to everyone woke bob's idle session: {woken.tail_text()[:2000]}"
        team.gitbus("alice", "ask", question, "--to", "bob")
        woken = api.wait_for(lambda r: r.main, WAKE, after=n)
        assert woken is not None, f"a question to bob did not wake his idle session:\n{s.tmux.screen()}"
        assert question in woken.tail_text(), woken.tail_text()[:3000]
        assert rc.wait_until(lambda: api.turn_over, 20)
        assert_told_once(api, question)


def _exit(s: Session) -> None:
    s.tmux.type_line("/exit")


def _close_pane(s: Session) -> None:
    s.tmux.tmux("kill-pane", "-t", "t")  # the terminal goes: SIGHUP


def _kill(s: Session) -> None:
    pid = s.tmux.pane_pid()  # the pane runs `exec claude`, so this is the client itself
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"claude")
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("end", [_exit, _close_pane, _kill], ids=["exit", "terminal-closed", "sigkill"])
def test_no_waiter_outlives_its_session(team: Team, end: Any) -> None:
    with MockAPI() as api, Session(team, "bob", api) as s:
        s.ready()
        s.turn("Say hello.")
        end(s)
        assert rc.wait_until(lambda: not rc.clients(team.home, team.client), 10), "the client did not end"
        question = "bob, are you still on the cache?"
        team.gitbus("alice", "ask", question, "--to", "bob")  # at once: a waiter still there takes it
        gone = rc.wait_until(lambda: not rc.waiters(team.home), GRACE)
        assert gone, f"waiters left after the session ended: {rc.waiters(team.home)}"
    assert question in team.gitbus("bob", "inbox"), "a message to bob was eaten after his session ended"


# -- a new agent ----------------------------------------------------------------------------------------


def test_a_new_agents_first_session_is_told_the_news_not_a_count(team: Team) -> None:
    news = "auth uses JWT tokens in internal/auth/"
    team.gitbus("alice", "discover", news)
    with MockAPI(steps(bash("true"))) as api:
        team.print_mode("bob", api)
    assert api.main_requests(), api.errors
    told = api.main_requests()[0].hook_context("SessionStart")
    assert told, shown(api)
    assert news in told[0], f"bob's first session was told:\n{told[0]}"
    assert_told_once(api, news)
