"""The hook's nothing-new answer, from plain files, before anything heavier than `os` is imported.

Claude Code runs `gitbus hook` on every prompt and tool call, and nearly every call has nothing to
say: the session's cursor already stands at the bus tips. Python itself starts in about 9 ms, and
`json`, `re`, `typing`, `pathlib` and `tempfile` would each add 4 – 9 ms more (most of them import
`re` or `enum`), so this module answers that case with `os` and the C JSON scanner (`_json`) alone.

It answers only "certainly nothing to say" (`nothing_new` is True: exit 0, print nothing, write
nothing) and otherwise hands the very same input to `gitbus.hooks`, which decides as it always has.
Every step reads what the library reads, the same way, and gives up (None: let the handler decide)
on anything out of the ordinary — another event or a mode, a field that is not plain text, a file it
cannot read or parse the way the library would, an agent or session name it cannot vouch for, a
session without a cursor, tips that moved. Giving up costs only time; a wrong True would hide a
message, so each rule here is a narrower copy of the library's, and tests hold them to it:

- the worktree: `gitfiles.locate` (a `.git` folder, or a `gitdir:` file; `commondir` names the
  shared git dir);
- the agent: `agents.resolve` (`GITBUS_AGENT`, else the worktree's `gitbus/agent` file, else the
  folder's name through `gitbus.namerules.derive_name`, which `ids.derive_agent_name` uses too);
- the session's cursor: `cursors.load_session` (slots `a.json` and `b.json`, the valid one with the
  higher `seq` wins) under `state.session_dir`;
- the bus tips: `gitbus.reffiles.bus_tips`, the one reader of refs from git's files, which
  `gitbus.gitfiles` and through it the whole library use (loose refs first, then `packed-refs`).
"""

from __future__ import annotations

import errno
import os
import stat

from gitbus.namerules import derive_name, plain_agent_name
from gitbus.reffiles import bus_tips

TYPE_CHECKING = False  # `typing` costs ~8 ms at start-up; mypy reads this the same way
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

ENV_VAR = "GITBUS_AGENT"  # = gitbus.agents.ENV_VAR
DELIVERING = ("UserPromptSubmit", "PostToolUse", "PostToolBatch")  # the events `Session.deliver` answers
SLOTS = ("a.json", "b.json")  # = gitbus.state.SESSION_SLOTS

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


class Undecided(Exception):
    """Something here is out of the ordinary: `gitbus.hooks` decides."""


# -- the session's folder ------------------------------------------------------------------------------


def _session_key(session: str) -> str:
    """The session's folder name when `state.session_dir` uses the id itself (a safe name)."""
    if 0 < len(session) <= 100 and set(session) <= _KEY_CHARS and session not in (".", ".."):
        return session
    raise Undecided("the session id is hashed into its folder name")


# -- JSON, as `json.loads` parses it -----------------------------------------------------------------


