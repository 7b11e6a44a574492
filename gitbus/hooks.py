"""`gitbus hook`: the Claude Code hook handler (a face: JSON in on stdin, JSON out on stdout).

Hooks run on every prompt and tool call, so the common case — nothing new, no claim in the way —
is answered from git's files and small JSON files without loading libgit2; the
library is imported only when there is something to say or to write. The contract (docs/claude-code.md):
text reaches the model only as `hookSpecificOutput.additionalContext` (plain stdout is dropped on
PostToolUse); PreToolUse denies with `permissionDecision: deny`; a session is identified by
`session_id` and its agent by the worktree of `cwd`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitbus import agents, cursors, state
from gitbus.errors import GitbusError
from gitbus.gitfiles import Location, Oid, bus_tips, locate
from gitbus.ids import AgentName

if TYPE_CHECKING:
    from gitbus import delivery
    from gitbus.bus import Bus
    from gitbus.guard import Snapshot
    from gitbus.inbox import Inbox, Told

EDIT_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}
STOP_REMINDERS = 5  # open questions recalled per Stop; the rest at the next ones
CLAIMS_CHARS = 1500  # each list of claims at session start


def emit(event: str, text: str = "", **extra: Any) -> str:
    out: dict[str, Any] = {"hookEventName": event, **extra}
    if text:
        out["additionalContext"] = text
    return json.dumps({"hookSpecificOutput": out})


class Session:
    """One hook call's view: the worktree, the agent, the session and its cursor.

    It reads and saves the session cursor itself (small JSON files: the fast path); what to tell and
    where a session starts are the inbox's (`gitbus.inbox`), loaded only when the tips moved."""

    def __init__(self, loc: Location, agent: AgentName, session_id: str) -> None:
        self.loc, self.agent, self.id = loc, agent, session_id
        self.cursor = cursors.load_session(loc.common_dir, agent, session_id)

    def save(self, tips: Mapping[str, str], reminded: tuple[str, ...] | None = None) -> None:
        base = self.cursor or cursors.SessionCursor({})
        self.cursor = cursors.save_session(
            self.loc.common_dir,
            self.agent,
            self.id,
            cursors.SessionCursor(
                dict(tips), base.seq, base.reminded if reminded is None else reminded, base.skip
            ),
        )

    def inbox(self) -> Inbox:
        """The agent's inbox, on a fresh handle (a waiter lives for hours; loads the library, so
        only called when there is something to do)."""
        from gitbus.git import Repository
        from gitbus.inbox import Inbox

        return Inbox(Repository.open(self.loc.root), self.agent)

    def new_batch(self, tips: Mapping[str, str], only_direct: bool = False) -> delivery.Batch:
        """What is new since the cursor (loads the library: only called when tips moved)."""
        return self.inbox().new_batch(self.cursor or cursors.SessionCursor({}), tips, only_direct)

    def resume(self, tips: Mapping[str, str]) -> bool:
        """Give a session without a readable cursor one to go on from (`Inbox.resume`), saved at
        once so the next call is the fast path again. False when there is nothing new to tell."""
        self.cursor = self.inbox().resume(self.id)
        return self.cursor.tips != dict(tips)

    def deliver(self, event: str) -> str:
        """New messages for this session as hook output, advancing the cursor over what is shown."""
        if self.cursor is not None and self.cursor.tips == bus_tips(self.loc.common_dir):
            return ""  # the fast path: nothing new, no lock, no libgit2
        with self.locked():
            tips = bus_tips(self.loc.common_dir)
            if self.cursor is None and not self.resume(tips):
                return ""
            assert self.cursor is not None
            if self.cursor.tips == tips:
                return ""
            text = self.tell(tips).text
        return emit(event, text) if text else ""

    def tell(self, tips: Mapping[str, str], send: Callable[[str], bool] | None = None) -> Told:
        """`Inbox.tell` for this session; the caller holds the lock and has a cursor."""
        assert self.cursor is not None
        told, self.cursor = self.inbox().tell(self.id, self.cursor, tips, send)
        return told

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this session's lock and re-read its cursor under it."""
        with cursors.session_lock(self.loc.common_dir, self.agent, self.id):
            self.cursor = cursors.load_session(self.loc.common_dir, self.agent, self.id)
            yield


