"""The hook's nothing-new answer (`gitbus.fastpath`): light, and never silent where the handler speaks.

It may answer only "certainly nothing new"; everything else goes to `gitbus.hooks` with the same
input. So each test here either checks that it stays light (what a call imports, counted, never
timed), or that where it says True the handler says nothing too, and where the handler would speak
or refuse it says False.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitbus import agents as agent_names
from gitbus import fastpath, gitfiles, ids, namerules, reffiles, state
from gitbus.bus import Bus
from gitbus.errors import GitbusError
from gitbus.gitfiles import locate
from gitbus.hooks import handle

from .conftest import git

WAIT_SECONDS = 30.0
# What a nothing-new hook call may import beyond what Python's start-up already has: the package, the
# executable, the fast path with its ref reader and name rules, and the C JSON scanner. Not json, re,
# typing, pathlib, tempfile, enum, nor the hook handler.
LIGHT = {"gitbus", "gitbus.entry", "gitbus.fastpath", "gitbus.reffiles", "gitbus.namerules", "_json", "errno"}


def payload(
    cwd: Path | str, event: str = "PostToolUse", session: str = "s1", **fields: Any
) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": f"/tmp/claude/{session}.jsonl",
        "cwd": str(cwd),
        "hook_event_name": event,
        "tool_name": "Bash",
        "tool_input": {"command": "ls"},
        **fields,
    }


def started(cwd: Path, session: str = "s1", env: dict[str, str] | None = None) -> None:
    code, _ = handle(payload(cwd, "SessionStart", session, source="startup"), env or {})
    assert code == 0


def fast(data: dict[str, Any] | bytes, env: dict[str, str] | None = None) -> bool:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return fastpath.nothing_new(raw, env or {})


def agrees(data: dict[str, Any], env: dict[str, str] | None = None) -> bool:
    """The fast answer, checked against the handler: where it says nothing new, so does the handler."""
    said = fast(data, env)
    if said:
        assert handle(data, env or {}) == (0, "")
    return said


def entry(stdin: bytes, probe_imports: bool = False) -> subprocess.CompletedProcess[str]:
    """`gitbus hook` through the real executable's code, in a fresh process; with `probe_imports`
    it prints what the call imported beyond Python's own start-up, one name a line, on stderr."""
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "sys.argv = ['gitbus', 'hook']\n"
        "try:\n"
        "    from gitbus.entry import main\n"
        "    main()\n"
        "finally:\n"
        f"    if {probe_imports}:\n"
        "        sys.stderr.write(''.join(m + '\\n' for m in sorted(set(sys.modules) - before)))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe],
        input=stdin.decode("utf-8", "surrogateescape"),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


# -- light: what a nothing-new call imports --------------------------------------------------------


def test_a_nothing_new_hook_call_imports_only_the_fast_path(agents: list[Bus]) -> None:
    _, web, _ = agents
    started(web.repo.root)
    p = entry(json.dumps(payload(web.repo.root)).encode(), probe_imports=True)
    assert (p.returncode, p.stdout) == (0, "")
    imported = set(p.stderr.split())
    assert imported <= LIGHT, f"the nothing-new hook imported {sorted(imported - LIGHT)}"