class _Context:
    """What the C scanner reads from a `json.JSONDecoder`, with the decoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan: Callable[[str, int], tuple[Any, int]] | None = None


def _loads(text: str) -> Any:
    """`json.loads(text)` for a str, with the same C scanner, where it reads a value; where it would
    raise, Undecided. (The scanner reports a syntax error through `json.decoder`, which is not
    loaded here: Python 3.11 then raises SystemError instead.)"""
    global _scan
    if _scan is None:
        try:
            from _json import make_scanner
        except ImportError:
            raise Undecided("no C JSON scanner") from None
        _scan = make_scanner(_Context())  # type: ignore[arg-type]  # typeshed: any object with the attributes
    if text.startswith("\ufeff"):
        raise Undecided("a BOM")
    idx = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        obj, end = _scan(text, idx)
    except (StopIteration, ValueError, SystemError, RecursionError):
        raise Undecided("not JSON") from None
    if text[end:].lstrip(" \t\n\r"):
        raise Undecided("not JSON: extra data")
    return obj


def _loads_input(raw: bytes) -> Any:
    """The hook's input as `json.loads(raw or b"{}")` reads it; any input it would not read as
    plain UTF-8 (a BOM, UTF-16 or -32, bad bytes) or would refuse is for the handler."""
    raw = raw or b"{}"
    if raw[0] >= 0x80 or 0 in raw[:4]:
        raise Undecided("not plain UTF-8 JSON")
    return _loads(raw.decode("utf-8", "surrogatepass"))


# -- the worktree, the agent and the session ---------------------------------------------------------


def _kind(path: str) -> int:
    """The file type `path` names (following links), 0 if nothing is there; other failures,
    which pathlib's `is_dir`/`is_file` would raise, are for the handler."""
    try:
        return stat.S_IFMT(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except (OSError, ValueError):
        raise Undecided(path) from None


def _text_of(path: str) -> str:
    """A small file's text, stripped, as `Path.read_text().strip()` gives it for an ASCII file."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.isascii():
        raise Undecided(path)  # the locale's encoding would decide: the handler's
    return raw.decode("ascii").strip()


def _resolve(path: str) -> str:
    """`Path(path).resolve()`: symlinks followed, `..` gone; a symlink loop is the handler's."""
    if path.startswith("//"):
        raise Undecided(path)  # POSIX leaves a leading '//' to the system; pathlib keeps it
    real = os.path.realpath(path)
    try:
        os.stat(real)
    except OSError as e:
        if e.errno == errno.ELOOP:  # pathlib raises
            raise Undecided(path) from None
    return real


def _common_dir_of(git_dir: str) -> str:
    f = os.path.join(git_dir, "commondir")
    if _kind(f) == stat.S_IFREG:
        return _resolve(os.path.join(git_dir, _text_of(f)))
    return git_dir


def locate(start: str) -> tuple[str, str, str] | None:
    """(root, git dir, common git dir) of the worktree containing `start`, as `gitfiles.locate`."""
    folder = _resolve(start)
    while True:
        dot = os.path.join(folder, ".git")
        kind = _kind(dot)
        if kind == stat.S_IFDIR:
            return folder, dot, _common_dir_of(dot)
        if kind == stat.S_IFREG:
            text = _text_of(dot)
            if text.startswith("gitdir:"):
                git_dir = _resolve(os.path.join(folder, text[len("gitdir:") :].strip()))
                return folder, git_dir, _common_dir_of(git_dir)
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def agent_of(root: str, git_dir: str, env: Mapping[str, str]) -> str:
    """This worktree's agent, as `agents.resolve` names it; a name it might refuse is the handler's."""
    if env.get(ENV_VAR):
        name = env[ENV_VAR]
    else:
        f = os.path.join(git_dir, "gitbus", "agent")
        name = _text_of(f) if _kind(f) == stat.S_IFREG else derive_name(os.path.basename(root))
    if not plain_agent_name(name):
        raise Undecided("an agent name the handler must judge")
    return name


def session_tips(common_dir: str, agent: str, session: str) -> dict[str, str] | None:
    """The tips of the session's cursor, as `cursors.load_session` picks it; None for no cursor.

    A slot that cannot be read is skipped, as there; one that is not JSON, or that the library might
    read in a way this does not (a `seq` that is not a plain number, say), is the handler's."""
    folder = os.path.join(common_dir, "gitbus", "sessions", agent, _session_key(session))
    best: tuple[int, dict[str, str]] | None = None
    for slot in SLOTS:
        try:
            with open(os.path.join(folder, slot), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if not raw.isascii():
            raise Undecided("a cursor slot the handler must read")  # the locale's encoding decides
        obj = _loads(raw.decode("ascii"))  # one the library would skip as not JSON: Undecided too
        if not isinstance(obj, dict):
            continue  # the library's `obj["tips"]` fails on it too: a skipped slot
        tips, seq = obj.get("tips"), obj.get("seq")
        if (
            type(seq) is not int
            or not isinstance(tips, dict)
            or not all(isinstance(v, str) for v in tips.values())
            or not all(isinstance(obj.get(k, []), list) for k in ("reminded", "skip"))
        ):
            raise Undecided("a cursor slot the handler must read")
        if best is None or seq > best[0]:
            best = (seq, tips)
    return None if best is None else best[1]


def _field(data: Mapping[str, Any], name: str, default: str) -> str:
    """`hook_session._text(data, name) or default`; text it would refuse is the handler's to refuse."""
    value = data.get(name)
    if not value:
        return default
    if not isinstance(value, str) or "\0" in value or not _encodable(value):
        raise Undecided(name)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def nothing_new(raw: bytes, env: Mapping[str, str]) -> bool:
    """True when the Claude Code hook call whose input is `raw` certainly has nothing to say: an
    event that only delivers, in a worktree whose agent and session are plain, whose session cursor
    stands at the bus tips. False: let `gitbus.hooks` answer it."""
    try:
        data = _loads_input(raw)
        if not isinstance(data, dict) or data.get("hook_event_name") not in DELIVERING:
            return False
        cwd = _field(data, "cwd", "") or os.getcwd()
        session = _field(data, "session_id", "default")
        where = locate(cwd)
        if where is None:
            return False
        root, git_dir, common_dir = where
        tips = session_tips(common_dir, agent_of(root, git_dir, env), session)
        damaged: dict[str, str] = {}  # a damaged ref is the handler's to count and report
        return tips is not None and tips == bus_tips(common_dir, damaged) and not damaged
    except (Undecided, OSError, ValueError):
        return False
