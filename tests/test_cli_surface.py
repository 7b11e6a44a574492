"""The command line as people and scripts meet it: usage errors, --version, output under a pipe,
`inbox -n`, capped counts, `log -f` under a closing pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gitbus.cli import app

from .conftest import git
from .test_cli import gb, joined  # noqa: F401  (the fixture)

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["frob"],
        ["log", "--bogus"],
        ["show"],
        ["install"],
        ["install", "foo"],
        ["uninstall", "foo"],
        ["log", "-n", "0"],
    ],
    ids=" ".join,
)
def test_a_usage_error_exits_2_with_one_error_line_and_one_usage_line(args: list[str]) -> None:
    r = runner.invoke(app, args, prog_name="gitbus")
    lines = r.stderr.strip("\n").splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 2 and lines[0].startswith("gitbus: ") and lines[1].startswith("usage: gitbus"), lines
    assert r.stdout == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["install"],
            "gitbus: Missing argument 'claude|codex|gemini|git-hooks'. "
            "Choose from: claude, codex, gemini, git-hooks.",
        ),
        (
            ["install", "foo"],
            "gitbus: Invalid value for 'claude|codex|gemini|git-hooks': "
            "'foo' is not one of 'claude', 'codex', 'gemini', 'git-hooks'.",
        ),
        (["log", "-n", "0"], "gitbus: Invalid value for '-n': 0 is less than the minimum, 1."),
        (["log", "-n", "x"], "gitbus: Invalid value for '-n': 'x' is not a whole number."),
        (["release"], "gitbus: Name the paths to release, or use --all."),
    ],
    ids=["install", "install foo", "log -n 0", "log -n x", "release"],
)
def test_a_usage_error_is_said_in_one_plain_sentence(args: list[str], said: str) -> None:
    r = runner.invoke(app, args, prog_name="gitbus")
    assert r.exit_code == 2 and r.stderr.splitlines()[0] == said, r.stderr
    assert len(r.stderr.splitlines()) == 2


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    r = runner.invoke(app, ["--version"], prog_name="gitbus")
    assert r.exit_code == 0 and r.stdout == f"gitbus {version('gitbus')}\n"


def test_piped_claims_are_one_tab_separated_line_per_claim(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[0], "api-1", "claim", "internal/api/", "-r", "splitting\thandlers")
    gb(joined[1], "web-1", "claim", "web/", "web/app.js")
    code, out, _ = gb(joined[1], "web-1", "claims")
    rows = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and len(rows) == 3 and all(len(r) == 5 for r in rows), out
    assert {(r[0], r[1], r[3]) for r in rows} == {
        ("internal/api/", "api-1", "live"),
        ("web/", "web-1", "live"),
        ("web/app.js", "web-1", "live"),
    }
    api = next(r for r in rows if r[0] == "internal/api/")
    assert api[2].endswith("Z") and api[4] == "splitting\\x09handlers"


def test_piped_log_agents_and_status_draw_no_boxes(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[0], "api-1", "discover", "the tests are slow", "-p", "tests/")
    for cmd in (["log"], ["agents"], ["status"], ["inbox"], ["search", "slow"]):
        code, out, _ = gb(joined[1], "web-1", *cmd)
        assert code == 0 and not set(out) & set("│┃━─┏┗╇"), (cmd, out)
    log = gb(joined[1], "web-1", "log", "-n", "1")[1].splitlines()
    assert len(log) == 1
    id_, when, kind, sender, to, text = log[0].split("\t")
    assert (kind, sender, to, text) == ("discovery", "api-1", "*", "the tests are slow  tests/")
    assert len(id_) == 16 and when.endswith("Z")


def test_inbox_n_caps_what_it_prints_and_says_how_to_see_the_rest(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    for i in range(5):
        gb(joined[0], "api-1", "discover", f"finding {i}")
    code, out, err = gb(joined[1], "web-1", "inbox", "-n", "2")
    assert code == 0 and "finding 0" in out and "finding 1" in out and "finding 2" not in out
    assert err == "3 more: gitbus inbox -n 5\n"  # on stderr under a pipe: stdout stays rows
    page = json.loads(gb(joined[1], "web-1", "inbox", "-n", "2", "--json")[1])
    assert [m["text"] for m in page["messages"]] == ["finding 0", "finding 1"] and page["more"] == 3


def test_inbox_json_says_how_many_more_wait_so_mark_read_loses_nothing(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    for i in range(3):
        gb(joined[0], "api-1", "discover", f"finding {i}")
    seen: list[str] = []
    for _ in range(5):  # a script reading pages until nothing more waits
        page = json.loads(gb(joined[1], "web-1", "inbox", "-n", "2", "--json", "--mark-read")[1])
        seen += [m["text"] for m in page["messages"]]
        if not page["more"]:
            break
    assert seen == ["finding 0", "finding 1", "finding 2"]


def test_a_flooded_inbox_reads_only_its_first_page_and_pages_to_every_message_once(
    joined: list[Path],  # noqa: F811
    decoded: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the window (1,000 unread; 10 here) the first page is the newest and the walk stops
    after it (issue 16); the token it prints (`--before`) reaches older ones, and paging with
    --mark-read loses nothing."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 10, raising=False)
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    for i in range(30):
        gb(joined[0], "api-1", "discover", f"finding {i:02d}")
    decoded[0] = 0
    code, out, err = gb(joined[1], "web-1", "inbox", "-n", "5")
    assert code == 0 and decoded[0] <= 10 + 4
    assert [line.split("\t")[5] for line in out.splitlines()] == [f"finding {i}" for i in range(25, 30)]
    token = err.split("--before ")[1].split()[0]
    assert err == f"the newest unread; 6 or more older: gitbus inbox --before {token} -n 5\n"
    page = json.loads(gb(joined[1], "web-1", "inbox", "-n", "5", "--before", token, "--json")[1])
    assert [m["text"] for m in page["messages"]] == [f"finding {i}" for i in range(20, 25)]
    assert page["more"] >= 1 and page["newest_first"] is True
    assert page["next"] == f"gitbus inbox --before {page['before']} -n 5"
    seen: list[str] = []
    args = ["inbox", "-n", "5", "--json", "--mark-read"]
    for _ in range(10):  # a script reading pages until nothing more waits
        page = json.loads(gb(joined[1], "web-1", *args)[1])
        seen += [m["text"] for m in page["messages"]]
        if not page["more"] and not page.get("before"):
            break
        args = [*args[:5], "--before", page["before"]] if page.get("before") else args[:5]
    assert sorted(seen) == [f"finding {i:02d}" for i in range(30)] and len(seen) == 30
    assert json.loads(gb(joined[1], "web-1", "inbox", "--json")[1]) == {"messages": [], "more": 0}


def test_inbox_pages_marked_read_go_on_where_they_stopped(joined: list[Path]) -> None:  # noqa: F811
    """`--page N --mark-read` takes its messages off the list: the hint then names the same page
    number, which now holds the next ones, so following the hints skips nothing (issue 16)."""
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    for i in range(7):
        gb(joined[0], "api-1", "discover", f"finding {i}")
    seen: list[str] = []
    args = ["inbox", "-n", "2", "--page", "2", "--mark-read"]
    for _ in range(5):
        code, out, err = gb(joined[1], "web-1", *args)
        assert code == 0
        seen += [line.split("\t")[5] for line in out.splitlines()]
        if not err:
            break
        args = [*err.split(": ", 1)[1].split()[1:], "--mark-read"]
    assert seen == [f"finding {i}" for i in range(2, 7)]


def test_a_flooded_inbox_past_others_traffic_names_the_next_page_and_reaches_mine(
    joined: list[Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages for me behind a crowd's traffic (issue 16): the first page holds none of them and
    says so; its token's pages reach them; each unknown token is one line."""
    monkeypatch.setattr("gitbus.inbox_pages.INBOX_WINDOW", 5, raising=False)
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    gb(joined[0], "api-1", "ask", "for web", "--to", "web-1")
    for i in range(40):
        gb(joined[0], "api-1", "ask", f"chat {i}", "--to", "db-1")
    code, out, err = gb(joined[1], "web-1", "inbox", "-n", "1")
    assert code == 0 and out == "" and "nothing unread among the newest" in err and "--before" in err
    args = err.split(": ")[-1].split()[1:]
    for _ in range(20):
        code, out, err = gb(joined[1], "web-1", *args)
        if out:
            break
        args = err.split(": ")[-1].split()[1:]
    assert code == 0 and "for web" in out
    code, _, err = gb(joined[1], "web-1", "inbox", "--before", "feedfeedfeed")
    assert code == 1 and "start again with gitbus inbox" in err and err.count("\n") == 1


