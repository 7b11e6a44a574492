"""PreToolUse: the edit guard, which refuses a write into another agent's claim and claims what it
lets through.

It fails closed: a client lets a call through when its hook fails or times out, so anything that
stops the guard judging (a path it cannot read, a ledger it cannot trust, too many files to check in
time) refuses the call with one line saying why, rather than letting it pass unjudged
(`permissionDecision: deny`, docs/claude-code.md).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitbus.errors import GitbusError
from gitbus.gitfiles import Location, locate
from gitbus.hook_session import Session, emit, session_of

if TYPE_CHECKING:
    from gitbus.guard import Snapshot

EDIT_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}


def is_edit(data: Mapping[str, Any]) -> bool:
    """A PreToolUse call of one of Claude Code's editing tools (a tool name that is not text is none)."""
    tool = data.get("tool_name")
    return isinstance(tool, str) and tool in EDIT_TOOLS


def pre_tool_use(data: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The edit guard for one of Claude Code's editing tools; silence for any other tool."""
    if not is_edit(data):
        return ""

    def judge() -> str:
        s = session_of(data, env)
        if s is None:
            return ""
        tool_input = data.get("tool_input")
        if tool_input is None:
            tool_input = {}
        if not isinstance(tool_input, dict):
            raise GitbusError("its tool_input is not a JSON object, so it names no file")
        raw = tool_input.get("file_path") or tool_input.get("notebook_path")
        if raw is None or raw == "":
            return ""  # the tool refuses a call without a file on its own
        if not isinstance(raw, str):
            raise GitbusError("the file it names is not text")
        return guard_writes(s, [raw])

    return fail_closed(judge)


# What can stop the guard judging a call: its own sentences, and a file system or a payload odd
# enough that Python refuses it (a symlink loop is a RuntimeError before Python 3.13, JSON nested
# too deep a RecursionError). Any of them refuses the call, saying why.
GUARD_FAILURES = (GitbusError, OSError, RuntimeError, ValueError)


def fail_closed(judge: Callable[[], str]) -> str:
    """`judge()`, the edit guard's PreToolUse answer; when something stops it judging, the call
    is refused with one line saying why: a client lets a call through when its hook fails."""
    try:
        return judge()
    except GUARD_FAILURES as e:
        from gitbus.inert import cap, inert

        why = cap(inert(str(e) or type(e).__name__), 300).rstrip(".")
        reason = f"the gitbus edit guard cannot judge this call, so it refuses it: {why}."
        return emit(
            "PreToolUse",
            permissionDecision="deny",
            permissionDecisionReason=reason,
        )


GUARD_PATHS_MAX = 1000  # files checked in one call; a call writing more is refused, not let through


def guard_writes(s: Session, raws: list[str], unknown: str = "") -> str:
    """The edit guard over every file one tool call writes (absolute, or relative to the worktree),
    as PreToolUse output. Every file is checked, against one snapshot of the claims, before any is
    claimed: the first refusal refuses the whole call (a patch applies whole or not at all) and
    claims nothing. `unknown` says why the files cannot be told; the call is then refused (fails
    closed), as is one writing more than `GUARD_PATHS_MAX` files: checking them all would outlast
    the client's hook timeout, and a client lets a call through when its hook times out."""
    from gitbus import guard, settings

    conf = settings.load(s.loc.common_dir)
    if conf["guard"] == "off" or not (raws or unknown):
        return ""
    rels: list[str] = []
    warnings: list[str] = []
    wanted: dict[str, None] = {}  # in the order written, each once
    deny = conf["guard"] != "warn"
    now = int(time.time() * 1000)
    snap = None
    if unknown:
        warnings.append(unknown)
    elif len(raws) > GUARD_PATHS_MAX:
        warnings.append(
            f"this call writes {len(raws)} files, more than the {GUARD_PATHS_MAX} the gitbus edit "
            "guard checks in one call, so it refuses it: write them in smaller parts."
        )
    else:
        owners: dict[str, Location | None] = {}
        for raw in raws:
            try:
                rel = _repo_path(s.loc, raw, owners)
            except GitbusError as e:  # a path it cannot judge is refused: the guard fails closed
                warnings.append(_cannot_judge(raw, e))
                if deny:
                    break
                continue
            if rel is not None:
                wanted[rel] = None
        if not (warnings and deny):
            snap = guard.snapshot(s.loc.root, s.loc.common_dir, wanted)  # current for these paths
            rels = _allowed(s, snap, list(wanted), now, deny, warnings)
    if warnings and deny:
        return emit("PreToolUse", permissionDecision="deny", permissionDecisionReason=warnings[0])
    notes = ["gitbus warning: " + w for w in dict.fromkeys(warnings)]
    if snap is not None and rels:
        _claim_or_renew(s, snap, rels, now, bool(conf["autoclaim"]))
        if snap.note:
            notes.append(f"gitbus: {snap.note}.")
    return emit("PreToolUse", "\n".join(notes)) if notes else ""


def _allowed(
    s: Session, snap: Snapshot, wanted: list[str], now: int, deny: bool, warnings: list[str]
) -> list[str]:
    """The paths of `wanted` no other agent's claim blocks; a warning for each one blocked (the first
    only, when it denies). A guard that cannot read the claims blocks every path."""
    from gitbus import guard

    rels: list[str] = []
    for rel in wanted:
        try:
            blocking = snap.blocking(s.agent, rel, now)
        except GitbusError as e:  # a damaged index that could not be read again: blind
            blocking, snap = [], dataclasses.replace(snap, blind=str(e).rstrip("."))
        if blocking or snap.blind is not None:
            warnings.append(guard.denial(blocking, rel, now) if blocking else guard.blind_denial(snap, rel))
            if deny:
                break
            continue
        rels.append(rel)
    return rels


def _claim_or_renew(s: Session, snap: Snapshot, rels: list[str], now: int, autoclaim: bool) -> None:
    """Renew my claims over `rels` past half their time; with autoclaim, claim the rest, in one go."""
    renew: dict[str, None] = {}
    unclaimed: list[str] = []
    for rel in rels:
        mine = snap.mine_covering(s.agent, rel)
        if not mine:
            unclaimed.append(rel)
        elif any(c.expires_at - now < c.ttl_ms // 2 for c in mine):
            renew.update(dict.fromkeys(c.path for c in mine))
    if not (renew or (autoclaim and unclaimed)):
        return
    from gitbus.bus import Bus

    bus = Bus.open(s.loc.root, s.agent)
    if renew:
        bus.renew(list(renew))
    if autoclaim and unclaimed:
        bus.claim(unclaimed, reason="auto-claimed on first edit", literal=True)


def _cannot_judge(raw: str, e: GitbusError) -> str:
    from gitbus.inert import cap, quoted_path

    why = cap(str(e), 200).rstrip(".")
    shown = quoted_path(raw)
    return f"gitbus cannot judge the path {shown} against the claims ({why}), so the edit guard refuses it."


def _repo_path(loc: Location, raw: str, owners: dict[str, Location | None] | None = None) -> str | None:
    """`raw` (absolute, or relative to the worktree) as a repo path; None when it is no file of
    this repository (or no file any tool can write). A path the guard cannot judge against the
    claims (a NUL, a lone surrogate, a character or depth no claim can name) is a `GitbusError`,
    which refuses the call. `owners` remembers the worktree found for each folder (a patch writes
    many files in few)."""
    from gitbus import paths as P

    if "\0" in raw:  # no system call takes it, and a client might cut the name there
        raise GitbusError("it holds a NUL character")
    try:
        raw.encode()
    except UnicodeEncodeError:  # a client writes it as some other name (U+FFFD, say)
        raise GitbusError("it holds a lone surrogate, which is no character") from None
    full = Path(raw) if os.path.isabs(raw) else loc.root / raw
    if len(os.fsencode(full)) > P.MAX_BYTES:
        return None  # longer than any system call takes (PATH_MAX): no tool can write it
    try:
        where = full if full.is_dir() else full.parent
        key = str(where)
        if owners is None or key not in owners:
            found = locate(where)
            if owners is not None:
                owners[key] = found
        else:
            found = owners[key]
        owner = found or loc
    except (OSError, GitbusError):  # a name the file system refuses, a symlink loop: judged by its text
        owner = loc
    if owner.common_dir != loc.common_dir:
        return None
    root = os.path.realpath(owner.root)
    text = os.path.normpath(full)
    if not (P.inside(text, root) or P.inside(os.path.realpath(text), root)):
        return None  # outside the worktree, whatever characters it holds
    try:
        return P.normalize(str(full), root=owner.root, cwd=owner.root, literal=True)
    except P.NotInRepository:
        return None
    except OSError as e:
        raise GitbusError(e.strerror or "the file system refuses it") from None
