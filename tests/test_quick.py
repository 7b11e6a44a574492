"""The everyday commands without typer (gitbus.quick): what they import, that they read a command
line exactly as typer does or leave it to typer, and that both paths print the same bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitbus import cli, quick
from gitbus.bus import Bus
from gitbus.quick_args import COMMANDS

from .test_cli import gb, joined  # noqa: F401  (the fixture)

HEAVY = ("typer", "rich", "pydantic", "click", "mcp", "textual", "watchdog")
EVERYDAY = [
    ["log", "-n", "20"],
    ["log", "--json"],
    ["status"],
    ["status", "--json"],
    ["claims"],
    ["claims", "--json"],
    ["discover", "found it", "-p", "README.md"],
    ["discover", "found it", "--json"],
    ["claim", "config/db.yaml", "--ttl", "10m"],
    ["claim", "README.md", "--json"],
    ["inbox", "-n", "1"],
    ["inbox", "--json", "--page", "2", "-n", "1"],
]


def run_gitbus(
    cwd: Path, *args: str, typer_only: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """`gitbus ARGS` as a whole process with stdout and stderr piped; `typer_only` skips gitbus.quick."""
    entry = "from gitbus.cli import main" if typer_only else "from gitbus.entry import main"
    code = f"import sys; sys.argv[0] = 'gitbus'; {entry}; main()"
    full = {**os.environ, "GITBUS_AGENT": "api-1", **env}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
    )


def imported(stderr: str) -> set[str]:
    """The top-level packages `-X importtime` saw imported."""
    return {
        line.split("|")[-1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }


def without_importtime(stderr: str) -> str:
    return "".join(line + "\n" for line in stderr.splitlines() if not line.startswith("import time:"))


@pytest.mark.parametrize("args", EVERYDAY, ids=" ".join)
def test_an_everyday_command_under_a_pipe_imports_no_typer_rich_or_pydantic(
    joined: list[Path],  # noqa: F811
    args: list[str],
) -> None:
    r = run_gitbus(joined[0], *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert imported(r.stderr) & set(HEAVY) == set(), sorted(imported(r.stderr) & set(HEAVY))
    assert "pygit2" in imported(r.stderr)  # the check sees what is imported


@pytest.fixture
def shared(joined: list[Path], tmp_path: Path) -> list[Path]:  # noqa: F811
    """`joined`, sharing its bus through a bare repository set as the bus remote."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "remote", "add", "origin", bare.as_uri()], cwd=joined[0], check=True)
    assert gb(joined[0], "api-1", "remote", "origin")[0] == 0
    return joined


SHARING = [["sync"], ["sync", "--json"], ["push", "origin"], ["pull", "--json", "origin"]]


