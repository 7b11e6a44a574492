from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gitbus.bus import OPEN_WINDOW, REPLIES_SHOWN, Bus
from gitbus.cli import app
from gitbus.clock import FakeClock

from .conftest import git
from .crowded import bulk_discoveries
from .test_fastpath import DAMAGES, damage

runner = CliRunner()


def gb(wt: Path, agent: str, *args: str, stdin: bytes | str | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, ["-C", str(wt), "-a", agent, *args], input=stdin, env={"COLUMNS": "120"})
    return r.exit_code, r.stdout, r.stderr


def refs(wt: Path) -> str:
    return git(wt, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.fixture
def joined(worktrees: list[Path]) -> list[Path]:
    for wt, name in zip(worktrees, ("api-1", "web-1", "db-1"), strict=True):
        assert gb(wt, name, "init")[0] == 0
    return worktrees


def test_every_command_has_help() -> None:
    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {
        "claim",
        "release",
        "renew",
        "claims",
        "discover",
        "ask",
        "answer",
        "request",
        "take",
        "done",
        "log",
        "show",
        "inbox",
        "status",
        "agents",
        "init",
        "join",
        "demo",
    } <= set(names)
    for name in names:
        r = runner.invoke(app, [str(name), "--help"])
        assert r.exit_code == 0 and "--help" in r.stdout, name


def test_a_refused_claim_exits_3_naming_holder_path_reason_and_expiry(joined: list[Path]) -> None:
    assert gb(joined[0], "api-1", "claim", "internal/api/", "--reason", "splitting handlers")[0] == 0
    code, out, err = gb(joined[1], "web-1", "claim", "internal/api/handler.go")
    assert code == 3
    assert err.count("\n") == 1
    assert "api-1 holds internal/api/ until" in err and "splitting handlers" in err
    code, out, _ = gb(joined[1], "web-1", "claim", "internal/", "--json")
    assert code == 3 and json.loads(out)["holder"] == "api-1"


def test_a_glob_claim_exits_1_in_one_line_naming_the_folder_to_claim(joined: list[Path]) -> None:
    code, out, err = gb(joined[0], "api-1", "claim", "internal/**")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "name internal/ for everything under it" in err
    assert json.loads(gb(joined[1], "web-1", "claims", "--json")[1]) == []


def test_a_glob_given_to_a_command_that_only_reads_is_refused_without_talk_of_claiming(
    joined: list[Path],
) -> None:
    glob = "src/*.py"
    for args in (["guard", glob], ["log", "--path", glob], ["discover", "x", "--path", glob]):
        code, out, err = gb(joined[0], "api-1", *args)
        assert code == 1 and out == "" and err.count("\n") == 1, args
        assert "is a pattern" in err and "claim" not in err, (args, err)


def test_a_compound_ttl_is_a_lease_and_a_bad_one_is_one_line_listing_the_forms(joined: list[Path]) -> None:
    code, _, err = gb(joined[0], "api-1", "claim", "config/", "--ttl", "30m1h")
    assert code == 1 and err.count("\n") == 1 and "1h30m" in err and "500ms" in err
    assert gb(joined[0], "api-1", "claim", "config/", "--ttl", "1H30m")[0] == 0
    [held] = json.loads(gb(joined[0], "api-1", "claims", "--json")[1])
    assert held["expires_at"] != held["claimed_at"]
    assert gb(joined[0], "api-1", "renew", "--ttl", "1.5h")[0] == 0


def plain(wt: Path, *args: str) -> tuple[int, str, str]:
    """gitbus as a person types it: no -a, no GITBUS_AGENT."""
    r = runner.invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "120"})
    return r.exit_code, r.stdout, r.stderr


def test_init_in_the_main_checkout_sets_up_the_bus_without_making_it_an_agent(worktrees: list[Path]) -> None:
    main, wt_b = worktrees[0], worktrees[1]
    code, out, _ = plain(main, "init")
    assert code == 0 and "not an agent" in out and "gitbus join --name" in out
    assert json.loads(plain(main, "agents", "--json")[1]) == []
    assert plain(wt_b, "init")[0] == 0
    assert [a["name"] for a in json.loads(plain(main, "agents", "--json")[1])] == ["wt-b"]
    assert plain(main, "join", "--name", "lead")[0] == 0
    assert [a["name"] for a in json.loads(plain(main, "agents", "--json")[1])] == ["lead", "wt-b"]
    assert gb(main, "api-1", "init")[0] == 0  # a name given is asking
    assert "api-1" in [a["name"] for a in json.loads(plain(main, "agents", "--json")[1])]