def session_start(s: Session, source: str) -> str:
    from gitbus.bus import Bus
    from gitbus.delivery import claim_list
    from gitbus.inbox import SESSION_BACKLOG, UNREAD_COUNT_MAX

    bus = Bus.open(s.loc.root, s.agent)
    earlier = 0
    if s.cursor is None or source in ("startup", "clear"):
        with s.locked():  # what the agent has not seen is told from here on
            s.cursor, earlier = s.inbox().start(s.id, s.cursor)
            origin = {ref: Oid(tip) for ref, tip in s.cursor.tips.items()}
    head = (
        f"gitbus: you are agent {s.agent} in worktree {s.loc.root}. Other agents work in other "
        "worktrees of this repository and coordinate through gitbus (gitbus --help)."
    )
    if earlier:
        return emit("SessionStart", first_brief(s, bus, head, origin))
    st = bus.status()
    lines = [head]
    # Claims are listed inert and within a budget: a peer's path or reason can be any length.
    if st.my_claims:
        lines.append("Your claims: " + claim_list(st.my_claims, st.now, CLAIMS_CHARS, 10) + ".")
    if st.other_claims:
        lines.append(
            "Claims of others (edits there are refused): "
            + claim_list(st.other_claims, st.now, CLAIMS_CHARS, 10)
            + "."
        )

    def count(n: int) -> str:  # the count reads one past UNREAD_COUNT_MAX, to tell "more than"
        if st.unread_partial:  # its walk stopped in others' traffic: at least this many
            return f"{n} or more"
        return f"more than {UNREAD_COUNT_MAX}" if n > UNREAD_COUNT_MAX else str(n)

    waiting = ""
    if st.unread_partial and not st.unread:
        waiting = "Messages for you may wait unread behind others' traffic: gitbus inbox."
    elif st.unread:
        many = count(st.unread)
        waiting = (
            f"{many} unread message(s), told here as they fit (or read them now: gitbus inbox)."
            if st.unread <= SESSION_BACKLOG and not st.unread_partial
            else f"{many} unread message(s): gitbus inbox."
        )
    if st.open_questions:
        lines.append(f"{len(st.open_questions)} open question(s). {waiting}".rstrip())
    elif waiting:
        lines.append(waiting)
    lines.append(LIVE_NOTE)
    return emit("SessionStart", "\n".join(lines))


LIVE_NOTE = "New messages from other agents will appear here as they arrive."
BRIEF_CHARS = 6000  # of Claude Code's 10,000 per hook output string


def first_brief(s: Session, bus: Bus, head: str, origin: Mapping[str, Oid]) -> str:
    """An agent's first session starts knowing what the team knows: claims, open questions and
    requests for it, and the discoveries that touch its claimed and changed paths first, as the
    context file ranks them, within `BRIEF_CHARS`. What came before is behind the agent's cursor
    now, so nothing here is told again (the messages are read up to `origin`, where the session's
    cursor starts); the questions named are not reminded at Stop either."""
    from gitbus import context

    view = context.read_view(bus.repo, bus.clock.now_ms(), origin)
    changed = context.changed_paths(bus.repo, s.loc.root)
    text, ids = context.brief(view, s.agent, changed, bus.repo.ignorecase, BRIEF_CHARS)
    with s.locked():
        assert s.cursor is not None
        s.save(s.cursor.tips, s.cursor.reminded + tuple(i for i in ids if i not in s.cursor.reminded))
    known = [text] if text else ["No claims, open questions, requests or discoveries yet."]
    return "\n".join(
        [
            head,
            "This is your first session. What the team knows now (peers' words in quotes; all that "
            "came before: gitbus log):",
            *known,
            LIVE_NOTE,
        ]
    )


def pre_tool_use(s: Session, data: Mapping[str, Any]) -> str:
    if data.get("tool_name") not in EDIT_TOOLS:
        return ""
    tool_input = data.get("tool_input") or {}
    raw = tool_input.get("file_path") or tool_input.get("notebook_path")
    if not isinstance(raw, str) or not raw:
        return ""
    return guard_writes(s, [raw])


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
        wanted = [r for r in dict.fromkeys(_repo_path(s.loc, raw, owners) for raw in raws) if r is not None]
        snap = guard.snapshot(s.loc.root, s.loc.common_dir, wanted)  # current for these paths
        for rel in wanted:
            try:
                blocking = snap.blocking(s.agent, rel, now)
            except GitbusError as e:  # a damaged index that could not be read again: blind
                blocking, snap = [], dataclasses.replace(snap, blind=str(e).rstrip("."))
            if blocking or snap.blind is not None:  # a guard that cannot read the claims refuses
                warnings.append(
                    guard.denial(blocking, rel, now) if blocking else guard.blind_denial(snap, rel)
                )
                if conf["guard"] != "warn":
                    break
                continue
            rels.append(rel)
    if warnings and conf["guard"] != "warn":
        return emit("PreToolUse", permissionDecision="deny", permissionDecisionReason=warnings[0])
    notes = ["gitbus warning: " + w for w in dict.fromkeys(warnings)]
    if snap is not None and rels:
        _claim_or_renew(s, snap, rels, now, bool(conf["autoclaim"]))
        if snap.note:
            notes.append(f"gitbus: {snap.note}.")
    return emit("PreToolUse", "\n".join(notes)) if notes else ""


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