def test_a_hook_call_with_news_still_reaches_the_handler_with_the_same_input(agents: list[Bus]) -> None:
    api, web, _ = agents
    started(web.repo.root)
    api.discover("past the fast path")
    p = entry(json.dumps(payload(web.repo.root)).encode(), probe_imports=True)
    assert p.returncode == 0
    out = json.loads(p.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "PostToolUse" and "past the fast path" in out["additionalContext"]
    assert "gitbus.hooks" in p.stderr.split()
    again = entry(json.dumps(payload(web.repo.root)).encode())  # told once; now nothing new again
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_input_the_fast_path_leaves_alone_is_refused_by_the_handler_as_before(agents: list[Bus]) -> None:
    p = entry(b"{not json")
    assert p.returncode == 1 and p.stdout == "" and p.stderr.startswith("gitbus hook: ")
    assert p.stderr.count("\n") == 1


# -- never silent where the handler speaks ----------------------------------------------------------


def test_nothing_new_after_session_start_in_every_worktree(agents: list[Bus]) -> None:
    for bus in agents:
        started(bus.repo.root)
        assert agrees(payload(bus.repo.root))
        assert agrees(payload(bus.repo.root, "UserPromptSubmit", prompt="hi"))
        assert agrees(payload(bus.repo.root / "internal" / "api"))  # a folder inside the worktree


def test_a_post_by_another_agent_is_news(agents: list[Bus]) -> None:
    api, web, _ = agents
    started(web.repo.root)
    api.discover("news")
    assert not fast(payload(web.repo.root))
    assert handle(payload(web.repo.root), {})[1] != ""
    assert agrees(payload(web.repo.root))  # told: quiet again


def test_a_claim_moves_the_ledger_and_is_not_answered_fast(agents: list[Bus]) -> None:
    api, web, _ = agents
    started(web.repo.root)
    api.claim(["internal/api/"])
    assert not fast(payload(web.repo.root))


def test_a_session_without_a_cursor_and_other_events_go_to_the_handler(agents: list[Bus]) -> None:
    _, web, _ = agents
    assert not fast(payload(web.repo.root, session="never-started"))
    started(web.repo.root)
    for event in ("SessionStart", "PreToolUse", "Stop", "SessionEnd", "Notification", None):
        assert not fast(payload(web.repo.root, event))  # type: ignore[arg-type]


def test_packed_refs_read_the_same(agents: list[Bus]) -> None:
    api, web, _ = agents
    started(web.repo.root)
    git(web.repo.root, "pack-refs", "--all")
    assert agrees(payload(web.repo.root))
    api.discover("after packing")  # a loose ref again, beside the packed one
    assert not fast(payload(web.repo.root))


def test_the_agent_is_named_as_the_library_names_it(worktrees: list[Path]) -> None:
    main, wt_b, _ = worktrees
    Bus.open(main).join("api-1")  # named by file
    bus_b = Bus.open(wt_b)
    bus_b.init()  # named from the folder: wt-b
    odd = main.parent / "Odd..Name.lock"
    git(main, "worktree", "add", "-q", "-b", "odd", str(odd))
    for wt, env in ((main, {}), (wt_b, {}), (odd, {}), (wt_b, {"GITBUS_AGENT": "someone-else"})):
        loc = locate(wt)
        assert loc is not None
        got = fastpath.agent_of(str(loc.root), str(loc.git_dir), env)
        assert got == agent_names.resolve(loc, None, env)


def test_the_agent_in_the_environment_picks_its_own_cursor(agents: list[Bus]) -> None:
    _, web, _ = agents
    started(web.repo.root)
    assert not fast(payload(web.repo.root), {"GITBUS_AGENT": "db-1"})  # db-1's session s1: none
    started(web.repo.root, env={"GITBUS_AGENT": "db-1"})
    assert agrees(payload(web.repo.root), {"GITBUS_AGENT": "db-1"})


def test_a_bad_agent_name_in_the_environment_is_the_handlers_to_refuse(agents: list[Bus]) -> None:
    _, web, _ = agents
    started(web.repo.root)
    for bad in ("../x", "Web", "all", "x.lock", "a" * 64, "web-1\n"):
        assert not fast(payload(web.repo.root), {"GITBUS_AGENT": bad})
    with pytest.raises(GitbusError):
        handle(payload(web.repo.root), {"GITBUS_AGENT": "../x"})


def test_a_session_id_that_is_hashed_goes_to_the_handler(agents: list[Bus]) -> None:
    _, web, _ = agents
    session = "a/b c"
    started(web.repo.root, session)
    assert state.session_dir(web.repo.common_dir, "web-1", session).is_dir()
    assert not fast(payload(web.repo.root, session=session))


def test_cursor_slots_are_picked_as_the_library_picks_them(agents: list[Bus]) -> None:
    _, web, _ = agents
    started(web.repo.root)
    folder = state.session_dir(web.repo.common_dir, "web-1", "s1")
    a, b = (folder / slot for slot in state.SESSION_SLOTS)
    assert agrees(payload(web.repo.root))
    a.unlink()  # one slot gone: the other holds the same cursor
    assert agrees(payload(web.repo.root))
    good = json.loads(b.read_text())
    a.write_text(json.dumps({**good, "seq": good["seq"] + 1, "tips": {}}))  # a newer slot wins
    assert not fast(payload(web.repo.root))
    for odd in (
        "{torn",
        json.dumps({**good, "seq": str(good["seq"] + 1)}),
        "\xe9t\xe9",
        json.dumps({**good, "seq": good["seq"] + 1, "reminded": "x"}),
    ):
        a.write_text(odd)
        assert not fast(payload(web.repo.root))  # the handler reads it (or skips it) its own way
    a.write_text("[]")  # not a cursor at all: skipped here as there, and b holds the cursor
    assert agrees(payload(web.repo.root))
    b.unlink()
    a.unlink()
    assert not fast(payload(web.repo.root))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[1, 2]",
        b"{not json",
        b"\xef\xbb\xbf{}",
        "{}".encode("utf-16"),
        b'{"hook_event_name": "PostToolUse"} x',
        b'{"hook_event_name": "PostToolUse", "cwd": NaN}',
        b"[" * 100_000,
        b"\xff\xfe",
    ],
)
def test_odd_input_is_never_answered_fast_and_never_raises(raw: bytes) -> None:
    assert fastpath.nothing_new(raw, {}) is False