def test_claim_release_and_claims_round_trip_in_json(joined: list[Path]) -> None:
    code, out, _ = gb(joined[0], "api-1", "claim", "internal/api", "config/db.yaml", "--ttl", "10m", "--json")
    assert code == 0
    claimed = json.loads(out)
    assert claimed["type"] == "claim" and claimed["paths"] == ["internal/api/", "config/db.yaml"]
    listed = json.loads(gb(joined[1], "web-1", "claims", "--json")[1])
    assert {c["path"] for c in listed} == {"internal/api/", "config/db.yaml"}
    assert set(listed[0]) >= {"path", "owner", "reason", "claimed_at", "expires_at"}
    assert gb(joined[0], "api-1", "release", "--all")[0] == 0
    assert json.loads(gb(joined[1], "web-1", "claims", "--json")[1]) == []


def test_messages_in_json_have_the_documented_fields(joined: list[Path]) -> None:
    gb(joined[0], "api-1", "discover", "db config is config/db.yaml", "--path", "config/db.yaml")
    [m] = json.loads(gb(joined[1], "web-1", "log", "-n", "1", "--json")[1])
    assert set(m) >= {"id", "type", "from", "to", "text", "paths", "reply_to", "time"}
    assert (m["type"], m["from"], m["to"], m["paths"]) == ("discovery", "api-1", "*", ["config/db.yaml"])


def test_question_answer_and_inbox_through_the_cli(joined: list[Path]) -> None:
    q = json.loads(gb(joined[1], "web-1", "ask", "where is the db config?", "--to", "db-1", "--json")[1])
    gb(joined[2], "db-1", "answer", q["id"][:8], "config/db.yaml")
    inbox = json.loads(gb(joined[1], "web-1", "inbox", "--json", "--mark-read")[1])["messages"]
    assert [m["type"] for m in inbox][-1] == "answer" and inbox[-1]["reply_to"] == q["id"]
    assert json.loads(gb(joined[1], "web-1", "inbox", "--json")[1]) == {"messages": [], "more": 0}
    shown = json.loads(gb(joined[0], "api-1", "show", q["id"], "--json")[1])
    assert [r["text"] for r in shown["replies"]] == ["config/db.yaml"]


