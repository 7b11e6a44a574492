"""`gitbus mcp`: the bus as MCP tools, driven through the SDK's own client — in memory and over stdio.

The server opens a `Bus` per call with the wall clock (it takes no clock), so the peers here use the
wall clock too, as in test_hooks: a claim made on the fake clock would already be expired for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import mcp
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, Tool
from typer.testing import CliRunner

import gitbus
import gitbus.paths
from gitbus.bus import OPEN_WINDOW, Bus
from gitbus.cli import app
from gitbus.clock import DURATION_FORMS, FakeClock
from gitbus.errors import ClaimConflict
from gitbus.hooks import handle
from gitbus.install_files import gitbus_command
from gitbus.mcp_server import INSTRUCTIONS, build
from gitbus.message import MAX_TEXT_BYTES, Kind

from .conftest import git
from .crowded import bulk_discoveries, counted

TOOLS = {
    "discover",
    "ask",
    "answer",
    "request",
    "take",
    "done",
    "claim",
    "release",
    "renew",
    "claims",
    "inbox",
    "search",
    "status",
    "show",
    "agents",
}
READ_ONLY = {"claims", "search", "status", "show", "agents"}  # inbox marks what it returns as seen
ME, WEB, DB = "api-1", "web-1", "db-1"
ID = "[0-9a-f]{8}"
UNTIL = r"until (?:[A-Z][a-z]{2} \d\d )?\d\d:\d\d \(\d+m left\)"  # a lease past midnight names its day
TIMEOUT_SECONDS = 20.0
T = TypeVar("T")
# What the hermetic fixture set that a child server must see too (stdio_client passes only HOME, PATH…).
HERMETIC_ENV = (
    "GIT_CONFIG_NOSYSTEM",
    "XDG_CONFIG_HOME",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
)


# -- driving the server -------------------------------------------------------------------------


@pytest.fixture
def peers(worktrees: list[Path]) -> dict[str, Bus]:
    """api-1 in the main checkout (the MCP side), web-1 and db-1 in the other two worktrees; all joined."""
    out: dict[str, Bus] = {}
    for wt, name in zip(worktrees, (ME, WEB, DB), strict=True):
        out[name] = Bus.open(wt, name)
        out[name].init()
    return out


@pytest.fixture
def server(worktrees: list[Path], peers: dict[str, Bus]) -> MCPServer:
    return build(worktrees[0], ME)


def call(server: MCPServer, tool: str, **args: Any) -> CallToolResult:
    """One tool call through an in-memory client (a fresh connection each time: the server keeps no
    state between calls, the bus on disk does)."""

    async def go() -> CallToolResult:
        async with mcp.Client(server) as client:
            return await client.call_tool(tool, args)

    return asyncio.run(asyncio.wait_for(go(), TIMEOUT_SECONDS))


def text_of(r: CallToolResult) -> str:
    assert all(isinstance(c, TextContent) for c in r.content), r.content
    return "\n".join(c.text for c in r.content if isinstance(c, TextContent))


def said(r: CallToolResult) -> str:
    """The text of a call that succeeded: plain text for the model, no structured result."""
    assert not r.is_error, text_of(r)
    assert r.structured_content is None
    return text_of(r)


def refused(r: CallToolResult) -> str:
    assert r.is_error, text_of(r)
    return text_of(r)


def refusal(tool: str, sentence: str) -> str:
    """What the model reads for a refusal: the SDK names the tool, then our sentence, unchanged."""
    return f"Error executing tool {tool}: {sentence}"


def cli_error(wt: Path, *args: str) -> str:
    """The sentence the CLI prints for a refused command (as agent api-1 in `wt`)."""
    r = CliRunner().invoke(app, ["-C", str(wt), "-a", ME, *args], env={"COLUMNS": "200"})
    assert r.exit_code in (1, 3), (r.exit_code, r.stdout, r.stderr)
    assert r.stderr.startswith("gitbus: "), r.stderr
    return r.stderr.removeprefix("gitbus: ").strip()


def newest(bus: Bus) -> Any:
    return bus.log(1)[0]


# -- every tool, its answer and its effect on the bus ---------------------------------------------


def test_discover_posts_a_discovery_on_paths_and_says_so(server: MCPServer, peers: dict[str, Bus]) -> None:
    out = said(call(server, "discover", text="the db config is config/db.yaml", paths=["config/db.yaml"]))
    m = newest(peers[WEB])
    assert out == f"discovery {m.id[:8]} posted: the db config is config/db.yaml"
    assert (m.kind, m.sender, m.to, m.paths) == (Kind.DISCOVERY, ME, "*", ("config/db.yaml",))


def test_ask_one_agent_by_name_or_everyone(server: MCPServer, peers: dict[str, Bus]) -> None:
    out = said(call(server, "ask", text="where are migrations run?", to=WEB))
    m = newest(peers[WEB])
    assert out == f"question {m.id[:8]} posted: where are migrations run?"
    assert (m.kind, m.sender, m.to) == (Kind.QUESTION, ME, WEB)
    said(call(server, "ask", text="who owns web/?"))
    assert newest(peers[DB]).to == "*"


def test_answer_by_id_prefix_replies_to_the_asker(server: MCPServer, peers: dict[str, Bus]) -> None:
    q = peers[WEB].ask("where are migrations run?", to=ME)
    out = said(call(server, "answer", question_id=q.id[:8], text="in db/migrate, at startup"))
    a = newest(peers[WEB])
    assert out == f"answer {a.id[:8]} posted: in db/migrate, at startup"
    assert (a.kind, a.sender, a.to, a.reply_to) == (Kind.ANSWER, ME, WEB, q.id)


def test_request_then_take_and_done(server: MCPServer, peers: dict[str, Bus]) -> None:
    out = said(call(server, "request", text="add an index on users.email", to=WEB, paths=["config/"]))
    req = newest(peers[WEB])
    assert out == f"request {req.id[:8]} posted: add an index on users.email"
    assert (req.kind, req.to, req.paths) == (Kind.REQUEST, WEB, ("config/",))

    theirs = peers[WEB].request("bump the pool size")
    out = said(call(server, "take", request_id=theirs.id[:8]))
    taken = newest(peers[WEB])
    assert out == f"take {taken.id[:8]} posted: bump the pool size"
    assert (taken.kind, taken.sender, taken.reply_to) == (Kind.TAKE, ME, theirs.id)
    assert f'"bump the pool size" [{theirs.id[:8]}; take it with the take tool] (taken by {ME})' in said(
        call(server, "status")
    )

    out = said(call(server, "done", request_id=theirs.id, text="pool is 20 now"))
    finished = newest(peers[WEB])
    assert out == f"done {finished.id[:8]} posted: pool is 20 now"
    assert (finished.kind, finished.sender, finished.reply_to) == (Kind.DONE, ME, theirs.id)
    assert "bump the pool size" not in said(call(server, "status"))  # a finished request is not open


def test_claim_claims_renew_release(server: MCPServer, peers: dict[str, Bus]) -> None:
    out = said(call(server, "claim", paths=["internal/api/"], ttl="10m", reason="splitting handlers"))
    assert re.fullmatch(f"claim {ID} posted: internal/api/: splitting handlers", out), out
    (c,) = peers[WEB].claims()
    assert (c.owner, c.path, c.ttl_ms, c.reason) == (ME, "internal/api/", 600_000, "splitting handlers")

    listed = said(call(server, "claims"))
    assert re.fullmatch(f'- {ME} holds internal/api/ {UNTIL} \\(reason: "splitting handlers"\\)', listed)

    assert re.fullmatch(f"renew {ID} posted: internal/api/", said(call(server, "renew")))
    (renewed,) = peers[WEB].claims()
    assert renewed.expires_at >= c.expires_at
    said(call(server, "claim", paths=["config/db.yaml"]))  # no ttl: the default lease
    assert {c.path: c.ttl_ms for c in peers[WEB].claims()}["config/db.yaml"] == 30 * 60_000

    out = said(call(server, "release", paths=["config/db.yaml"]))
    assert re.fullmatch(f"release {ID} posted: config/db.yaml", out), out
    assert [c.path for c in peers[WEB].claims()] == ["internal/api/"]
    assert re.fullmatch(f"release {ID} posted: internal/api/", said(call(server, "release", all=True)))
    assert said(call(server, "claims")) == "no live claims"
    assert said(call(server, "renew")) == "nothing to do"
    assert said(call(server, "release", all=True)) == "nothing to do"


def test_inbox_lists_what_is_new_for_me_once(server: MCPServer, peers: dict[str, Bus]) -> None:
    assert said(call(server, "inbox")).splitlines() == [f"- {WEB} joined the bus.", f"- {DB} joined the bus."]
    d = peers[WEB].discover("the db config is config/db.yaml", ["config/db.yaml"])
    q = peers[DB].ask("where are migrations run?", to=ME)
    peers[DB].ask("not for you", to=WEB)
    assert said(call(server, "inbox")).splitlines() == [
        f'- {WEB} reported on config/db.yaml: "the db config is config/db.yaml" [{d.id[:8]}]',
        f'- {DB} asked you: "where are migrations run?" [{q.id[:8]}; reply with the answer tool]',
    ]
    assert said(call(server, "inbox")) == "nothing new"


def test_an_inbox_too_long_for_one_answer_loses_nothing(server: MCPServer, peers: dict[str, Bus]) -> None:
    """Field notes §6: advance a read cursor only over what reached the model. Whatever one answer
    leaves out must come with a later read, each message exactly once."""
    said(call(server, "inbox"))
    everything = [f"finding {i:02d}" for i in range(40)]
    for text in everything:
        peers[WEB].discover(text)
    shown: list[str] = []
    for _ in range(len(everything)):
        out = said(call(server, "inbox"))
        if out == "nothing new":
            break
        shown += [t for t in everything if f'"{t}"' in out]
    assert sorted(shown) == everything


def test_search_finds_text_newest_first(server: MCPServer, peers: dict[str, Bus]) -> None:
    old = peers[WEB].discover("migrations run at startup")
    new = peers[DB].discover("Migrations live in db/migrate")
    peers[DB].discover("unrelated")
    assert said(call(server, "search", text="migrations")).splitlines() == [
        f'- {DB} reported: "Migrations live in db/migrate" [{new.id[:8]}]',
        f'- {WEB} reported: "migrations run at startup" [{old.id[:8]}]',
    ]
    assert said(call(server, "search", text="migrations", limit=1)).splitlines() == [
        f'- {DB} reported: "Migrations live in db/migrate" [{new.id[:8]}]'
    ]
    assert said(call(server, "search", text="no such words")) == "no match"


def test_search_refuses_a_limit_below_one_in_words(server: MCPServer, peers: dict[str, Bus]) -> None:
    """`limit=0` must not read as "no match" while there is one, nor a negative one crash."""
    peers[WEB].discover("migrations run at startup")
    for limit in (0, -1):
        assert "limit" in refused(call(server, "search", text="migrations", limit=limit)), limit


def test_the_inbox_tool_behind_others_traffic_names_the_call_that_goes_on(
    server: MCPServer, peers: dict[str, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the window, a call whose walk held nothing for the agent says so and gives the token of
    the next call; following the tokens reaches the message behind a crowd's traffic (issue 16)."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 5, raising=False)
    said(call(server, "inbox"))
    peers[WEB].ask("for api", to=ME)
    for i in range(40):
        peers[WEB].ask(f"chat {i}", to=DB)
    text = said(call(server, "inbox"))
    assert text.startswith("nothing new among the messages this call read; older ones may wait")
    for _ in range(20):
        if "for api" in text:
            break
        text = said(call(server, "inbox", before=re.findall(r'before="([0-9a-f]+)"', text)[0]))
    assert "for api" in text and said(call(server, "inbox")) == "nothing new"
    unknown = refused(call(server, "inbox", before="feedfeedfeed"))
    assert unknown.endswith("is known here: start again: call inbox without before."), unknown


def test_status_says_who_i_am_and_what_is_open(server: MCPServer, peers: dict[str, Bus]) -> None:
    said(call(server, "inbox"))
    said(call(server, "claim", paths=["internal/api/"], reason="splitting handlers"))
    peers[WEB].claim(["config/"], reason="pool tuning")
    q = peers[WEB].ask("where are migrations run?", to=ME)
    r = peers[DB].request("add an index on users.email")
    lines = said(call(server, "status")).splitlines()
    assert lines[0] == f"you are {ME}; 3 unread"
    assert re.fullmatch(
        f'- yours: {ME} holds internal/api/ {UNTIL} \\(reason: "splitting handlers"\\)', lines[1]
    )
    assert re.fullmatch(f'- {WEB} holds config/ {UNTIL} \\(reason: "pool tuning"\\)', lines[2])
    reply = f"[{q.id[:8]}; reply with the answer tool]"
    assert lines[3] == f'- {WEB} asked you: "where are migrations run?" {reply}'
    take = f"[{r.id[:8]}; take it with the take tool]"
    assert lines[4] == f'- {DB} requested work from anyone: "add an index on users.email" {take}'
    assert len(lines) == 5


def test_status_says_the_claims_are_unknown_when_a_ledger_cannot_be_read(
    server: MCPServer, peers: dict[str, Bus]
) -> None:
    peers[WEB].claim(["config/"], reason="pool tuning")
    common = peers[WEB].repo.common_dir
    shard = next(p for p in (common / "refs" / "bus" / "ledgers").iterdir() if p.name != "main")
    shard.write_bytes(b"")  # emptied: web's claim cannot be read
    lines = said(call(server, "status")).splitlines()
    assert "The claims cannot be read" in lines[1] and shard.name in lines[1] and "refused" in lines[1], lines


def test_status_names_the_recipient_of_my_own_question_and_request(
    server: MCPServer, peers: dict[str, Bus]
) -> None:
    """A question api-1 put to web-1 must not read as one put to everyone (nor a request as to anyone)."""
    said(call(server, "ask", text="where are migrations run?", to=WEB))
    said(call(server, "request", text="add an index on users.email", to=DB))
    out = said(call(server, "status"))
    (asked,) = [line for line in out.splitlines() if "where are migrations run?" in line]
    (requested,) = [line for line in out.splitlines() if "add an index" in line]
    assert WEB in asked and "everyone" not in asked, asked
    assert DB in requested and "anyone" not in requested, requested


def test_search_names_the_recipient_of_a_question_between_two_others(
    server: MCPServer, peers: dict[str, Bus]
) -> None:
    peers[WEB].ask("where are migrations run?", to=DB)
    (line,) = said(call(server, "search", text="migrations")).splitlines()
    assert DB in line and "everyone" not in line, line


# -- identity -------------------------------------------------------------------------------------


def test_the_agent_is_the_worktree_unless_named(
    worktrees: list[Path], peers: dict[str, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert said(call(build(worktrees[1]), "status")).startswith("you are wt-b;")
    monkeypatch.setenv("GITBUS_AGENT", "ops-1")
    assert said(call(build(worktrees[1]), "status")).startswith("you are ops-1;")
    assert said(call(build(worktrees[1], WEB), "status")).startswith(f"you are {WEB};")


# -- refusals: a tool error carrying the CLI's sentence ------------------------------------------


def test_a_claim_conflict_names_the_holder(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    peers[WEB].claim(["internal/api/"], 1_830_000, "splitting handlers")  # reads "30m left" for 30 s
    r = call(server, "claim", paths=["internal/api/handler.go"])
    with pytest.raises(ClaimConflict) as lib:
        peers[ME].claim(["internal/api/handler.go"])
    assert lib.value.holder == WEB
    sentence = cli_error(worktrees[0], "claim", "internal/api/handler.go")
    assert sentence == lib.value.message
    ask = f'Ask them with: gitbus ask --to {WEB} "…"'  # the MCP face names its tool instead
    assert refused(r) == refusal("claim", sentence.replace(ask, f"Ask them with the ask tool (to: {WEB})"))
    assert sentence.startswith(
        f"Claim on internal/api/handler.go is refused: {WEB} holds internal/api/ until "
    )
    assert [c.owner for c in peers[ME].claims()] == [WEB]


def test_a_request_taken_by_another_names_the_taker(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    r = peers[DB].request("bump the pool size")
    peers[WEB].take(r.id)
    for tool, args in (("take", {}), ("done", {"text": "x"})):
        sentence = cli_error(worktrees[0], tool, r.id, *args.values())
        assert WEB in sentence
        assert refused(call(server, tool, request_id=r.id, **args)) == refusal(tool, sentence)


def test_an_unknown_recipient_is_refused_and_nothing_is_sent(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    before = newest(peers[ME]).id
    for tool in ("ask", "request"):
        sentence = cli_error(worktrees[0], tool, "hello?", "--to", "nobody")
        assert sentence.startswith("No agent named 'nobody' is on the bus") and "nothing was sent" in sentence
        assert refused(call(server, tool, text="hello?", to="nobody")) == refusal(tool, sentence)
    assert newest(peers[ME]).id == before


def test_a_path_outside_the_repository_is_refused(worktrees: list[Path], server: MCPServer) -> None:
    sentence = cli_error(worktrees[0], "claim", "../outside")
    assert sentence.startswith("The path '../outside' is outside the repository")
    assert refused(call(server, "claim", paths=["../outside"])) == refusal("claim", sentence)
    assert refused(call(server, "discover", text="x", paths=["../outside"])) == refusal("discover", sentence)


def test_oversize_text_is_refused(worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]) -> None:
    big = "x" * (MAX_TEXT_BYTES + 1)
    sentence = cli_error(worktrees[0], "discover", big)
    assert sentence == "The text is over the 64 KiB limit; shorten it."
    assert refused(call(server, "discover", text=big)) == refusal("discover", sentence)
    assert refused(call(server, "ask", text=big)) == refusal("ask", sentence)
    assert said(call(server, "discover", text="x" * MAX_TEXT_BYTES)).startswith("discovery ")


def test_a_bad_ttl_is_refused_in_words(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    for ttl in ("8d", "banana", "0", "-5m", "30m1h"):
        sentence = cli_error(worktrees[0], "claim", "config/", "--ttl", ttl)
        assert sentence in (
            "A lease must be between 1s and 7d.",
            f"'{ttl}' is not a duration; use {DURATION_FORMS}.",
        )
        assert refused(call(server, "claim", paths=["config/"], ttl=ttl)) == refusal("claim", sentence), ttl
    assert peers[ME].claims() == []
    assert said(call(server, "claim", paths=["config/"], ttl="1h30m")).startswith("claim ")
    assert peers[ME].claims()[0].ttl_ms == 5_400_000


def test_unknown_ids_and_missing_arguments_are_refused(worktrees: list[Path], server: MCPServer) -> None:
    for tool, args, cli in [
        ("take", {"request_id": "deadbeef"}, ["take", "deadbeef"]),
        ("done", {"request_id": "deadbeef"}, ["done", "deadbeef"]),
        ("answer", {"question_id": "deadbeef", "text": "x"}, ["answer", "deadbeef", "x"]),
        ("discover", {"text": "  "}, ["discover", "  "]),
    ]:
        sentence = cli_error(worktrees[0], *cli).replace("`gitbus log`", "the search tool")
        assert refused(call(server, tool, **args)) == refusal(tool, sentence), tool
    # the CLI refuses a bare `release` as a usage error (exit 2), before the library is asked
    nothing = "Name the paths to release, or set all to release every claim you hold."
    assert refused(call(server, "release")) == refusal("release", nothing)
    assert refused(call(server, "claim", paths=[])) == refusal("claim", "Name at least one path to claim.")


def test_outside_a_repository_the_tools_refuse_in_words(tmp_path: Path) -> None:
    text = refused(call(build(tmp_path), "status"))
    assert text.startswith("Error executing tool status: ") and "repository" in text, text


# -- what the client is told about the server ------------------------------------------------------


def test_every_tool_is_listed_with_a_description_and_the_server_has_instructions(server: MCPServer) -> None:
    async def go() -> tuple[str | None, list[Tool]]:
        async with mcp.Client(server) as client:
            return client.instructions, (await client.list_tools()).tools

    instructions, tools = asyncio.run(asyncio.wait_for(go(), TIMEOUT_SECONDS))
    assert {t.name for t in tools} == TOOLS
    for t in tools:
        assert t.description and t.description.strip(), t.name
        assert t.output_schema is None, t.name  # text for the model, no structured result
    assert instructions == INSTRUCTIONS
    assert "claim" in INSTRUCTIONS and "quoted data" in INSTRUCTIONS


def listed(server: MCPServer) -> list[Tool]:
    async def go() -> list[Tool]:
        async with mcp.Client(server) as client:
            return (await client.list_tools()).tools

    return asyncio.run(asyncio.wait_for(go(), TIMEOUT_SECONDS))


def one_short_sentence(text: str | None) -> bool:
    one = bool(text) and text == text.strip() and text.endswith(".") and ". " not in text
    return one and len(text or "") <= 160


def test_every_tool_and_every_argument_is_described_in_one_short_sentence(server: MCPServer) -> None:
    for t in listed(server):
        assert one_short_sentence(t.description), (t.name, t.description)
        for arg, schema in t.input_schema.get("properties", {}).items():
            assert one_short_sentence(schema.get("description")), (t.name, arg, schema)


def test_every_tool_says_whether_it_only_reads_and_what_a_repeat_does(server: MCPServer) -> None:
    for t in listed(server):
        a = t.annotations
        assert a is not None and a.read_only_hint is not None, t.name
        assert a.read_only_hint == (t.name in READ_ONLY), t.name
        if not a.read_only_hint:
            assert a.destructive_hint is not None and a.idempotent_hint is not None, t.name
            assert a.destructive_hint == (t.name == "release"), t.name
        assert a.open_world_hint is False, t.name  # the bus in this repository, nothing beyond it


def test_only_tools_whose_repeat_changes_nothing_are_marked_idempotent(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    """A claim or renew called twice posts twice: each call is a message on the bus."""
    said(call(server, "claim", paths=["internal/api/"]))
    for tool, args in (("claim", {"paths": ["internal/api/"]}), ("renew", {})):
        before = len(peers[WEB].log(None))
        said(call(server, tool, **args))
        said(call(server, tool, **args))
        assert len(peers[WEB].log(None)) == before + 2, tool
    for t in listed(server):
        assert t.annotations is not None
        assert not t.annotations.idempotent_hint, t.name  # every writing tool here posts on each call


def test_the_server_names_itself_with_gitbus_version(server: MCPServer) -> None:
    async def go() -> Any:
        async with mcp.Client(server) as client:
            return client.server_info

    info = asyncio.run(asyncio.wait_for(go(), TIMEOUT_SECONDS))
    assert (info.name, info.version) == ("gitbus", gitbus.__version__)


def test_show_gives_one_message_with_its_thread(server: MCPServer, peers: dict[str, Bus]) -> None:
    q = peers[WEB].ask("where are migrations run?", paths=["config/"])
    a = peers[DB].answer(q.id, "in db/migrate, at startup")
    out = said(call(server, "show", id=q.id[:6]))
    lines = out.splitlines()
    assert lines[0].startswith(f"question {q.id[:8]} from {WEB} to everyone, ") and "config/" in lines[0]
    assert lines[1] == '"where are migrations run?"'
    assert f"- {DB} answered question {q.id[:8]}: " in out and "in db/migrate, at startup" in out
    assert said(call(server, "show", id=a.id)).splitlines()[0].startswith(f"answer {a.id[:8]} from {DB}")
    unknown = refused(call(server, "show", id="deadbeef"))
    assert unknown.startswith("Error executing tool show: No message has id deadbeef")


def test_agents_lists_every_agent_with_its_claims_and_last_message(
    server: MCPServer, peers: dict[str, Bus]
) -> None:
    peers[WEB].claim(["config/"], reason="pool tuning")
    peers[WEB].discover("the pool is too small")
    out = said(call(server, "agents"))
    lines = out.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == sorted((ME, WEB, DB)), out
    assert lines[0].startswith(f"- {ME} (you): active ")
    web = next(line for line in lines if line.startswith(f"- {WEB}: "))
    assert "1 live claim," in web and 'last: "discovery: the pool is too small"' in web, web


@pytest.mark.parametrize(
    ("tool", "args", "wanted"),
    [
        ("claim", {"paths": "config/"}, "paths must be a list of strings"),
        ("discover", {"text": "x", "paths": "config/"}, "paths must be a list of strings"),
        ("discover", {}, "text is required"),
        ("search", {"text": "x", "limit": "many"}, "limit must be a whole number"),
    ],
    ids=["a-string-for-paths", "a-string-for-optional-paths", "a-missing-text", "a-word-for-a-number"],
)
def test_arguments_of_the_wrong_shape_are_refused_in_one_sentence(
    server: MCPServer, tool: str, args: dict[str, Any], wanted: str
) -> None:
    text = refused(call(server, tool, **args))
    assert text.startswith(f"Error executing tool {tool}: {wanted}"), text
    assert "\n" not in text and text.endswith(".") and "http" not in text and "pydantic" not in text, text


WRONG = {  # JSON values of another type, each of which pydantic's lax mode would take for this one
    "boolean": ["yes", "true", 1, 0, "no", None],
    "integer": [True, 5.0, "5", None],
    "string": [5, True, None],
    "array": ["config/", [1], [True]],
}


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types an argument's schema allows, `null` (an optional argument's absence) aside."""
    found = {schema["type"]} if "type" in schema else {t["type"] for t in schema.get("anyOf", [])}
    return found - {"null"}