def test_odd_fields_go_to_the_handler(agents: list[Bus]) -> None:
    _, web, _ = agents
    started(web.repo.root)
    root = str(web.repo.root)
    for fields in (
        {"cwd": 5},
        {"cwd": root + "\0"},
        {"session_id": "s\ud800"},
        {"session_id": ["s1"]},
        {"cwd": "/" + root},
    ):
        assert not fast({**payload(web.repo.root), **fields})
    assert agrees({**payload(web.repo.root), "cwd": root + "/./internal/../"})


def test_outside_a_repository_it_is_the_handlers_call(tmp_path: Path) -> None:
    assert fastpath.locate(str(tmp_path)) is None
    assert not fast(payload(tmp_path))


def test_it_finds_the_worktree_as_gitfiles_does(worktrees: list[Path], tmp_path: Path) -> None:
    main, wt_b, _ = worktrees
    link = tmp_path / "link-to-b"
    link.symlink_to(wt_b / "internal")
    for start in (main, main / "internal" / "api", wt_b, wt_b / "config", link, tmp_path / "gone"):
        loc = locate(start)
        got = fastpath.locate(str(start))
        assert got == (None if loc is None else tuple(str(p) for p in loc)), start


# -- one spelling of each rule ----------------------------------------------------------------------


def test_the_library_reads_refs_and_names_through_the_fast_path() -> None:
    assert gitfiles.read_refs is reffiles.read_refs and gitfiles.bus_tips is reffiles.bus_tips
    assert (ids.AGENTS_PREFIX, ids.LEDGER_REF, ids.RESERVED) == (
        reffiles.AGENTS_PREFIX,
        reffiles.LEDGER_REF,
        namerules.RESERVED,
    )
    assert (agent_names.ENV_VAR, state.SESSION_SLOTS) == (fastpath.ENV_VAR, fastpath.SLOTS)


