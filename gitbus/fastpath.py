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
  folder's name through `derive_name`, which `ids.derive_agent_name` uses too);
- the session's cursor: `cursors.load_session` (slots `a.json` and `b.json`, the valid one with the
  higher `seq` wins) under `state.session_dir`;
- the bus tips: `bus_tips`, the one reader of refs from git's files, which `gitbus.gitfiles` and
  through it the whole library use (loose refs first, then `packed-refs`).
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False  # `typing` costs ~8 ms at start-up; mypy reads this the same way
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

AGENTS_PREFIX = "refs/bus/agents/"  # = gitbus.ids.AGENTS_PREFIX (a test checks)
LEDGER_REF = "refs/bus/ledger"  # = gitbus.ids.LEDGER_REF
LEDGERS_PREFIX = "refs/bus/ledgers/"  # = gitbus.ids.LEDGERS_PREFIX
ENV_VAR = "GITBUS_AGENT"  # = gitbus.agents.ENV_VAR
DELIVERING = ("UserPromptSubmit", "PostToolUse", "PostToolBatch")  # the events `Session.deliver` answers
SLOTS = ("a.json", "b.json")  # = gitbus.state.SESSION_SLOTS
RESERVED = frozenset({"all", "everyone", "ledger", "head", "operator-all"})  # = gitbus.ids.RESERVED

_HEX = frozenset("0123456789abcdef")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


class Undecided(Exception):
    """Something here is out of the ordinary: `gitbus.hooks` decides."""


# -- refs, from git's own files (the library's one reader) -------------------------------------------


def is_oid(text: str) -> bool:
    """True for an object id as git spells it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits."""
    return len(text) in (40, 64) and set(text) <= _HEX


def _oid(text: str) -> str | None:
    t = text.strip()
    return t if is_oid(t) else None


def read_refs(
    common_dir: str | os.PathLike[str], prefix: str, damaged: dict[str, str] | None = None
) -> dict[str, str]:
    """Every ref under `prefix` (e.g. `refs/bus/`) with its object id; loose values win.

    A ref whose value cannot be read as an object id (an empty or cut-short file, a symbolic ref, a
    symbolic link, an unreadable file, a damaged `packed-refs` line) is never in the answer, and is
    never silently absent either: it goes into `damaged` (ref, or `packed-refs` for a file git cannot
    read at all -> why), which the library counts and refuses to write over.

    Plain `os` calls rather than pathlib: this runs on every post, once per agent chain, and
    pathlib's parsing cost more than the reads themselves (5× at 64 agents). Loose refs are read
    before `packed-refs`, the order that cannot miss a ref being packed concurrently (git writes
    `packed-refs` before deleting the loose file)."""
    out: dict[str, str] = {}
    bad: dict[str, str] = {}
    common = os.fspath(common_dir)
    base = os.path.join(common, prefix.rstrip("/"))
    oid, why = _read_value(base)  # the prefix may name one ref
    if oid:
        out[prefix] = oid
    elif why:
        bad[prefix] = why
    stack = [(base, prefix.rstrip("/") + "/")]
    while stack:
        folder, name_prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            bad[name_prefix] = f"its folder cannot be read ({e.strerror})"
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, name_prefix + entry.name + "/"))
            elif not entry.name.endswith(".lock"):
                oid, why = _read_value(entry.path)
                if oid:
                    out[name_prefix + entry.name] = oid
                elif why:
                    bad[name_prefix + entry.name] = why
    under = prefix if prefix.endswith("/") else prefix + "/"
    refs, packed_bad = _packed(common)
    for name, value in refs.items():
        if (name == prefix or name.startswith(under)) and name not in out and name not in bad:
            out[name] = value
    for name, why in packed_bad.items():
        if name == PACKED or (
            (name == prefix or name.startswith(under)) and name not in out and name not in bad
        ):
            bad[name] = why
    if damaged is not None:
        damaged.update(bad)
    return out


def read_ref(common_dir: str | os.PathLike[str], name: str, damaged: dict[str, str]) -> str | None:
    """The object id of ref `name`, None when there is none or it is damaged: then `damaged` gets
    (`name`, or `PACKED` for a packed-refs file git cannot read) -> why, as `read_refs` judges; a
    folder in the ref file's place is damage here too."""
    common = os.fspath(common_dir)
    oid, why = _read_value(os.path.join(common, name), _FOLDER)
    if why:
        damaged[name] = why
    if oid or why:
        return oid
    return packed_ref(common, name, damaged)


def packed_ref(common: str, name: str, damaged: dict[str, str]) -> str | None:
    """`read_ref` for a ref whose loose file is known not to be there: its `packed-refs` line."""
    refs, bad = _packed(common)
    for key in (name, PACKED):
        if key in bad:
            damaged[key] = bad[key]
            return None
    return refs.get(name)