def test_every_argument_of_every_tool_takes_only_its_own_json_type(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    """`release {"all": "yes"}` released every claim and `search {"limit": true}` ran with limit 1:
    a bool must be a JSON boolean, an integer a JSON integer, and so on; anything else is refused
    in one sentence naming the argument, and nothing is done."""
    said(call(server, "claim", paths=["config/"]))
    q, r = peers[WEB].ask("which port?"), peers[WEB].request("bump the pool")
    valid: dict[str, dict[str, Any]] = {
        "discover": {"text": "x"},
        "ask": {"text": "x"},
        "answer": {"question_id": q.id, "text": "x"},
        "request": {"text": "x"},
        "take": {"request_id": r.id},
        "done": {"request_id": r.id},
        "claim": {"paths": ["README.md"]},
        "release": {},  # `all` alone: "yes" released every claim
        "search": {"text": "port"},
        "show": {"id": q.id},
    }
    before = git(worktrees[0], "for-each-ref", "refs/bus/")
    tried = 0
    for tool in listed(server):
        for arg, schema in tool.input_schema.get("properties", {}).items():
            (kind,) = _types(schema)
            for value in WRONG[kind]:
                if value is None and arg not in tool.input_schema.get("required", []) and "anyOf" in schema:
                    continue  # null is how an optional argument is left out
                text = refused(call(server, tool.name, **{**valid.get(tool.name, {}), arg: value}))
                named = re.match(f"Error executing tool {tool.name}: {arg}(\\[\\d+\\])? ", text)
                assert named, (tool.name, arg, value, text)
                assert "\n" not in text and text.endswith("."), text
                tried += 1
    assert tried > 40
    assert git(worktrees[0], "for-each-ref", "refs/bus/") == before  # nothing was posted, nothing released
    assert [c.path for c in peers[WEB].claims()] == ["config/"]


def test_discover_with_100000_paths_is_refused_before_they_are_read(
    server: MCPServer, peers: dict[str, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It took 13 s to normalise them all before the refusal: it comes at the first path too many."""
    normalised = counted(monkeypatch, gitbus.paths, "normalize")
    many = [f"src/f{i}.py" for i in range(100_000)]
    text = refused(call(server, "discover", text="x", paths=many))
    assert text == refusal("discover", "A message names at most 1000 paths; name their folders instead.")
    assert normalised[0] == 1001
    assert newest(peers[WEB]).text != "x"


def test_replies_name_the_tools_to_use_not_cli_commands(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    q = peers[WEB].ask("where are migrations run?", to=ME)
    r = peers[DB].request("bump the pool size", to=ME)
    peers[WEB].claim(["internal/api/"], reason="splitting handlers")
    new = said(call(server, "inbox"))
    assert f"[{q.id[:8]}; reply with the answer tool]" in new, new
    assert f"[{r.id[:8]}; take it with the take tool]" in new, new
    replies = [
        new,
        said(call(server, "status")),
        refused(call(server, "claim", paths=["internal/api/x.go"])),
        refused(call(server, "show", id="deadbeef")),
        refused(call(server, "show", id="xyz")),
        refused(call(server, "release", paths=["config/"])),
        refused(call(server, "done", request_id=r.id)),
        refused(call(server, "release")),
        refused(call(server, "release", paths=["internal/api/"], all=True)),
    ]
    for text in replies:
        assert "gitbus " not in text.replace("gitbus, ", ""), text
        assert not re.search(r"(^|\s)--[a-z]", text), text  # a CLI flag means nothing to a model
    assert replies[7].endswith("or set all to release every claim you hold."), replies[7]
    assert replies[8].endswith("Name paths or set all, not both."), replies[8]
    assert "Ask them with the ask tool (to: web-1)" in replies[2], replies[2]
    assert replies[3].endswith("see the search tool."), replies[3]
    assert "see the claims tool" in replies[5], replies[5]
    assert "take it with the take tool first" in replies[6], replies[6]


# -- one cursor with the hooks ------------------------------------------------------------------------

HOOK_ENV = {"GITBUS_AGENT": ME}


def hook(wt: Path, event: str, **fields: Any) -> str:
    """A Claude Code hook call of session s1 (agent api-1); the text it put in front of the model."""
    data = {
        "session_id": "s1",
        "transcript_path": "/tmp/claude/s1.jsonl",
        "cwd": str(wt),
        "hook_event_name": event,
    }
    code, out = handle({**data, **fields}, HOOK_ENV)
    assert code == 0
    return str(json.loads(out)["hookSpecificOutput"].get("additionalContext", "")) if out else ""


def tool_used(wt: Path) -> str:
    return hook(wt, "PostToolUse", tool_name="Bash", tool_input={"command": "make test"})


def test_what_the_mcp_inbox_returned_is_not_delivered_again_by_a_hook(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    assert "you are agent api-1" in hook(worktrees[0], "SessionStart", source="startup")
    m1 = peers[WEB].discover("the db config is config/db.yaml")
    assert m1.id[:8] in said(call(server, "inbox"))
    assert tool_used(worktrees[0]) == ""
    m2 = peers[DB].discover("migrations run at startup")
    later = tool_used(worktrees[0])
    assert m2.id[:8] in later and m1.id[:8] not in later, later


def test_what_a_hook_showed_is_not_returned_again_by_the_mcp_inbox(
    worktrees: list[Path], server: MCPServer, peers: dict[str, Bus]
) -> None:
    hook(worktrees[0], "SessionStart", source="startup")
    said(call(server, "inbox"))
    m1 = peers[WEB].discover("the db config is config/db.yaml")
    assert m1.id[:8] in tool_used(worktrees[0])
    assert said(call(server, "inbox")) == "nothing new"
    m2 = peers[DB].discover("migrations run at startup")
    assert said(call(server, "inbox")).splitlines() == [
        f'- {DB} reported: "migrations run at startup" [{m2.id[:8]}]'
    ]


# -- the real entry point over stdio -----------------------------------------------------------------


def stdio_params(command: str, args: list[str], cwd: Path) -> StdioServerParameters:
    """The server as Claude Code starts it: a child process in the worktree, the hermetic git env."""
    return StdioServerParameters(
        command=command, args=args, cwd=cwd, env={k: os.environ[k] for k in HERMETIC_ENV if k in os.environ}
    )


def over_stdio(
    params: StdioServerParameters, errlog: Path, script: Callable[[mcp.Client], Awaitable[T]]
) -> T:
    """Run `script(client)` against the server process; the whole exchange is bounded."""

    async def go() -> T:
        with errlog.open("w") as err:
            async with mcp.Client(stdio_client(params, errlog=err)) as client:
                return await script(client)

    try:
        return asyncio.run(asyncio.wait_for(go(), TIMEOUT_SECONDS))
    except BaseException:
        print("server stderr:\n" + errlog.read_text())
        raise


def test_python_m_gitbus_mcp_serves_a_worktree_over_stdio(
    worktrees: list[Path], peers: dict[str, Bus], tmp_path: Path
) -> None:
    wt = worktrees[1]  # the agent is the worktree's: wt-b
    peers[DB].claim(["config/"], reason="pool tuning")

    async def script(client: mcp.Client) -> tuple[set[str], str, str, str]:
        tools = {t.name for t in (await client.list_tools()).tools}
        status = said(await client.call_tool("status", {}))
        posted = said(await client.call_tool("discover", {"text": "ran over stdio", "paths": ["README.md"]}))
        conflict = refused(await client.call_tool("claim", {"paths": ["config/db.yaml"]}))
        return tools, status, posted, conflict

    err = tmp_path / "server-stderr.txt"
    tools, status, posted, conflict = over_stdio(
        stdio_params(sys.executable, ["-m", "gitbus", "mcp"], wt), err, script
    )
    assert tools == TOOLS
    assert status.startswith("you are wt-b;") and f"- {DB} holds config/ until " in status, status
    (m,) = peers[WEB].log(1, grep="ran over stdio")
    assert posted == f"discovery {m.id[:8]} posted: ran over stdio"
    assert (m.sender, m.paths) == ("wt-b", ("README.md",))
    assert conflict.startswith(
        f"Error executing tool claim: Claim on config/db.yaml is refused: {DB} holds config/"
    )
    assert err.read_text() == ""  # a refusal is the model's business, not a log line on stderr


def test_gitbus_mcp_outside_a_repository_fails_fast_in_one_sentence(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gitbus", "-C", str(tmp_path), "mcp"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("gitbus: ") and r.stderr.count("\n") == 1, r.stderr


# -- registration: gitbus install claude ---------------------------------------------------------------

USER_MCP: dict[str, Any] = {
    "mcpServers": {"docs": {"command": "npx", "args": ["-y", "docs-mcp"], "env": {"TOKEN_FILE": "~/.t"}}},
    "x-note": "kept",
}


def gb(wt: Path, *args: str) -> str:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r.stdout


def read(f: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(f.read_text())
    return obj


def test_install_registers_the_server_in_every_worktree_idempotently(worktrees: list[Path]) -> None:
    exe, *args = shlex.split(gitbus_command())
    gb(worktrees[1], "install", "claude")
    first = {wt: (wt / ".mcp.json").read_text() for wt in worktrees}
    for wt in worktrees:
        server = {"command": exe, "args": [*args, "mcp"], "alwaysLoad": True}  # docs/claude-code.md
        assert read(wt / ".mcp.json") == {"mcpServers": {"gitbus": server}}
        assert git(wt, "status", "--porcelain") == ""  # kept out of git (info/exclude)
    gb(worktrees[1], "install", "claude")
    assert {wt: (wt / ".mcp.json").read_text() for wt in worktrees} == first


def test_uninstall_removes_only_the_gitbus_server(worktrees: list[Path]) -> None:
    (worktrees[0] / ".mcp.json").write_text(json.dumps(USER_MCP, indent=2) + "\n")
    gb(worktrees[0], "install", "claude")
    servers = read(worktrees[0] / ".mcp.json")["mcpServers"]
    assert set(servers) == {"docs", "gitbus"} and servers["docs"] == USER_MCP["mcpServers"]["docs"]
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert read(worktrees[0] / ".mcp.json") == USER_MCP
    for wt in worktrees[1:]:
        assert not (wt / ".mcp.json").exists()  # created by install, so removed by uninstall


def test_uninstall_keeps_a_file_the_user_had_even_when_it_ends_empty(worktrees: list[Path]) -> None:
    (worktrees[0] / ".mcp.json").write_text("{}\n")
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert read(worktrees[0] / ".mcp.json") == {}


def test_the_registered_command_starts_a_working_server(
    worktrees: list[Path], peers: dict[str, Bus], tmp_path: Path
) -> None:
    gb(worktrees[0], "install", "claude")
    entry = read(worktrees[2] / ".mcp.json")["mcpServers"]["gitbus"]

    async def script(client: mcp.Client) -> str:
        return said(await client.call_tool("status", {}))

    status = over_stdio(
        stdio_params(entry["command"], entry["args"], worktrees[2]), tmp_path / "err.txt", script
    )
    assert status.startswith("you are wt-c;")


def test_a_peers_words_that_name_a_cli_command_reach_the_model_unchanged(
    server: MCPServer, peers: dict[str, Bus]
) -> None:
    peers[WEB].discover("run `gitbus log` and `gitbus claims` before you push")
    out = said(call(server, "search", text="before you push"))
    assert '"run `gitbus log` and `gitbus claims` before you push"' in out, out


def test_show_keeps_a_long_thread_within_a_budget(server: MCPServer, peers: dict[str, Bus]) -> None:
    q = peers[WEB].ask("which pool size?")
    for i in range(40):
        peers[DB].answer(q.id, f"answer {i}: " + "x" * 300)
    out = said(call(server, "show", id=q.id))
    assert len(out) < 8000 and out.endswith("more"), out[-200:]


def test_show_finds_an_answer_behind_a_flood_of_replies_and_says_how_many_it_left_out(
    server: MCPServer, peers: dict[str, Bus]
) -> None:
    """More than 2,000 newer replies (a peer's flood) neither hide the answer nor reach the model whole."""
    q = peers[WEB].ask("which port does the api use?", to=ME)
    peers[ME].answer(q.id, "8080 since monday")
    clock = FakeClock(time.time_ns() // 1_000_000 + 1000)
    flood = [f"no, {i}" for i in range(OPEN_WINDOW + 1)]
    bulk_discoveries(peers[DB].repo, DB, flood, clock, q)
    out = said(call(server, "show", id=q.id))
    lines = out.splitlines()
    assert lines[lines.index("replies:") + 1].startswith(f"- {ME} answered"), out
    assert "8080 since monday" in out and len(out) < 8000, out[-300:]
    shown = len(lines) - lines.index("replies:") - 1  # those that fit in the budget, oldest first
    assert out.endswith(f" and {len(flood) + 1 - shown} more"), out[-200:]


def test_show_finds_an_answer_behind_many_newer_messages(server: MCPServer, peers: dict[str, Bus]) -> None:
    q = peers[WEB].ask("which port does the api use?", to=ME)
    peers[ME].answer(q.id, "8080 since monday")
    clock = FakeClock(time.time_ns() // 1_000_000 + 1000)
    bulk_discoveries(peers[DB].repo, DB, [f"finding {i}" for i in range(OPEN_WINDOW + 1)], clock)
    out = said(call(server, "show", id=q.id))
    assert "no replies" not in out and "8080 since monday" in out, out


# -- what cannot be parsed gets an answer ----------------------------------------------------------


def _call_line(rid: int, tool: str, arguments: str) -> bytes:
    """A tools/call written by hand: the arguments go on the wire exactly as given."""
    head = f'{{"jsonrpc":"2.0","id":{rid},"method":"tools/call","params":{{"name":"{tool}","arguments":'
    return (head + arguments + "}}").encode()


UNPARSABLE = {  # what a client may send that the SDK's JSON parser refuses; each one line, with its id
    "a-lone-surrogate": (_call_line(11, "discover", '{"text":"\\ud800"}'), 11),
    "nesting-200-deep": (
        _call_line(12, "discover", '{"text":"x","paths":' + "[" * 200 + "]" * 200 + "}"),
        12,
    ),
    "a-5000-digit-integer": (_call_line(13, "search", '{"text":"x","limit":' + "9" * 5000 + "}"), 13),
    "malformed-json-cut-short": (b'{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":', 14),
    "nesting-100000-deep": (_call_line(15, "status", '{"x":' + "[" * 100_000 + "]" * 100_000 + "}"), 15),
    "malformed-json": (b'{"jsonrpc":"2.0","method":"tools/call","id":}', None),
    "not-json-at-all": (b"hello", None),
}


class RawServer:
    """`gitbus mcp` as a child process spoken to line by line, every read bounded in time."""

    def __init__(self, wt: Path, errlog: Path) -> None:
        env = {k: os.environ[k] for k in ("PATH", "HOME", *HERMETIC_ENV) if k in os.environ}
        self.err = errlog.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitbus", "mcp"],
            cwd=wt,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
        )
        self.buffer = b""

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def reply(self) -> dict[str, Any] | None:
        """The next line the server writes, parsed, or None when none comes within the timeout."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT_SECONDS / 2
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        got: dict[str, Any] = json.loads(line)
        return got

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(TIMEOUT_SECONDS)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(TIMEOUT_SECONDS)
            self.err.close()


@pytest.fixture
def raw_server(worktrees: list[Path], peers: dict[str, Bus], tmp_path: Path) -> Iterator[RawServer]:
    server = RawServer(worktrees[0], tmp_path / "server-stderr.txt")
    try:
        hello = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        server.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}).encode())
        assert (server.reply() or {}).get("id") == 0
        server.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("case", list(UNPARSABLE))
def test_a_message_the_server_cannot_parse_gets_a_parse_error_and_the_server_goes_on(
    raw_server: RawServer, worktrees: list[Path], tmp_path: Path, case: str
) -> None:
    """The SDK drops what its parser refuses, so the client would wait for its own timeout: each such
    line gets a JSON-RPC parse error (with the request's id when it can be read, else null), and a
    line on stderr; nothing is written and the next call is served."""
    line, rid = UNPARSABLE[case]
    before = git(worktrees[0], "for-each-ref", "refs/bus/")
    raw_server.send(line)
    got = raw_server.reply()
    assert got is not None, "no reply to a message the server could not parse"
    assert (got.get("id"), got.get("error", {}).get("code")) == (rid, -32700), got
    message = got["error"]["message"]
    assert message.startswith("Parse error") and "\n" not in message and len(message) < 300, message
    raw_server.send(_call_line(20, "status", "{}"))
    alive = raw_server.reply()
    assert alive is not None and alive["id"] == 20 and "you are " in json.dumps(alive), alive
    assert git(worktrees[0], "for-each-ref", "refs/bus/") == before
    raw_server.close()
    logged = (tmp_path / "server-stderr.txt").read_text().splitlines()
    said_id = "null" if rid is None else str(rid)
    assert len(logged) == 1 and logged[0].startswith(
        f"gitbus mcp: answered a message it could not read (id {said_id}): "
    ), logged


def test_a_json_message_that_is_no_json_rpc_gets_an_invalid_request_error(raw_server: RawServer) -> None:
    raw_server.send(b'{"jsonrpc":"2.0","id":31,"method":5}')
    got = raw_server.reply()
    assert got is not None and (got["id"], got["error"]["code"]) == (31, -32600), got
    raw_server.send(b"[1, 2]")
    got = raw_server.reply()
    assert got is not None and (got["id"], got["error"]["code"]) == (None, -32600), got


def test_a_request_cut_short_inside_a_string_is_read_in_one_pass() -> None:
    """Reading a refused line's id must not cost more than one pass over it: a 1 MB line cut short
    in a string full of escaped quotes once took time growing with its square (half an hour), with
    the server's event loop blocked meanwhile. Run apart, so a regression fails rather than hangs."""
    code = (
        "from gitbus.mcp_wire import _members\n"
        "line = '{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":[\"'\n"
        "line += 'a\\\\\"' * 300_000\n"
        "assert _members(line)['id'] == 7, _members(line)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
