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

    def __init__(self, loc: Location, agent: AgentName, session_id: str, cwd: Path | None = None) -> None:
        self.loc, self.agent, self.id = loc, agent, session_id
        self.cwd = cwd or loc.root  # the folder the client runs in (its relative paths start here)
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

    def deliver(self, event: str, send: Callable[[str], bool] | None = None) -> str:
        """New messages for this session as hook output, advancing the cursor over what is shown.
        With `send`, the output is handed to it (and "" returned), and the cursor moves only when it
        says the output went out: a hook that cannot write its stdout loses nothing."""
        if self.cursor is not None and self.cursor.tips == bus_tips(self.loc.common_dir):
            return ""  # the fast path: nothing new, no lock, no libgit2
        with self.locked():
            tips = bus_tips(self.loc.common_dir)
            if self.cursor is None and not self.resume(tips):
                return ""
            assert self.cursor is not None
            if self.cursor.tips == tips:
                return ""
            if send is not None:
                self.tell(tips, lambda text: send(emit(event, text)) if text else True)
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


def session_start(s: Session, source: str, send: Callable[[str], bool] | None = None) -> str:
    """Who the agent is and what concerns it, as SessionStart output; for an agent's first session,
    what the team knows (`first_brief`). Under the session's lock, its cursor (and a new agent's read
    cursor) is saved only after the output: with `send`, only when `send` says it went out (and ""
    is returned), so a start that could not be written is made again, the same, at the next."""
    from gitbus.bus import Bus

    bus = Bus.open(s.loc.root, s.agent)
    with s.locked():
        cursor, earlier = s.cursor, 0
        starting = cursor is None or source in ("startup", "clear")
        if starting:  # what the agent has not seen is told from here on
            cursor, earlier = s.inbox().start(s.id, s.cursor)
        assert cursor is not None
        head = (
            f"gitbus: you are agent {s.agent} in worktree {s.loc.root}. Other agents work in other "
            "worktrees of this repository and coordinate through gitbus (gitbus --help)."
        )
        if earlier:
            text, ids = first_brief(s, bus, head, {ref: Oid(tip) for ref, tip in cursor.tips.items()})
            cursor = cursor._replace(
                reminded=cursor.reminded + tuple(i for i in ids if i not in cursor.reminded)
            )
        else:
            text = _summary(bus, head)
        out = emit("SessionStart", text)
        if send is not None:
            if not send(out):
                return ""  # nothing saved: the next start tells it again
            out = ""
        if starting:
            s.cursor = s.inbox().started(s.id, cursor)
    return out


def _summary(bus: Bus, head: str) -> str:
    """A later session's start: `head`, the claims, open questions and how many messages wait."""
    from gitbus.board import unknown_claims
    from gitbus.delivery import claim_list
    from gitbus.inbox import SESSION_BACKLOG, UNREAD_COUNT_MAX

    st = bus.status()
    lines = [head]
    if st.claims_unknown is not None:  # unknown, not none: the lists below may lack some
        lines.append(unknown_claims(st.claims_unknown))
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
    return "\n".join(lines)


LIVE_NOTE = "New messages from other agents will appear here as they arrive."
BRIEF_CHARS = 6000  # of Claude Code's 10,000 per hook output string


def first_brief(s: Session, bus: Bus, head: str, origin: Mapping[str, Oid]) -> tuple[str, list[str]]:
    """An agent's first session starts knowing what the team knows: claims, open questions and
    requests for it, and the discoveries that touch its claimed and changed paths first, as the
    context file ranks them, within `BRIEF_CHARS`; and the ids of the questions it names, which are
    not reminded at Stop either. What came before is behind the agent's cursor once this is out,
    so nothing here is told again (the messages are read up to `origin`, where the session's
    cursor starts)."""
    from gitbus import context, context_text, context_view

    view = context_view.read_view(bus.repo, bus.clock.now_ms(), origin)
    changed = context.changed_paths(bus.repo, s.loc.root)
    text, ids = context_text.brief(view, s.agent, changed, bus.repo.ignorecase, BRIEF_CHARS)
    known = [text] if text else ["No claims, open questions, requests or discoveries yet."]
    brief = [
        head,
        "This is your first session. What the team knows now (peers' words in quotes; all that "
        "came before: gitbus log):",
        *known,
        LIVE_NOTE,
    ]
    return "\n".join(brief), list(ids)


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


