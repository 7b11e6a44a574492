"""The local state directory: one module names every file in it, writes them atomically, locks them."""

from __future__ import annotations

import ast
import contextlib
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitbus import state
from gitbus.errors import GitbusError

PACKAGE = Path(__file__).resolve().parent.parent / "gitbus"

# Modules that still spell a path under the state directory themselves, with why; remove an entry
# once its module names the file through `gitbus.state`.
SPELLED_ELSEWHERE: dict[str, str] = {}


def _spells_state_dir(tree: ast.AST) -> list[int]:
    """Lines where `<something> / "gitbus"` is written: a path into the state directory."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Div)
        and isinstance(node.right, ast.Constant)
        and node.right.value == state.DIR
    ]


def test_only_state_spells_a_path_into_the_state_directory() -> None:
    found = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).as_posix()
        if rel == "state.py":
            continue
        lines = _spells_state_dir(ast.parse(f.read_text()))
        if lines:
            found[rel] = lines
    unexpected = {rel: lines for rel, lines in found.items() if rel not in SPELLED_ELSEWHERE}
    assert unexpected == {}, f"name these files in gitbus/state.py instead: {unexpected}"
    stale = set(SPELLED_ELSEWHERE) - set(found)
    assert not stale, f"these no longer spell a state path; drop them from SPELLED_ELSEWHERE: {stale}"


def test_every_name_lies_inside_the_state_directory(tmp_path: Path) -> None:
    common, git_dir = tmp_path / "common", tmp_path / "wt"
    inside = state.root(common)
    per_clone = [
        state.settings(common),
        state.cursor(common, "api-1"),
        state.cursor_lock(common, "api-1"),
        state.shown(common, "api-1"),
        state.session_dir(common, "api-1", "s1"),
        state.wake_pid(common, "api-1", "s1"),
        state.claims_cache(common),
        state.search(common),
        state.own_hooks(common),
        state.hooks_path_record(common),
        state.install_record(common),
        state.housekeeping_stamp(common),
        state.housekeeping_lock(common),
        state.refused(common),
        state.sync_status(common),
        state.watch_lock(common),
        state.watch_log(common),
    ]
    assert all(p.is_relative_to(inside) and p != inside for p in per_clone)
    assert len(set(per_clone)) == len(per_clone)
    assert state.agent_setting(git_dir) == git_dir / "gitbus" / "agent"


@given(st.text(min_size=1, max_size=300))
def test_any_session_id_stays_in_its_agents_sessions_folder(session: str) -> None:
    common = Path("/c")
    folder = state.agent_sessions(common, "api-1")
    for p in (state.session_dir(common, "api-1", session), state.wake_pid(common, "api-1", session)):
        assert p.parent == folder and p.name not in ("", ".", "..") and "/" not in p.name


def test_a_safe_session_id_is_its_own_folder_name() -> None:
    common = Path("/c")
    assert state.session_dir(common, "a", "s-1.x").name == "s-1.x"
    assert state.wake_pid(common, "a", "s-1.x").name == "s-1.x.wake.pid"
    hashed = state.session_dir(common, "a", "../../etc")
    assert len(hashed.name) == 32
    assert state.wake_pid(common, "a", "../../etc").name == hashed.name + ".wake.pid"


def test_a_lock_that_does_not_wait_says_it_is_held_elsewhere(tmp_path: Path) -> None:
    f = tmp_path / "gitbus" / "x.lock"
    got: list[bool] = []
    held, done = threading.Event(), threading.Event()

    def other() -> None:
        with state.locked(f):
            held.set()
            done.wait(10)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert held.wait(10)
        with state.locked(f, wait=False) as mine:
            got.append(mine)
    finally:
        done.set()
        t.join(10)
    with state.locked(f, wait=False) as mine:
        got.append(mine)
    assert got == [False, True]


def test_a_failed_atomic_write_is_one_sentence_and_leaves_no_temp_file(tmp_path: Path) -> None:
    folder = tmp_path / "gitbus"
    folder.mkdir()
    (folder / "config.json").mkdir()  # a folder where the file should be: the rename fails
    with pytest.raises(GitbusError, match=r"^Could not write .*config\.json: .*\.$"):
        state.write_atomic(folder / "config.json", "{}")
    assert [p.name for p in folder.iterdir()] == ["config.json"]


def test_an_atomic_write_is_private_unless_a_mode_is_given(tmp_path: Path) -> None:
    state.write_atomic(tmp_path / "a", "x")
    state.write_atomic(tmp_path / "b", "x", mode=0o755)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o755
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


@pytest.mark.parametrize("session", [".", "..", "s1\n", "...", "-"])
def test_a_session_id_never_names_a_folder_outside_its_agents_own(tmp_path: Path, session: str) -> None:
    from gitbus import fastpath

    d = state.session_dir(tmp_path, "web-1", session)
    assert d.parent == state.agent_sessions(tmp_path, "web-1")
    assert d.name not in (".", "..") and "\n" not in d.name
    with contextlib.suppress(fastpath.Undecided):  # the fast path names the same folder, or passes
        assert fastpath._session_key(session) == d.name
    if session in (".", "..", "s1\n"):
        with pytest.raises(fastpath.Undecided):
            fastpath._session_key(session)