def test_inbox_n_with_mark_read_marks_only_what_it_printed(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    for i in range(3):
        gb(joined[0], "api-1", "discover", f"finding {i}")
    gb(joined[1], "web-1", "inbox", "-n", "2", "--mark-read")
    rest = json.loads(gb(joined[1], "web-1", "inbox", "--json")[1])
    assert [m["text"] for m in rest["messages"]] == ["finding 2"] and rest["more"] == 0


def test_an_unread_count_past_the_cap_prints_with_a_plus_and_exactly_the_cap_without() -> None:
    from gitbus.inbox_walk import UNREAD_COUNT_MAX, count_text

    assert count_text(UNREAD_COUNT_MAX + 1) == f"{UNREAD_COUNT_MAX}+"
    assert count_text(UNREAD_COUNT_MAX) == str(UNREAD_COUNT_MAX)
    assert count_text(UNREAD_COUNT_MAX - 1) == str(UNREAD_COUNT_MAX - 1)


def test_status_says_whether_the_unread_count_stopped_at_the_cap(
    joined: list[Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gitbus.inbox_walk
    import gitbus.status

    for module in (gitbus.status, gitbus.inbox_walk):
        monkeypatch.setattr(module, "UNREAD_COUNT_MAX", 3)
    gb(joined[1], "web-1", "inbox", "--mark-read")  # the joins
    for i in range(3):
        gb(joined[0], "api-1", "discover", f"finding {i}")
    exact = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert (exact["unread"], exact["unread_capped"]) == (3, False)
    assert "; 3 unread" in gb(joined[1], "web-1", "status")[1]
    gb(joined[0], "api-1", "discover", "finding 3")
    capped = json.loads(gb(joined[1], "web-1", "status", "--json")[1])
    assert (capped["unread"], capped["unread_capped"]) == (3, True)
    assert "; 3+ unread" in gb(joined[1], "web-1", "status")[1]


def test_log_follow_ends_soon_after_its_reader_goes_away(joined: list[Path]) -> None:  # noqa: F811
    cmd = f"{sys.executable} -m gitbus -C {joined[0]} -a api-1 log -f -n 1 | head -1"
    gb(joined[0], "api-1", "discover", "one line is all head wants")
    start = time.monotonic()
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=20, env=os.environ)
    assert "one line is all head wants" in r.stdout
    assert time.monotonic() - start < 8


def documented_json() -> list[dict[str, object]]:
    """The JSON examples of docs/cli.md § `--json`: a message, a claim, a refused claim."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    section = text.split("\n## `--json`\n", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block.split("```", 1)[0]) for block in section.split("```json\n")[1:]]


def test_the_documented_json_fields_are_the_ones_printed(joined: list[Path]) -> None:  # noqa: F811
    message, claim, refused = documented_json()
    code, out, _ = gb(joined[0], "api-1", "claim", "internal/api/", "-r", "splitting handlers", "--json")
    posted = json.loads(out)
    assert code == 0 and set(posted) - {"claims"} == set(message) | {"meta"}
    assert set(json.loads(gb(joined[0], "api-1", "claims", "--json")[1])[0]) == set(claim)
    code, out, _ = gb(joined[1], "web-1", "claim", "internal/api/handler.go", "--json")
    got = json.loads(out)
    assert code == 3 and set(got) == set(refused)
    for doc in (claim, refused):  # a time is ISO, its twin `_ms` epoch ms, in the docs as in the code
        for key, value in doc.items():
            kind = int if key.endswith("_ms") else str if key.endswith("_at") else None
            assert kind is None or isinstance(value, kind), key
    assert isinstance(got["expires_at"], str) and isinstance(got["expires_at_ms"], int)


def test_taking_a_request_addressed_to_another_agent_exits_3(joined: list[Path]) -> None:  # noqa: F811
    code, out, _ = gb(joined[0], "api-1", "request", "index users.email", "--to", "db-1", "--json")
    code, _, err = gb(joined[1], "web-1", "take", json.loads(out)["id"])
    assert code == 3 and "addressed to db-1" in err


def help_of(*path: str) -> str:
    r = runner.invoke(app, [*path, "--help"], prog_name="gitbus", env={"COLUMNS": "100"}, terminal_width=100)
    assert r.exit_code == 0, r.output
    return r.stdout


def test_help_names_values_in_capitals_not_python_types() -> None:
    claim = help_of("claim")
    assert "Usage: gitbus claim [OPTIONS] PATH...\n" in claim
    assert "--ttl DURATION" in claim and "--reason TEXT" in claim
    assert "Usage: gitbus release [OPTIONS] [PATH]...\n" in help_of("release")
    assert "--to AGENT" in help_of("ask") and "-n INTEGER" in help_of("log")
    assert "-a, --agent AGENT" in help_of()
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        text = help_of(name)
        assert not re.search(r"<\w|\{\w", text), (name, text)


def test_the_shell_completes_command_names() -> None:
    gitbus = Path(sys.executable).parent / "gitbus"
    env = {**os.environ, "_GITBUS_COMPLETE": "complete_bash", "COMP_WORDS": "gitbus cla", "COMP_CWORD": "1"}
    r = subprocess.run([str(gitbus)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["claim", "claims"]
    assert "--install-completion" in help_of() and "--show-completion" in help_of()


def entry_process(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The real `gitbus` entry point as a whole process, with `-X importtime` on stderr."""
    code = "import sys; sys.argv[0] = 'gitbus'; from gitbus.entry import main; main()"
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def test_hook_help_is_the_documented_help_and_a_bad_mode_is_a_usage_error(repo: Path) -> None:
    shown = entry_process(repo, "hook", "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == help_of("hook").split()  # the same words; click wraps at 80 here
    bad = entry_process(repo, "hook", "bogus")
    assert bad.returncode == 2 and len(said(bad.stderr)) == 2, bad.stderr
    assert said(bad.stderr)[0].startswith("gitbus: ") and said(bad.stderr)[1].startswith("usage: gitbus hook")


def test_the_hook_itself_still_starts_without_typer(repo: Path) -> None:
    r = entry_process(repo, "hook", stdin="{}")
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()}
    assert "typer" not in loaded and "gitbus" in loaded


def into_a_closed_pipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`gitbus ARGS` writing to a pipe whose reader has already gone (`| head -1` that finished)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [str(Path(sys.executable).parent / "gitbus"), "-C", str(cwd), "-a", "api-1", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)


def test_every_printing_command_exits_0_quietly_when_its_reader_has_gone(joined: list[Path]) -> None:  # noqa: F811
    found = json.loads(gb(joined[0], "api-1", "discover", "slow tests", "-p", "README.md", "--json")[1])
    gb(joined[0], "api-1", "claim", "config/")
    for args in (
        ["log"],
        ["log", "--json"],
        ["status"],
        ["status", "--json"],
        ["claims"],
        ["agents"],
        ["show", found["id"]],
        ["inbox"],
        ["search", "slow"],
        ["config"],
        ["history", "README.md"],
        ["discover", "more"],
        ["demo"],
    ):
        r = into_a_closed_pipe(joined[0], *args)
        assert (r.returncode, r.stderr) == (0, ""), (args, r.returncode, r.stderr)


def test_the_main_checkout_does_not_call_itself_an_agent_until_it_joins(repo: Path) -> None:
    r = runner.invoke(app, ["-C", str(repo), "init", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"agent": None, "joined": False, "remote": None}
    for typer_only in (False, True):  # the quick path and typer's print the same
        shown = entry_process(repo, "status") if not typer_only else None
        text = shown.stdout if shown else runner.invoke(app, ["-C", str(repo), "status"]).stdout
        assert text.splitlines()[0].startswith("The main checkout is not an agent"), text
        assert "You are" not in text
    as_json = json.loads(entry_process(repo, "status", "--json").stdout)
    assert as_json["me"] is None
    named = runner.invoke(app, ["-C", str(repo), "-a", "ops", "status"]).stdout
    assert named.startswith("You are ops;")


def test_a_piped_row_carries_the_whole_text_with_newlines_escaped(joined: list[Path]) -> None:  # noqa: F811
    long = " ".join(["why"] * 60)
    gb(joined[0], "api-1", "discover", f"line one\nline two\t{long}", "-p", "README.md")
    for typer_only in (False, True):
        out = (
            runner.invoke(app, ["-C", str(joined[1]), "-a", "web-1", "log", "-n", "1"]).stdout
            if typer_only
            else entry_process(joined[1], "-a", "web-1", "log", "-n", "1").stdout
        )
        (row,) = [line.split("\t") for line in out.splitlines()]
        assert row[5] == f"line one\\x0aline two\\x09{long}  README.md", row[5]


def test_log_follow_under_a_pipe_prints_the_documented_rows(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[0], "api-1", "discover", "one row\nof two lines")
    cmd = f"{sys.executable} -m gitbus -C {joined[0]} -a api-1 log -f -n 1 | head -1"
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=20, env=os.environ)
    (row,) = [line.split("\t") for line in r.stdout.splitlines()]
    assert row[2:] == ["discovery", "api-1", "*", "one row\\x0aof two lines"], row
    assert len(row[0]) == 16 and row[1].endswith("Z")


def test_piped_status_lists_open_requests_as_rows(joined: list[Path]) -> None:  # noqa: F811
    gb(joined[1], "web-1", "status")
    empty = entry_process(joined[1], "-a", "web-1", "status").stdout
    assert empty.endswith("Open requests\n"), empty  # an empty list prints nothing
    asked = json.loads(gb(joined[0], "api-1", "request", "index users.email", "--json")[1])
    gb(joined[0], "api-1", "request", "split the handlers")
    gb(joined[2], "db-1", "take", asked["id"])
    for out in (
        entry_process(joined[1], "-a", "web-1", "status").stdout,
        runner.invoke(app, ["-C", str(joined[1]), "-a", "web-1", "status"]).stdout,
    ):
        rows = [line.split("\t") for line in out.split("Open requests\n", 1)[1].splitlines()]
        assert sorted((r[2], r[3], r[5], r[6], r[7]) for r in rows) == [
            ("request", "api-1", "index users.email", "taken", "db-1"),
            ("request", "api-1", "split the handlers", "open", "-"),
        ], out


# -- --json as docs/cli.md § `--json` documents it ------------------------------------------------

Shapes = set[frozenset[str]]


def json_table() -> dict[str, Shapes]:
    """Each command of the `--json` table, with the key sets its cell writes as `{a, b, c}`."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    section = text.split("\n## `--json`\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, Shapes] = {}
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `") or len(cells) != 2:
            continue
        shapes = {
            frozenset(k.strip() for k in keys.split(","))
            for keys in re.findall(r"`\{([a-z_, ]+)\}`", cells[1])
        }
        for name in re.findall(r"`([a-z]+)`", cells[0]):
            table[name] = shapes
    return table


def keys(obj: object) -> Shapes:
    return {frozenset(obj)} if isinstance(obj, dict) else set()


def iso_without_twin(obj: object, where: str = "") -> list[str]:
    """Every ISO time anywhere in `obj` that has no `<key>_ms` epoch-ms twin beside it."""
    missing: list[str] = []
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            missing += iso_without_twin(item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", v):
                if not isinstance(obj.get(f"{k}_ms"), int):
                    missing.append(f"{where}.{k}")
            else:
                missing += iso_without_twin(v, f"{where}.{k}")
    return missing


def test_every_commands_json_has_the_fields_docs_cli_md_lists(
    joined: list[Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gitbus.settings import DEFAULTS

    monkeypatch.setattr("gitbus.claims.SKEW_MARGIN_MS", 0)  # an expired claim is open at once

    message, claim, _ = (set(d) for d in documented_json())
    table = json_table()
    api, web, db = joined

    def run(wt: Path, agent: str, *args: str) -> Any:
        code, out, err = gb(wt, agent, *args, "--json")
        assert code in (0, 3), (args, err)
        return json.loads(out)

    def is_message(obj: Any) -> None:
        assert message <= set(obj) <= message | {"meta"}, sorted(obj)

    # what each command printed: its own objects' key sets, messages and claims checked as they go
    seen: dict[str, Shapes] = {}
    seen["init"] = keys(run(db, "db-1", "init"))
    seen["join"] = keys(run(db, "db-1", "join", "--name", "db-1"))
    found = run(api, "api-1", "discover", "slow tests", "-p", "README.md")
    q = run(api, "api-1", "ask", "who owns config?", "--to", "web-1")
    req = run(api, "api-1", "request", "index users.email")
    for posted in (found, q, req, run(web, "web-1", "answer", q["id"], "db-1 does")):
        is_message(posted)
    for name in ("discover", "ask", "answer", "request", "take", "done"):
        seen[name] = set()
    is_message(run(web, "web-1", "take", req["id"]))
    is_message(run(web, "web-1", "done", req["id"], "indexed"))
    api_claim = run(api, "api-1", "claim", "config/", "--ttl", "1s", "-r", "moving")
    is_message({k: v for k, v in api_claim.items() if k != "claims"})
    assert [set(c) for c in api_claim["claims"]] == [claim]
    seen["claim"] = set()
    time.sleep(1.2)  # api-1's claim lapses; web-1 takes config/ over
    gb(web, "web-1", "claim", "config/db.yaml")
    status = run(api, "api-1", "status")
    seen["status"] = keys(status) | keys(status["taken_over"][0])
    gb(api, "api-1", "request", "split the handlers")
    open_req = run(web, "web-1", "status")["open_requests"][0]
    is_message({k: v for k, v in open_req.items() if k not in ("state", "taker")})
    assert {"state", "taker"} <= set(open_req)
    seen["claims"] = set()
    assert all(set(c) == claim for c in run(web, "web-1", "claims"))
    is_message(run(web, "web-1", "renew", "config/db.yaml"))
    is_message(run(web, "web-1", "release", "config/db.yaml"))
    seen["release"] = seen["renew"] = set()
    searched = run(web, "web-1", "search", "slow")
    assert searched and all(is_message(m) is None for m in searched)
    logged = run(web, "web-1", "log")  # each with whether its sender's signature verifies
    assert logged and all(m["verified"] is False for m in logged)  # this clone signs nothing
    assert all(is_message({k: v for k, v in m.items() if k != "verified"}) is None for m in logged)
    seen["log"] = seen["search"] = set()
    shown = run(web, "web-1", "show", q["id"])
    assert shown["verified"] is False
    is_message({k: v for k, v in shown.items() if k not in ("replies", "replies_left_out", "verified")})
    assert shown["replies"] and all(is_message(r) is None for r in shown["replies"])
    assert shown["replies_left_out"] == 0
    seen["show"] = set()
    inbox = run(web, "web-1", "inbox")
    seen["inbox"] = keys(inbox)
    agents = run(web, "web-1", "agents")
    gb(web, "gone-1", "discover", "leaving now")
    seen["agents"] = keys(agents[0]) | keys(run(web, "web-1", "agents", "--retire", "gone-1"))
    gb(api, "api-1", "claim", "internal/api/")
    guard = run(web, "web-1", "guard", "internal/api/handler.go")
    seen["guard"] = keys(guard[0])
    assert set(guard[0]["claim"]) == claim
    config = run(web, "web-1", "config")
    assert set(config) == set(DEFAULTS)
    seen["config"] = set()
    seen["gc"] = keys(run(web, "web-1", "gc"))
    seen["note"] = keys(run(web, "web-1", "note"))
    (web / "README.md").write_text("changed\n")
    git(web, "commit", "-qam", "readme")
    gb(web, "web-1", "note")
    history = run(web, "web-1", "history", "README.md")
    seen["history"] = {frozenset(e) for e in history}
    assert all(is_message(e["message"]) is None for e in history if "message" in e)
    seen["watch"] = keys(run(web, "web-1", "watch", "--once")) | keys(run(web, "web-1", "watch", "--stop"))
    seen["install"] = keys(run(web, "web-1", "install", "git-hooks"))
    seen["uninstall"] = keys(run(web, "web-1", "uninstall", "git-hooks"))
    bare = tmp_path / "bus.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(api, "remote", "add", "origin", str(bare))
    seen["remote"] = keys(run(api, "api-1", "remote", "origin"))
    for name in ("push", "pull", "sync"):
        report = run(api, "api-1", name)
        seen[name] = keys(report)
    demo = json.loads(runner.invoke(app, ["demo", "--json"]).stdout)
    seen["demo"] = keys(demo) | keys(demo["steps"][0])

    documented_watch = table.pop("watch")  # {pid} and {running} need a daemon: listed, not run here
    assert seen.pop("watch") <= documented_watch and len(documented_watch) == 4
    sync_refused = frozenset({"ref", "reason", "kept"})
    for name in ("push", "pull", "sync"):  # nothing refused here: the item shape is documented
        assert sync_refused in table[name]
        table[name] = table[name] - {sync_refused}
    assert {n: table.get(n) for n in seen} == seen
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    with_json = {n for n, c in commands.items() if any(p.name == "json_out" for p in c.params)}
    assert with_json == set(seen) | {"watch"}, sorted(with_json ^ (set(seen) | {"watch"}))
    outputs = [status, agents, history, inbox, guard, shown, api_claim, demo]
    assert [w for o in outputs for w in iso_without_twin(o)] == []