def stop(s: Session, data: Mapping[str, Any], send: Callable[[str], bool] | None = None) -> str:
    """New messages and a few open questions to this agent not yet reminded, as Stop output. With
    `send`, the output is handed to it first (and "" returned), and nothing counts as told or
    reminded unless it went out."""
    if data.get("stop_hook_active"):
        return ""
    from gitbus.board import read
    from gitbus.bus import OPEN_WINDOW

    with s.locked():
        tips = bus_tips(s.loc.common_dir)
        if s.cursor is None and not s.resume(tips):
            return ""
        assert s.cursor is not None
        moved = s.cursor.tips != tips
        inbox = s.inbox()  # one handle for the news, the board and the telling
        # a question the news shows now is not repeated in the reminder below
        news = {m.id for m in inbox.new_batch(s.cursor, tips).shown} if moved else set()
        board = read(inbox.repo, int(time.time() * 1000), OPEN_WINDOW)
        pending = [  # oldest first: the longest waiting are reminded first
            q
            for q in reversed(board.open_questions(to=s.agent))
            if q.id not in s.cursor.reminded and q.id not in news
        ]
        open_qs, later = pending[:STOP_REMINDERS], len(pending) - STOP_REMINDERS
        tail = _reminder(s, open_qs, later)
        wrote: list[str] = []
        went: list[bool] = []

        def out(told: str) -> bool:
            text = "\n".join(t for t in (told, tail) if t)
            wrote.append(text)
            went.append(send(emit("Stop", text)) if send is not None and text else True)
            return went[-1]

        shown: tuple[str, ...] = ()
        if moved:
            told, s.cursor = inbox.tell(s.id, s.cursor, tips, out)
            shown = told.shown
            if not all(went):
                return ""  # it did not go out: nothing is told or reminded, the next Stop tries again
        elif not out(""):
            return ""
        assert s.cursor is not None
        if open_qs or shown:  # only what is shown counts as reminded: the rest waits for a later Stop
            s.save(s.cursor.tips, s.cursor.reminded + shown + tuple(q.id for q in open_qs))
    text = wrote[0] if wrote else ""
    return emit("Stop", text) if text and send is None else ""


def _reminder(s: Session, open_qs: list[Any], later: int) -> str:
    from gitbus import delivery

    if not open_qs:
        return ""
    text = "Still unanswered questions to you:\n" + "\n".join(delivery.fact(q, s.agent) for q in open_qs)
    if later > 0:
        text += f"\n{later} more unanswered question(s) to you (all open questions: gitbus status)."
    return text


def session_end(s: Session) -> str:
    """The session is over: its waiter, if any, sees its pid file gone and exits."""
    with suppress(OSError):
        state.wake_pid(s.loc.common_dir, s.agent, s.id).unlink()
    return ""


def session_of(data: Mapping[str, Any], env: Mapping[str, str]) -> Session | None:
    """The session a hook call comes from: its worktree (of `cwd`), agent and id; None outside a
    repository."""
    cwd = _text(data, "cwd")
    if not cwd:
        try:
            cwd = os.getcwd()
        except OSError:  # the folder the hook was started in is gone
            raise GitbusError("the input names no cwd, and the hook's own folder is gone.") from None
    session_id = _text(data, "session_id") or "default"
    loc = locate(Path(cwd))
    if loc is None:
        return None
    return Session(loc, agents.resolve(loc, None, env), session_id, Path(cwd))


def _text(data: Mapping[str, Any], field: str) -> str:
    """A field that names a file: refused in one sentence when no file name can hold it (JSON
    can carry a NUL or a lone surrogate; a path or a session's file name cannot)."""
    value = data.get(field) or ""
    if not isinstance(value, str):
        raise GitbusError(f"the input's {field} is not text.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise GitbusError(f"the input's {field} is not valid text (it holds a lone surrogate).") from None
    if "\0" in value:
        raise GitbusError(f"the input's {field} holds a NUL character.")
    return value


def handle(
    data: Mapping[str, Any],
    env: Mapping[str, str],
    wake_mode: bool = False,
    send: Callable[[str], bool] | None = None,
) -> tuple[int, str]:
    """Answer one hook call: (exit code, stdout). `send`, when given, writes news to the client at
    once and says whether it went out: the session's cursor moves only over what did."""
    if data.get("hook_event_name") == "PreToolUse" and not wake_mode:
        return 0, pre_tool_use(data, env)  # before anything that could fail: the guard fails closed
    s = session_of(data, env)
    if s is None:
        return 0, ""
    if wake_mode:
        from gitbus.waiter import wake

        return wake(s, env), ""
    event = data.get("hook_event_name")
    if event == "SessionStart":
        return 0, session_start(s, str(data.get("source") or "startup"), send)
    if event in ("UserPromptSubmit", "PostToolUse", "PostToolBatch"):
        return 0, s.deliver(str(event), send)
    if event == "Stop":
        return 0, stop(s, data, send)
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
    except RecursionError:
        sys.stderr.write("gitbus hook: the input is not hook JSON (it is nested too deep to read).\n")
        return 1
    except (ValueError, OSError) as e:
        sys.stderr.write(f"gitbus hook: the input is not hook JSON ({e}).\n")
        return 1
    stdout = _Stdout()
    try:
        if client:
            from gitbus import agentcli

            m = agentcli.client_map(client)
            assert m is not None
            code, out = agentcli.answer(m, data, os.environ)
        else:
            code, out = handle(data, os.environ, wake_mode, send=stdout)
    except GitbusError as e:
        sys.stderr.write(f"gitbus hook: {e}\n")
        return 1
    if out:
        stdout(out)
    if not stdout.ok:  # told again at the next call: the cursor moved only over what went out
        with suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(f"gitbus hook: could not write the answer ({stdout.why}).\n")
        return 1
    return code


class _Stdout:
    """The hook's stdout as `send` for `handle`: writes one answer, flushed, and says whether it
    went out. A closed stdout or a reader gone (EPIPE) is False, never a traceback; stdout is then
    pointed at /dev/null, so Python's own flush at exit does not fail again."""

    def __init__(self) -> None:
        self.ok, self.why = True, ""

    def __call__(self, text: str) -> bool:
        try:
            if sys.stdout is None:
                raise OSError("stdout is closed")
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            return True
        except (OSError, ValueError) as e:
            self.ok, self.why = False, (e.strerror if isinstance(e, OSError) and e.strerror else str(e))
            with suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return False