def bus_tips(common_dir: str | os.PathLike[str], damaged: dict[str, str] | None = None) -> dict[str, str]:
    """The chain tips a session reads: every agent chain, every ledger, and `refs/bus/ledger` (the
    single ledger of old, or the mark that it moved) (from files, no libgit2); damaged refs among
    them into `damaged` (see `read_refs`)."""
    tips = read_refs(common_dir, AGENTS_PREFIX, damaged)
    tips.update(read_refs(common_dir, LEDGER_REF, damaged))
    # only the ledgers the library reads (`ids.is_ledger`: `main` or 4 hex digits), so a peer's ref
    # named otherwise cannot keep every session's cursor from matching
    found = read_refs(common_dir, LEDGERS_PREFIX, damaged)
    tips.update((r, o) for r, o in found.items() if ledger_name(r[len(LEDGERS_PREFIX) :]))
    return tips


def ledger_name(name: str) -> bool:
    """True for a ledger gitbus keeps under `refs/bus/ledgers/`: `main`, or a shard's 4 hex digits
    (the one rule; `gitbus.ids.ledger_ref` asks it too)."""
    return name == "main" or (len(name) == 4 and set(name) <= _HEX)


_FOLDER = "is a folder, not a ref file"


def _read_value(path: str, folder: str | None = None) -> tuple[str | None, str | None]:
    """(object id, None) of the loose ref file `path`; (None, None) when there is none (or a folder
    is there: refs below it; (None, `folder`) when that is given); (None, why) when the file is there
    but is no plain object id. A folder is found by reading it, not by a `stat` first: this runs
    for every ref a ledger step reads."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None, None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "is a symbolic link (gitbus never makes one)"
        return None, f"cannot be read ({e.strerror})"
    try:
        raw = os.read(fd, 128)
    except IsADirectoryError:
        return None, folder
    except OSError as e:
        return None, f"cannot be read ({e.strerror})"
    finally:
        os.close(fd)
    try:
        oid = _oid(raw.decode("ascii"))
    except UnicodeDecodeError:
        oid = None
    if oid:
        return oid, None
    if not raw:
        return None, "is empty"
    if raw.startswith(b"ref:"):
        return None, "holds a symbolic ref (gitbus never makes one)"
    return None, "holds no object id"


PACKED = "packed-refs"  # the key in `damaged` for a packed-refs file git cannot read at all
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_PACKED: dict[str, tuple[tuple[int, int, int, int], dict[str, str], dict[str, str]]] = {}


def packed_refs(common_dir: str) -> dict[str, str]:
    """Every ref `packed-refs` holds, with its object id (parsed once per version of the file)."""
    return _packed(common_dir)[0]


def packed_damage(common_dir: str) -> dict[str, str]:
    """What in `packed-refs` could not be read: ref -> why, and `PACKED` -> why for a line naming no
    ref or line ends git does not read (git refuses the whole file then)."""
    return _packed(common_dir)[1]


def _packed(common: str) -> tuple[dict[str, str], dict[str, str]]:
    """`packed-refs` parsed (refs, damage), cached by its stat: git replaces it by rename (a new
    inode) on every change, so an unchanged (inode, size, mtime, ctime) is an unchanged file."""
    path = os.path.join(common, "packed-refs")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}, {}
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _PACKED.get(common)
    if hit and hit[0] == key:
        return hit[1], hit[2]
    refs: dict[str, str] = {}
    bad: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return {}, {}
    except OSError as e:
        return {}, {PACKED: f"cannot be read ({e.strerror})"}
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            bad[PACKED] = "has Windows (CRLF) line ends, which git cannot read"
            line = line[:-1]
        if line[:1] in ("#", "^", ""):
            continue
        value, _, name = line.partition(" ")
        if not name.startswith("refs/"):
            bad.setdefault(PACKED, f"line {number} names no ref")
        elif _oid(value) and value == value.strip():
            refs[name] = value
        else:
            bad[name] = "has a damaged line in packed-refs"
    if len(_PACKED) > 64:
        _PACKED.clear()
    _PACKED[common] = (key, refs, bad)
    return refs, bad


# -- names -------------------------------------------------------------------------------------------


def derive_name(text: str) -> str:
    """A worktree folder's name made into an agent name: lowercase, each run of characters outside
    a-z 0-9 _ . - one '-', each run of dots one dot, no leading or trailing '-', '.', '_', at most
    63, no `.lock` ending, not reserved (`ids.derive_agent_name` validates what this returns)."""
    out: list[str] = []
    in_run = False  # inside a run of other characters, already written as one '-'
    for ch in text.lower():
        if ch in _NAME_CHARS:
            in_run = False
            if not (ch == "." and out and out[-1] == "."):
                out.append(ch)
        elif not in_run:
            out.append("-")
            in_run = True
    name = "".join(out).strip("-._")[:63].rstrip("-._")
    if name.endswith(".lock"):
        name = name[: -len(".lock")] + "-lock"
    if not name or name in RESERVED:
        name = f"agent-{name}" if name else "agent"
    return name


def plain_agent_name(text: str) -> bool:
    """True for an agent name `ids.agent_name` certainly accepts as it is: 1-63 of a-z 0-9 . _ -,
    starting with a letter or digit, no '..', not ending in '.' or `.lock`, not reserved."""
    return (
        0 < len(text) <= 63
        and set(text) <= _NAME_CHARS
        and text[0] not in "._-"
        and ".." not in text
        and not text.endswith((".", ".lock"))
        and text not in RESERVED
    )


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
    """`hooks._text(data, name) or default`; text it would refuse is the handler's to refuse."""
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
