"""Refs read from git's own files with `os` alone: the library's one reader of refs without libgit2.

Importing pygit2 costs ~150 ms and the hooks run on every prompt and tool call, so the bus tips (every
agent chain and ledger) are read here from the files git keeps: loose refs under `<common>/refs/`,
then `packed-refs`. It imports nothing but `os` and `errno`, so that the nothing-new hook
(`gitbus.fastpath`) can read refs before `json`, `re`, `typing` or `pathlib` load; `gitbus.gitfiles`
re-exports these readers for the rest of the library. The trade-off: a narrower reader than git's
own, which names a value it cannot read as an object id (a symbolic ref, say) as damage instead of
following it.
"""

from __future__ import annotations

import errno
import os

AGENTS_PREFIX = "refs/bus/agents/"  # = gitbus.ids.AGENTS_PREFIX (a test checks)
LEDGER_REF = "refs/bus/ledger"  # = gitbus.ids.LEDGER_REF
LEDGERS_PREFIX = "refs/bus/ledgers/"  # = gitbus.ids.LEDGERS_PREFIX

_HEX = frozenset("0123456789abcdef")


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