@pytest.mark.parametrize("args", SHARING, ids=" ".join)
def test_sync_push_and_pull_under_a_pipe_import_no_typer_rich_or_pydantic(
    shared: list[Path], args: list[str]
) -> None:
    """A sync runs each time an agent wants the others' news, and in benchmarks beside plain git:
    typer's start-up was a fifth of a 10,000-message sync's (issue 16)."""
    r = run_gitbus(shared[0], *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert imported(r.stderr) & set(HEAVY) == set(), sorted(imported(r.stderr) & set(HEAVY))


@pytest.mark.parametrize(
    "args", [*SHARING, ["sync", "nowhere"], ["push", "origin", "extra"], ["pull", "-x"]], ids=" ".join
)
def test_sharing_prints_the_same_bytes_and_exits_the_same_on_both_paths(
    shared: list[Path], args: list[str]
) -> None:
    assert gb(shared[0], "api-1", "sync")[0] == 0  # level: both runs then find the same
    typer_run = run_gitbus(shared[0], *args, typer_only=True)
    quick_run = run_gitbus(shared[0], *args)
    assert quick_run.returncode == typer_run.returncode, (quick_run.stderr[-800:], typer_run.stderr[-800:])
    assert without_importtime(quick_run.stderr) == without_importtime(typer_run.stderr)
    assert quick_run.stdout == typer_run.stdout


@pytest.mark.parametrize("args", SHARING, ids=" ".join)
def test_sharing_prints_its_whole_report_when_python_buffers_its_output(
    shared: list[Path], args: list[str]
) -> None:
    """push, pull and sync end without Python's teardown (`entry._leave`): what they printed is
    flushed first, also when stdout is a buffered pipe (no PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    code = "import sys; sys.argv[0] = 'gitbus'; from gitbus.entry import main; main()"
    r = subprocess.run(
        [sys.executable, "-c", code, "-a", "api-1", *args],
        cwd=shared[0],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().startswith(("{", "origin:")) and r.stdout.endswith("\n"), r.stdout


@pytest.mark.parametrize("args", [["log", "-n", "1"], ["status"], ["agents"]], ids=" ".join)
def test_commands_other_than_sharing_keep_pythons_cycle_collector(
    joined: list[Path],  # noqa: F811
    args: list[str],
) -> None:
    """The executable turns the cycle collector off for push, pull and sync alone (they run for a
    moment); the watcher, the TUI, the MCP server and every other command keep it."""
    code = (
        "import gc, sys; sys.argv[0] = 'gitbus'; from gitbus.entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(f'collector={gc.isenabled()}')"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=joined[0],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GITBUS_AGENT": "api-1"},
    )
    assert "collector=True" in r.stderr, r.stderr[-2000:]


def test_help_and_other_commands_still_go_through_typer(joined: list[Path]) -> None:  # noqa: F811
    for args in (["--help"], ["log", "--help"], ["agents"], ["log", "--bogus"]):
        r = run_gitbus(joined[0], *args)
        assert "typer" in imported(r.stderr), args
    assert run_gitbus(joined[0], "log", "--bogus").returncode == 2


CASES = [
    *EVERYDAY,
    ["log", "-n", "0"],  # a usage error: typer's line and exit 2
    ["log", "-t", "claim", "--type=discovery", "--from", "api-1"],
    ["claim"],
    ["claim", "internal/api/", "-r", "mine"],  # held by web-1 below: exit 3 and its line
    ["claim", "internal/api/", "--json"],  # and the JSON refusal
    ["-C", "/", "status"],  # not a repository: exit 1
    ["discover", "a", "b"],
    ["status", "--json=1"],
    ["log", "-f", "--bogus"],
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_both_paths_print_the_same_bytes_and_exit_the_same(joined: list[Path], args: list[str]) -> None:  # noqa: F811
    assert gb(joined[1], "web-1", "claim", "internal/api/", "-r", "theirs")[0] == 0
    typer_run = run_gitbus(joined[0], *args, typer_only=True)
    quick_run = run_gitbus(joined[0], *args)  # a post is made again: a new id, a later time
    assert quick_run.returncode == typer_run.returncode, (quick_run.stderr[-800:], typer_run.stderr[-800:])
    mask = masked if args[0] in ("claim", "discover") else str
    assert mask(without_importtime(quick_run.stderr)) == mask(without_importtime(typer_run.stderr))
    assert mask(quick_run.stdout) == mask(typer_run.stdout)


def masked(text: str) -> str:
    """Output of a post with its fresh id and every number (times, minutes left) blanked."""
    import re

    return re.sub(r"\d+", "N", re.sub(r"\b[0-9a-f]{16}\b", "ID", text))


# -- the parser against typer's own reading -----------------------------------------------------


def typer_reading(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any] | None:
    """What typer hands the body for `argv`: (command, root and command values), or None when it
    does not reach a body (a usage error, help, --version)."""
    seen: dict[str, Any] = {}

    def opened(ctx: Any, json_out: bool = False, offline: bool = False) -> str:
        seen["root"] = {"agent": ctx.obj["agent"], "directory": ctx.obj["dir"]}
        seen["offline"] = offline
        return "bus"

    def body(name: str) -> Any:
        def record(bus: str, out: Any, **values: Any) -> None:
            seen["name"], seen["values"] = name, values

        return record

    monkeypatch.setattr(cli.root, "open_bus", opened)
    for name in COMMANDS:
        monkeypatch.setattr(quick, name, body(name))
    try:
        cli.app(argv, prog_name="gitbus", standalone_mode=False)
    except BaseException:  # click's usage errors, typer.Exit from help: no body reached
        pass
    finally:
        monkeypatch.undo()
    if "name" not in seen:
        return None
    values = dict(seen["values"])
    if seen["name"] == "claim":
        values["offline"] = seen["offline"]
    return seen["name"], (seen["root"], values)


WORDS = [
    *COMMANDS,
    *(
        flag
        for params in COMMANDS.values()
        for p in params
        for flag in p.flags
        if flag not in ("-f", "--follow")
    ),
    *("-a", "--agent", "-C", "--help", "--version", "--", "-", "", "=", "--json=1", "--ttl=5m", "-n5"),
    *("-n0", "-tclaim", "-aapi-1", "-Capi", "5", "0", "-3", "007", "api-1", "src/a.py", "a b", "10m", "x=y"),
]


@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=7))
def test_quick_reads_a_command_line_as_typer_does_or_leaves_it(argv: list[str]) -> None:
    if "-f" in argv or "--follow" in argv:
        return
    got = quick.parse(argv)
    if got is None:
        return
    name, root, values = got
    with pytest.MonkeyPatch.context() as mp:
        assert typer_reading(argv, mp) == (name, (root, values)), argv


VALUES = ["5", "api-1", "src/a.py", "a b", "10m", "-", "x=y", "é"]  # and now and then a bad one:
ODD = ["0", "007", "-3", "--json", "--help", "", "-n"]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """Mostly well-formed everyday command lines: root options, a command, its options and words."""
    value = (
        st.one_of(st.sampled_from(VALUES), st.sampled_from(ODD))
        if draw(st.booleans())
        else st.sampled_from(VALUES)
    )
    argv: list[str] = []
    for flag in draw(st.lists(st.sampled_from(["-a", "--agent", "-C"]), max_size=2)):
        given_ = draw(st.sampled_from(["api-1", "web-1", ".", "sub"]))
        argv += draw(
            st.sampled_from([[flag, given_], [flag + ("=" if flag.startswith("--") else "") + given_]])
        )
    name = draw(st.sampled_from(sorted(COMMANDS)))
    argv.append(name)
    params = [p for p in COMMANDS[name] if p.name != "follow"]
    for _ in range(draw(st.integers(0, 8))):
        p = draw(st.sampled_from(params))
        if not p.flags:
            argv.append(draw(value))
            continue
        flag = draw(st.sampled_from(p.flags))
        if p.kind == "flag":
            argv.append(draw(st.sampled_from([flag, flag, flag, f"{flag}=1"])))
            continue
        v = draw(st.sampled_from(["3", "1", "12"]) if p.kind == "int" else value)
        forms = [[flag, v], [flag, v], [f"{flag}={v}" if flag.startswith("--") else flag + v]]
        argv += draw(st.sampled_from(forms))
    if draw(st.booleans()):
        argv += ["--", *draw(st.lists(value, max_size=2))]
    return argv


@settings(max_examples=400)
@given(command_lines())
def test_quick_reads_a_well_formed_command_line_as_typer_does(argv: list[str]) -> None:
    got = quick.parse(argv)
    if got is None:
        return
    name, root, values = got
    with pytest.MonkeyPatch.context() as mp:
        assert typer_reading(argv, mp) == (name, (root, values)), argv


@pytest.mark.parametrize(
    "argv",
    [
        ["log", "-n", "3", "--type", "claim", "-t", "discovery", "--from", "api-1", "--json"],
        ["-a", "web-1", "-C", "x", "claim", "a", "--ttl", "10m", "b", "-r", "--json", "--offline"],
        ["discover", "--path", "x", "-px", "--json", "--", "-"],
        ["claims", "--all"],
        ["--agent=api-1", "status"],
    ],
    ids=" ".join,
)
def test_quick_takes_these_as_typer_reads_them(argv: list[str]) -> None:
    got = quick.parse(argv)
    assert got is not None
    name, root, values = got
    with pytest.MonkeyPatch.context() as mp:
        assert typer_reading(argv, mp) == (name, (root, values))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["log", "--help"],
        ["--version", "log"],
        ["log", "-f"],
        ["agents"],
        ["claim"],
        ["log", "-n", "0"],
    ],
    ids=" ".join,
)
def test_quick_leaves_help_version_follow_and_errors_to_typer(argv: list[str]) -> None:
    assert quick.parse(argv) is None


def test_every_command_quick_parses_has_a_body() -> None:
    assert set(quick.BODIES) == set(COMMANDS)


def _closed(cwd: Path, fd: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`gitbus ARGS` as a whole process started with its descriptor `fd` closed (`>&-`, `<&-`)."""
    code = "import sys; sys.argv[0] = 'gitbus'; from gitbus.entry import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        stdout=None if fd == 1 else subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(fd),
        env={**os.environ, "GITBUS_AGENT": "api-1"},
        timeout=60,
        check=False,
    )


def test_a_post_made_with_stdout_closed_exits_0_and_is_made_once(joined: list[Path]) -> None:  # noqa: F811
    """`gitbus discover x >&-`: Python starts with no `sys.stdout`. The post was made, then printing
    it crashed and the command exited 1, so a retry posted it twice."""
    r = _closed(joined[0], 1, "discover", "with stdout closed")
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr[-2000:]
    posted = [m for m in Bus.open(joined[0], "api-1").log(n=20) if m.text == "with stdout closed"]
    assert len(posted) == 1


def test_a_post_read_from_a_closed_stdin_is_refused_in_one_line(joined: list[Path]) -> None:  # noqa: F811
    r = _closed(joined[0], 0, "discover", "-")
    assert r.returncode == 1 and b"Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