def _derived_as_before(text: str) -> str:
    """`ids.derive_agent_name` as it was written with regular expressions, before the fast path."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", text.lower())
    name = re.sub(r"\.{2,}", ".", name).strip("-._")[:63].rstrip("-._")
    if name.endswith(".lock"):
        name = name[: -len(".lock")] + "-lock"
    if not name or name in ids.RESERVED:
        name = f"agent-{name}" if name else "agent"
    return name


NAMEISH = st.text(alphabet=st.sampled_from("aZz09_.-/ %\u0130\u00e9\u212a\n.lock"), max_size=80) | st.text(
    max_size=80
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(NAMEISH)
def test_a_folder_name_becomes_the_agent_name_it_always_did(text: str) -> None:
    assert namerules.derive_name(text) == _derived_as_before(text) == ids.derive_agent_name(text)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(NAMEISH | st.sampled_from(["all", "head", "x.lock", "a..b", "-a", "a" * 63, "a" * 64, "b\n"]))
def test_a_name_the_fast_path_takes_is_one_the_library_takes_as_it_is(text: str) -> None:
    if namerules.plain_agent_name(text):
        assert ids.agent_name(text) == text


def test_folder_names_make_plain_agent_names() -> None:
    for text in ("wt-b", "Odd..Name.lock", "", "ALL", "...", "web 1", "a" * 100):
        assert namerules.plain_agent_name(namerules.derive_name(text)), text


def test_the_hook_fast_path_reads_no_file_it_would_have_to_write(agents: list[Bus]) -> None:
    _, web, _ = agents
    started(web.repo.root)
    common = web.repo.common_dir
    before = sorted((str(p), p.stat().st_mtime_ns) for p in (common / "gitbus").rglob("*"))
    for _ in range(3):
        assert fast(payload(web.repo.root))
    assert sorted((str(p), p.stat().st_mtime_ns) for p in (common / "gitbus").rglob("*")) == before
    assert os.path.isdir(common / "gitbus")


DAMAGES = {  # how a ref file or its packed-refs line is damaged -> what the reader says of it
    "empty": ("loose", lambda oid: b"", "is empty"),
    "cut short": ("loose", lambda oid: oid[:12].encode() + b"\n", "holds no object id"),
    "symbolic": ("loose", lambda oid: b"ref: refs/bus/agents/web-1\n", "symbolic ref"),
    "symbolic link": ("link", None, "symbolic link"),
    "packed short": ("packed", lambda oid: oid[:12].encode(), "damaged line in packed-refs"),
    "packed CRLF": ("crlf", None, "CRLF"),
}


def damage(common: Path, ref: str, how: str) -> None:
    """Damage `ref` (loose now) as `DAMAGES[how]` says, in the shared git dir `common`."""
    where, value, _ = DAMAGES[how]
    oid = (common / ref).read_text().strip()
    if where == "loose":
        assert value is not None
        (common / ref).write_bytes(value(oid))
    elif where == "link":
        (common / ref).unlink()
        branch = common / git(common, "symbolic-ref", "HEAD").strip()  # a code branch's ref file
        (common / ref).symlink_to(os.path.relpath(branch, (common / ref).parent))
    else:
        git(common, "pack-refs", "--all", "--prune")
        packed = (common / "packed-refs").read_bytes()
        if where == "crlf":
            packed = packed.replace(b"\n", b"\r\n")
        else:
            assert value is not None
            packed = packed.replace(oid.encode() + b" " + ref.encode(), value(oid) + b" " + ref.encode())
        (common / "packed-refs").write_bytes(packed)


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_ref_is_reported_never_silently_absent(agents: list[Bus], how: str) -> None:
    """A bus ref that is there but cannot be read as an object id is never just missing from what
    the reader returns: it is named in `damaged`, and the hook's fast path leaves the call to the
    handler, which counts it."""
    api, web, _ = agents
    common = api.repo.common_dir
    ref = "refs/bus/agents/api-1"
    started(web.repo.root)
    damage(common, ref, how)
    damaged: dict[str, str] = {}
    tips = reffiles.read_refs(common, "refs/bus/agents/", damaged)
    assert ref not in tips or how == "packed CRLF"  # every line reads, but git refuses the file
    named = damaged.get(ref) or damaged.get(reffiles.PACKED)
    assert named is not None and DAMAGES[how][2] in named, damaged
    assert "refs/bus/agents/web-1" in tips  # the others are read as ever
    assert not fast(payload(web.repo.root))