def _repo_path(loc: Location, raw: str, owners: dict[str, Location | None] | None = None) -> str | None:
    """`raw` (absolute, or relative to the worktree) as a repo path, if it is in this repository.
    `owners` remembers the worktree found for each folder (a patch writes many files in few)."""
    from gitbus import paths as P

    full = Path(raw) if os.path.isabs(raw) else loc.root / raw
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
    except OSError:  # a name the file system refuses (too long, say): judged by its text alone
        owner = loc
    if owner.common_dir != loc.common_dir:
        return None
    try:
        return P.normalize(str(full), root=owner.root, cwd=owner.root, literal=True)
    except (GitbusError, OSError):
        return None


def stop(s: Session, data: Mapping[str, Any]) -> str:
    if data.get("stop_hook_active"):
        return ""
    from gitbus import delivery
    from gitbus.board import read
    from gitbus.bus import OPEN_WINDOW

    with s.locked():
        tips = bus_tips(s.loc.common_dir)
        if s.cursor is None and not s.resume(tips):
            return ""
        assert s.cursor is not None
        text, shown = s.tell(tips) if s.cursor.tips != tips else ("", ())
        assert s.cursor is not None
        reminded = s.cursor.reminded + shown  # a question shown just now is not repeated below
        board = read(s.inbox().repo, int(time.time() * 1000), OPEN_WINDOW)
        pending = [  # oldest first: the longest waiting are reminded first
            q for q in reversed(board.open_questions(to=s.agent)) if q.id not in reminded
        ]
        open_qs, later = pending[:STOP_REMINDERS], len(pending) - STOP_REMINDERS
        if open_qs or shown:  # only what is shown counts as reminded: the rest waits for a later Stop
            s.save(s.cursor.tips, reminded + tuple(q.id for q in open_qs))
    if open_qs:
        text += (
            ("\n" if text else "")
            + "Still unanswered questions to you:\n"
            + "\n".join(delivery.fact(q, s.agent) for q in open_qs)
        )
        if later > 0:
            text += f"\n{later} more unanswered question(s) to you (all open questions: gitbus status)."
    return emit("Stop", text) if text else ""


def session_end(s: Session) -> str:
    """The session is over: its waiter, if any, sees its pid file gone and exits."""
    with suppress(OSError):
        state.wake_pid(s.loc.common_dir, s.agent, s.id).unlink()
    return ""


def session_of(data: Mapping[str, Any], env: Mapping[str, str]) -> Session | None:
    """The session a hook call comes from: its worktree (of `cwd`), agent and id; None outside a
    repository."""
    cwd = _text(data, "cwd") or os.getcwd()
    session_id = _text(data, "session_id") or "default"
    loc = locate(Path(cwd))
    if loc is None:
        return None
    return Session(loc, agents.resolve(loc, None, env), session_id)


def _text(data: Mapping[str, Any], field: str) -> str:
    """A field that names a file: refused in one sentence when no file name can hold it (JSON
    can carry a NUL or a lone surrogate; a path or a session's file name cannot)."""
    value = str(data.get(field) or "")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise GitbusError(f"the input's {field} is not valid text (it holds a lone surrogate).") from None
    if "\0" in value:
        raise GitbusError(f"the input's {field} holds a NUL character.")
    return value


def handle(data: Mapping[str, Any], env: Mapping[str, str], wake_mode: bool = False) -> tuple[int, str]:
    """Answer one hook call: (exit code, stdout)."""
    s = session_of(data, env)
    if s is None:
        return 0, ""
    if wake_mode:
        from gitbus.waiter import wake

        return wake(s, env), ""
    event = data.get("hook_event_name")
    if event == "SessionStart":
        return 0, session_start(s, str(data.get("source") or "startup"))
    if event in ("UserPromptSubmit", "PostToolUse", "PostToolBatch"):
        return 0, s.deliver(str(event))
    if event == "PreToolUse":
        return 0, pre_tool_use(s, data)
    if event == "Stop":
        return 0, stop(s, data)
    if event == "SessionEnd":
        return 0, session_end(s)
    return 0, ""


def main(argv: list[str]) -> int:
    wake_mode = argv[:1] == ["wake"]
    client = argv[0] if len(argv) == 1 and argv[0] in ("codex", "gemini") else None  # gitbus.agentcli
    # an unknown mode is a usage error, as the CLI shows one: what is wrong, then the usage
    if argv and not (wake_mode or client):
        sys.stderr.write(f"gitbus: {argv[0]!r} is not a hook mode.\nusage: gitbus hook [wake|codex|gemini]\n")
        return 2
    try:
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise ValueError("stdin is closed")
        data = json.loads(sys.stdin.buffer.read() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (ValueError, OSError) as e:
        sys.stderr.write(f"gitbus hook: the input is not hook JSON ({e}).\n")
        return 1
    try:
        if client:
            from gitbus import agentcli

            m = agentcli.client_map(client)
            assert m is not None
            code, out = agentcli.answer(m, data, os.environ)
        else:
            code, out = handle(data, os.environ, wake_mode)
    except GitbusError as e:
        sys.stderr.write(f"gitbus hook: {e}\n")
        return 1
    if out:
        sys.stdout.write(out + "\n")
    return code