def test_show_finds_an_answer_behind_a_flood_of_replies_and_counts_what_it_leaves_out(
    joined: list[Path],
) -> None:
    """More than 2,000 newer replies (a peer's flood) neither hide the answer nor come out whole."""
    q = json.loads(gb(joined[1], "web-1", "ask", "which port?", "--to", "api-1", "--json")[1])
    gb(joined[0], "api-1", "answer", q["id"], "8080 since monday")
    spammer = Bus.open(joined[2], "db-1")
    clock = FakeClock(time.time_ns() // 1_000_000 + 1000)
    flood = bulk_discoveries(
        spammer.repo, "db-1", [f"no, {i}" for i in range(OPEN_WINDOW + 1)], clock, spammer.find(q["id"])
    )
    code, out, _ = gb(joined[1], "web-1", "show", q["id"])
    assert code == 0 and "8080 since monday" in out, out[-500:]
    left_out = len(flood) + 1 - REPLIES_SHOWN
    assert out.rstrip().endswith(f"… and {left_out} newer replies, not shown."), out[-200:]
    shown = json.loads(gb(joined[1], "web-1", "show", q["id"], "--json")[1])
    assert shown["replies"][0]["text"] == "8080 since monday" and len(shown["replies"]) == REPLIES_SHOWN
    assert shown["replies_left_out"] == left_out


def test_request_take_done_through_the_cli(joined: list[Path]) -> None:
    r = json.loads(gb(joined[0], "api-1", "request", "add an index", "--json")[1])
    assert gb(joined[2], "db-1", "take", r["id"])[0] == 0
    code, _, err = gb(joined[1], "web-1", "take", r["id"])
    assert code == 3 and "already taken by db-1" in err
    assert gb(joined[2], "db-1", "done", r["id"], "added")[0] == 0


def test_text_can_come_from_stdin(joined: list[Path]) -> None:
    assert gb(joined[0], "api-1", "discover", "-", stdin="line one\nline two\n")[0] == 0
    [m] = json.loads(gb(joined[0], "api-1", "log", "-n", "1", "--json")[1])
    assert m["text"] == "line one\nline two"


def test_status_and_agents_render_for_people_and_programs(joined: list[Path]) -> None:
    gb(joined[0], "api-1", "claim", "internal/api/")
    code, out, _ = gb(joined[1], "web-1", "status")
    assert code == 0 and "You are web-1" in out and "internal/api/" in out
    s = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert s["me"] == "web-1" and s["other_claims"][0]["owner"] == "api-1"
    a = json.loads(gb(joined[1], "web-1", "agents", "--json")[1])
    assert {x["name"] for x in a} == {"api-1", "web-1", "db-1"}
    assert gb(joined[1], "web-1", "agents")[0] == 0
    assert gb(joined[1], "web-1", "log")[0] == 0


@pytest.mark.parametrize("how", [*sorted(DAMAGES), "folder"])
def test_status_names_a_damaged_ref_and_how_to_repair_it(joined: list[Path], how: str) -> None:
    """A bus ref that is there but cannot be read (emptied, cut short, symbolic, a symbolic link, a
    folder in its place, its packed-refs line damaged, or packed-refs unreadable) is named by
    `gitbus status`, with a line on the repair, and listed by `status --json` beside the count."""
    gb(joined[0], "api-1", "claim", "internal/api/")  # refs/bus/ledger: the tombstone
    common = joined[0] / ".git"
    if how == "folder":
        ref = "refs/bus/ledger"
        (common / ref).unlink()
        (common / ref).mkdir()
    else:
        ref = "refs/bus/agents/api-1"
        damage(common, ref, how)
    named = "packed-refs" if how == "packed CRLF" else ref
    code, out, err = gb(joined[1], "web-1", "status")
    assert code == 0 and err == "", err
    lines = out.splitlines()
    shown = [line for line in lines if line.startswith(f"{named} ")]
    assert len(shown) == 1 and (how == "folder" or DAMAGES[how][2] in shown[0]), out
    repair = [line for line in lines if line.startswith("To repair a damaged ref: ")]
    assert len(repair) == 1 and str(common) in repair[0], out
    assert ("packed-refs" in repair[0]) == how.startswith("packed"), repair
    s = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert s["damaged_refs"] == [named] and s["skipped"] >= 1, s


def test_status_says_the_claims_are_unknown_when_a_ledger_cannot_be_read(joined: list[Path]) -> None:
    """A damaged ledger ref leaves its claims unknown, not none: status says so (and that edits are
    refused meanwhile) where it lists the claims, and --json says it beside the lists."""
    gb(joined[0], "api-1", "claim", "internal/api/")
    common = joined[0] / ".git"
    shard = next(p for p in (common / "refs" / "bus" / "ledgers").iterdir() if p.name != "main")
    shard.write_bytes(b"")  # emptied: the claim on internal/api/ cannot be read
    for env in ({}, {"FORCE_COLOR": "1"}):  # under a pipe, and at a terminal (rich)
        r = runner.invoke(app, ["-C", str(joined[1]), "-a", "web-1", "status"], env={"COLUMNS": "200", **env})
        assert r.exit_code == 0, r.stdout
        unknown = [line for line in r.stdout.splitlines() if "claims cannot be read" in line]
        assert len(unknown) == 1 and shard.name in unknown[0] and "refused" in unknown[0], r.stdout
        assert "no claims" not in r.stdout, r.stdout
    s = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert s["claims_unknown"] and shard.name in s["claims_unknown"], s
    gb(joined[0], "api-1", "claim", "docs/")  # a readable shard: no word of it
    shard.unlink()  # the damaged one gone too (as if repaired by deleting it): claims known again
    s = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert s["claims_unknown"] is None, s


def test_status_names_a_few_damaged_refs_inert_and_counts_the_rest(joined: list[Path]) -> None:
    """Any number of refs can be damaged, and a ref's name is any file name: status names the
    first few, escape sequences and markup shown as text, and counts the rest; --json lists all."""
    common = joined[0] / ".git"
    hostile = "refs/bus/agents/\x1b[31mred[bold]"
    (common / hostile).write_bytes(b"0123abcd\n")  # cut short
    flood = [f"refs/bus/agents/ghost-{i}" for i in range(8)]
    for ref in flood:
        (common / ref).write_bytes(b"")
    for env in ({}, {"FORCE_COLOR": "1"}):  # under a pipe, and at a terminal (rich)
        r = runner.invoke(app, ["-C", str(joined[1]), "-a", "web-1", "status"], env={"COLUMNS": "200", **env})
        assert r.exit_code == 0, r.stdout
        assert (
            "\x1b[31m" not in r.stdout and "refs/bus/agents/\\x1b[31mred[bold] holds no object id" in r.stdout
        )
        assert "ghost-3 is empty" in r.stdout and "ghost-4" not in r.stdout, r.stdout
        assert "4 more damaged ref(s)" in r.stdout, r.stdout
    s = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert s["damaged_refs"] == sorted([hostile, *flood]) and s["skipped"] >= 9, s


BAD_INPUTS = [
    (["discover", ""], None, "empty"),
    (["discover", "-"], "   \n", "empty"),
    (["discover", "-"], "x" * (64 * 1024 + 1), "64 KiB"),
    (["discover", "-"], "nul\x00inside", "control"),
    (["discover", "-"], b"\xff\xfe bad utf-8", "not valid UTF-8"),
    (["ask", "hi", "--to", "nobody"], None, "No agent named 'nobody'"),
    (["ask", "hi", "--to", "../x"], None, "not a valid agent name"),
    (["claim", "../outside"], None, "outside the repository"),
    (["claim", ".git/config"], None, "git's own directory"),
    (["claim", "."], None, "repository root"),
    (["claim", "a/", "--ttl", "soon"], None, "not a duration"),
    (["claim", "a/", "--ttl", "30d"], None, "lease must be"),
    (["claim", "a/", "--ttl", "500ms"], None, "lease must be"),
    (["renew", "--ttl", "30d"], None, "lease must be"),
    (["log", "--path", "."], None, "repository root"),
    (["release", "nothing/here/"], None, "no claim on"),
    (["answer", "zz", "text"], None, "not a message id"),
    (["answer", "abcdef12", "text"], None, "No message has id"),
    (["take", "1234"], None, "No message has id"),
    (["log", "--type", "gossip"], None, "not a message type"),
    (["log", "--since", "yesterday-ish"], None, "neither a duration"),
    (["init", "--remote", "-x y"], None, "not a valid remote"),
    (["init", "--remote", "nosuch"], None, "git has no remote named 'nosuch'"),
    # bytes that are not UTF-8 in argv arrive as surrogate escapes
    (["claim", "a\udcffb"], None, "not valid UTF-8"),
    (["discover", "hi", "--path", "a\udcffb"], None, "not valid UTF-8"),
    (["ask", "hi", "--path", "a\udcff"], None, "not valid UTF-8"),
    (["request", "hi", "--path", "a\udcff"], None, "not valid UTF-8"),
    (["release", "a\udcff"], None, "not valid UTF-8"),
    (["log", "--path", "a\udcff"], None, "not valid UTF-8"),
]


@pytest.mark.parametrize(("args", "stdin", "error"), BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_a_nonzero_exit_and_writes_nothing(
    joined: list[Path], args: list[str], stdin: str | bytes | None, error: str
) -> None:
    before = refs(joined[0])
    code, out, err = gb(joined[0], "api-1", *args, stdin=stdin)
    assert code == 1, (out, err)
    assert error in err
    assert err.startswith("gitbus: ") and "Traceback" not in err + out
    assert refs(joined[0]) == before


@pytest.mark.parametrize("name", ["../x", "refs/heads/main", "a b", "x.lock", "UPPER"])
def test_a_hostile_agent_name_is_refused_before_anything_is_written(joined: list[Path], name: str) -> None:
    before = refs(joined[0])
    code, _, err = gb(joined[0], name, "discover", "hello")
    assert code == 1 and "not a valid agent name" in err
    assert refs(joined[0]) == before


def test_a_path_that_is_not_utf8_in_a_real_argv_is_refused_in_one_line(joined: list[Path]) -> None:
    before = refs(joined[0])
    cmd = [sys.executable.encode(), b"-m", b"gitbus", b"-a", b"api-1", b"claim", b"src/a\xffb.go"]
    r = subprocess.run(cmd, cwd=joined[0], capture_output=True, timeout=60)
    assert r.returncode == 1 and r.stdout == b"", r.stderr
    assert r.stderr.count(b"\n") == 1 and b"not valid UTF-8" in r.stderr and b"Traceback" not in r.stderr
    assert refs(joined[0]) == before


def test_a_refused_claim_by_a_new_agent_writes_not_even_its_join(joined: list[Path], tmp_path: Path) -> None:
    assert gb(joined[0], "api-1", "claim", "internal/")[0] == 0
    fresh = tmp_path / "fresh"
    git(joined[0], "worktree", "add", "-q", "-b", "fresh", str(fresh))
    before = refs(joined[0])
    assert gb(fresh, "new-1", "claim", "internal/api/")[0] == 3
    assert gb(fresh, "new-1", "release", "nothing/here/")[0] == 1
    assert refs(joined[0]) == before  # no refs/bus/agents/new-1
    assert gb(fresh, "new-1", "claim", "web/")[0] == 0
    assert "refs/bus/agents/new-1" in refs(joined[0])


def test_paths_with_spaces_and_unicode_are_claimed_as_typed(joined: list[Path]) -> None:
    code, out, _ = gb(joined[0], "api-1", "claim", "docs/my notes.md", "données/été/", "--json")
    assert code == 0 and json.loads(out)["paths"] == ["docs/my notes.md", "données/été/"]


def test_a_malformed_command_line_exits_2(joined: list[Path]) -> None:
    assert gb(joined[0], "api-1", "claim")[0] == 2
    assert gb(joined[0], "api-1", "log", "-n", "zero")[0] == 2


def test_outside_a_repository_the_error_says_so(tmp_path: Path) -> None:
    code, _, err = gb(tmp_path, "api-1", "log")
    assert code == 1 and "not inside a git repository" in err


def test_the_real_entry_points_run(repo: Path) -> None:
    env = {**os.environ, "GITBUS_AGENT": "cli-1"}
    out = subprocess.run(
        [sys.executable, "-m", "gitbus", "discover", "via python -m"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "discovery" in out.stdout
    log = subprocess.run(
        [sys.executable, "-m", "gitbus", "log", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(log.stdout)[0]["text"] == "via python -m"


def test_demo_runs_the_scenario_and_leaves_nothing_unless_kept(tmp_path: Path) -> None:
    r = runner.invoke(app, ["demo", "--json"])
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["kept"] is None
    outcomes = [(s["action"], s["ok"]) for s in result["steps"]]
    assert ("tries to claim internal/api/handler.go", False) in outcomes
    assert ("tries to take the same request", False) in outcomes
    assert {c["owner"] for c in result["claims"]} == {"api-1", "web-1"}
    kept = tmp_path / "kept"
    r = runner.invoke(app, ["demo", "--keep", str(kept)])
    assert r.exit_code == 0 and (kept / "api" / ".git").is_dir() and (kept / "web").is_dir()
    assert "refs/bus/ledger" in git(kept / "web", "for-each-ref", "refs/bus/")
    r = runner.invoke(app, ["demo", "--keep", str(kept)])
    assert r.exit_code == 1 and "not empty" in r.stderr


# -- gitbus log --follow ----------------------------------------------------------------------------

FOLLOW_WAIT = 10.0


class Follower:
    """`gitbus log --follow` in a subprocess; a thread reads its lines so that every wait is bounded."""

    def __init__(self, wt: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitbus", "-C", str(wt), "log", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As a terminal starts it: Ctrl-C not ignored. A child of the test worker can otherwise
            # inherit SIGINT ignored (seen under the full parallel suite), and then never stops.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self) -> str:
        try:
            return self.lines.get(timeout=FOLLOW_WAIT)
        except queue.Empty:
            raise AssertionError(f"waited {FOLLOW_WAIT:.0f}s for a line from gitbus log --follow") from None

    def stop(self) -> int:
        """Ctrl-C, then its exit code (killed if it does not end in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(FOLLOW_WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(FOLLOW_WAIT)


@pytest.fixture
def follow(joined: list[Path]) -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(*args: str) -> Follower:
        started.append(Follower(joined[0], *args))
        return started[-1]

    yield start
    for f in started:
        f.stop()


def post(wt: Path, agent: str, *args: str) -> None:
    """Post from a process of its own, as another agent would."""
    cmd = [sys.executable, "-m", "gitbus", "-C", str(wt), "-a", agent, *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=FOLLOW_WAIT)


def test_log_follow_prints_the_recent_then_what_is_posted_after_it_started(
    joined: list[Path], follow: Callable[..., Follower]
) -> None:
    assert gb(joined[1], "web-1", "discover", "before the follow", "-p", "web/")[0] == 0
    f = follow("-n", "1")
    # under a pipe, the rows of docs/cli.md § Output under a pipe: id, time, type, from, to, text
    assert f.line().split("\t")[2:] == ["discovery", "web-1", "*", "before the follow  web/"]
    post(joined[2], "db-1", "ask", "--to", "web-1", "is anyone there?")
    row = f.line().split("\t")
    assert row[2:] == ["question", "db-1", "web-1", "is anyone there?"]
    assert re.fullmatch(r"[0-9a-f]{16}", row[0]) and row[1].endswith("Z")
    assert f.stop() == 0  # Ctrl-C ends it quietly
    assert f.proc.stderr is not None and f.proc.stderr.read() == ""


def test_log_follow_keeps_its_filters_and_prints_json_one_object_a_line(
    joined: list[Path], follow: Callable[..., Follower]
) -> None:
    f = follow("--type", "question", "--json")
    post(joined[1], "web-1", "discover", "not a question")
    post(joined[1], "web-1", "ask", "first question?")
    post(joined[2], "db-1", "ask", "second question?")
    got = [json.loads(f.line()) for _ in range(2)]
    assert [(m["type"], m["from"], m["text"]) for m in got] == [
        ("question", "web-1", "first question?"),
        ("question", "db-1", "second question?"),
    ]
    assert f.stop() == 0
    assert f.lines.empty()  # the discovery never came through


def test_a_claim_on_a_file_named_with_glob_characters_is_released_and_renewed_by_name(
    joined: list[Path],
) -> None:
    for rel in ("lib/x*y.txt", "lib/n[1].py"):
        (joined[0] / rel).parent.mkdir(parents=True, exist_ok=True)
        (joined[0] / rel).write_text("x\n")
    assert gb(joined[0], "api-1", "claim", "lib/x*y.txt", "lib/n[1].py", "--ttl", "10m")[0] == 0
    for rel in ("lib/x*y.txt", "lib/n[1].py"):
        (joined[0] / rel).unlink()  # gone from the worktree; the claims stay
    code, _, err = gb(joined[0], "api-1", "renew", "lib/x*y.txt", "--ttl", "20m")
    assert code == 0, err
    code, out, err = gb(joined[0], "api-1", "release", "lib/x*y.txt")
    assert (code, out) == (0, "released lib/x*y.txt\n"), err
    code, out, err = gb(joined[1], "web-1", "release", "lib/n[1].py", "--force", "-r", "stale")
    assert (code, out) == (0, "released lib/n[1].py\n"), err
    assert json.loads(gb(joined[0], "api-1", "claims", "--json")[1]) == []
    code, _, err = gb(joined[0], "api-1", "claim", "lib/*.py")  # typed, a pattern is still refused
    assert code == 1 and "is a pattern" in err
