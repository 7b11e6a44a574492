"""The search index: every message's text in one file beside the bus, never its source of truth.

`git log --grep` has to inflate every commit it scans: about 1.9 s over 100,000 loose messages. The
index is one append-only file with a line per message (time, id, commit, its text folded to lower
case), brought up to the bus tips before each search by walking only what is new since the tips it
covers (O(new), like a read cursor); a search is then one pass over the file, and only the hits are
read from git. Deleting the folder is harmless: the next search rebuilds it from the chains. A chain
that no longer contains a commit the index covered (it cannot happen through gitbus) makes it rebuild.

`covered.json` records the tips and the file's size once its lines are on disk (fsynced first). A file
shorter than that, or not ending a line, was cut or emptied since: it is rebuilt, never appended to (an
append would glue the next line onto the broken one). A line that does not parse (its commit not 40
hex digits, its time not ASCII digits) is skipped and counted in `repo.skipped`; a search that meets
one rebuilds the index once, since the message that line stood for may be hidden.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from gitbus import state
from gitbus.chains import all_tips, history
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import Oid, is_oid
from gitbus.gitobjects import commits_read_once
from gitbus.message import Message, decode

_DAMAGED = "a damaged line in the search index (it is rebuilt at the next search)"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _searchable(m: Message) -> str:
    """What a search matches: the subject line and the text, folded, on one line."""
    return _escape(f"{m.summary()}\x1f{m.text}".casefold())


def _parsed(parts: list[str]) -> tuple[int, str, Oid] | None:
    """(time, id, commit) of a line split in four, or None when it is damaged: int() would take
    '²' or '٣' for a time, and a commit must be an object id (`gitfiles.is_oid`) to be read from git."""
    time, mid, commit = parts[0], parts[1], parts[2]
    if not (time.isascii() and time.isdigit()) or not is_oid(commit):
        return None
    return int(time), mid, Oid(commit)


def _covered(d: Path) -> tuple[dict[str, Oid], int] | None:
    """The tips the index covers and its size in bytes when they were recorded; None if unknown."""
    try:
        raw = json.loads((d / "covered.json").read_text())
        tips = {str(k): Oid(str(v)) for k, v in raw["tips"].items()}
        size = raw["bytes"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError, RecursionError):
        return None
    return (tips, size) if type(size) is int and size >= 0 else None


def _intact(index: Path, size: int, tail: bool) -> bool:
    """Whether `index` is a file still holding the `size` bytes recorded, ending a line there (and,
    with `tail`, at its end too). A crash between the lines and the record leaves it longer: fine."""
    try:
        with index.open("rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size < size:
                return False
            for end in {size, st.st_size if tail else 0} - {0}:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    return False
    except OSError:
        return False
    return True


def _refresh(repo: Repository, d: Path, rebuild: bool = False) -> None:
    """Append what the chains hold beyond the covered tips (the caller holds the lock)."""
    index, covered_file = d / "index.tsv", d / "covered.json"
    record = _covered(d)
    whole = record is not None and not rebuild and _intact(index, record[1], tail=True)
    covered = record[0] if record is not None and whole else {}
    tips = all_tips(repo)
    if whole and covered == tips:
        return
    kept = {ref: c for ref, c in covered.items() if ref in tips}
    moved = any(c != tips[ref] and not repo.is_ancestor(c, tips[ref]) for ref, c in kept.items())
    if not whole or moved or len(kept) < len(covered):
        kept = {}  # something the index holds is no longer on the bus as it was: start again
        state.write_atomic(index, "", prefix=".index-")
    try:
        with index.open("a", encoding="utf-8") as out, commits_read_once():  # a first build reads them all
            for e in history(repo, tips, kept):
                m = e.message
                out.write(f"{m.time}\t{m.id}\t{e.commit}\t{_searchable(m)}\n")
            out.flush()
            os.fsync(out.fileno())  # the lines are on disk before the record that vouches for them
            size = os.fstat(out.fileno()).st_size
    except OSError as e:
        raise GitbusError(f"Could not write {index}: {state.disk_problem(e) or e.strerror or e}.") from None
    # After the lines: a crash in between leaves lines written twice, which a search counts once.
    state.write_atomic(covered_file, json.dumps({"bytes": size, "tips": tips}), prefix=".covered-")


def _scan(index: Path, escaped: str) -> tuple[dict[Oid, tuple[int, int, Oid]], list[int]]:
    """The lines holding `escaped` as commit -> sort key (a line written twice counts once), and the
    numbers of the damaged lines among them."""
    hits: dict[Oid, tuple[int, int, Oid]] = {}
    damaged: list[int] = []
    try:
        with index.open(encoding="utf-8", errors="replace") as lines:
            for n, line in enumerate(lines, 1):
                if escaped not in line:
                    continue
                parts = line.rstrip("\n").split("\t", 3)
                if len(parts) != 4 or escaped not in parts[3]:
                    continue
                entry = _parsed(parts)
                if entry is None:
                    damaged.append(n)
                    continue
                try:
                    order = int(parts[1], 16)
                except ValueError:
                    order = 0
                hits[entry[2]] = (entry[0], order, entry[2])
    except OSError as e:
        raise GitbusError(f"Could not read {index}: {state.disk_problem(e) or e.strerror or e}.") from None
    return hits, damaged


def matching(repo: Repository, text: str) -> Iterator[Message]:
    """Messages whose text or subject contains `text` (any case), newest first by (time, id)."""
    if not text.strip():
        raise GitbusError("Search for some text.")
    needle = text.casefold()
    escaped = _escape(needle)
    d = state.search(repo.common_dir)
    index = d / "index.tsv"
    with state.locked(d / "lock"):
        _refresh(repo, d)
        hits, damaged = _scan(index, escaped)
        for n in damaged:
            repo.skipped[f"{index}:{n}"] = _DAMAGED
        if damaged:  # the message a damaged line stood for may be hidden: build it again, once
            _refresh(repo, d, rebuild=True)
            hits, _ = _scan(index, escaped)
    for _time, _order, commit in sorted(hits.values(), reverse=True):
        try:
            m = decode(repo.read_commit(commit).message)
        except GitbusError:
            continue
        # The folded, escaped line can match across an escape; the message itself decides.
        if needle in m.text.casefold() or needle in m.summary().casefold():
            yield m


def _entries(repo: Repository, wanted: Callable[[str], bool]) -> list[tuple[int, str, Oid]]:
    """(time, id, commit) of every message whose id is `wanted`, oldest first, and nothing written:
    the index as it stands (read without its lock, up to the size `covered.json` records: that is
    replaced only after its lines are on disk, so what it names is in the file) plus, in memory, what
    the bus holds beyond it. Without a usable index, or with a damaged line among the wanted ones,
    the whole bus is walked."""
    d = state.search(repo.common_dir)
    index = d / "index.tsv"
    tips = all_tips(repo)
    record = _covered(d)
    kept: dict[str, Oid] = {}
    found: dict[Oid, tuple[int, str, Oid]] = {}  # commit -> entry; a line written twice counts once
    if record is not None and _intact(index, record[1], tail=False):
        covered, size = record
        kept = {ref: c for ref, c in covered.items() if ref in tips}
        usable = len(kept) == len(covered) and all(
            c == tips[ref] or repo.is_ancestor(c, tips[ref]) for ref, c in kept.items()
        )
        try:
            found, damaged = _read_wanted(index, size, wanted) if usable else ({}, [])
        except OSError:
            found, damaged = {}, []
            usable = False
        for n in damaged:
            repo.skipped[f"{index}:{n}"] = _DAMAGED
        if not usable or damaged:
            found, kept = {}, {}
    for e in history(repo, tips, kept):
        if wanted(e.message.id):
            found[e.commit] = (e.message.time, e.message.id, e.commit)
    return sorted(found.values())


def _read_wanted(
    index: Path, size: int, wanted: Callable[[str], bool]
) -> tuple[dict[Oid, tuple[int, str, Oid]], list[int]]:
    """The entries among the first `size` bytes of `index` whose id is `wanted`, and the numbers of
    the damaged lines among them (bytes past `size` may be a line another process is writing)."""
    found: dict[Oid, tuple[int, str, Oid]] = {}
    damaged: list[int] = []
    left = size
    with index.open("rb") as f:
        for n, raw in enumerate(f, 1):
            left -= len(raw)
            if left < 0:
                break
            parts = raw.decode("utf-8", "replace").split("\t", 3)
            if len(parts) != 4 or not wanted(parts[1]):
                continue
            entry = _parsed(parts)
            if entry is None:
                damaged.append(n)
            else:
                found[entry[2]] = entry
    return found, damaged


def carriers(repo: Repository, prefix: str) -> list[tuple[int, str, Oid]]:
    """(time, id, commit) of every message whose id starts with `prefix`, oldest first: one pass
    over the index plus what is new since it was brought up to date (O(new)); nothing is written,
    so a lookup that fails leaves every file as it was."""
    return _entries(repo, lambda mid: mid.startswith(prefix))


def commits_of(repo: Repository, ids: set[str]) -> dict[str, list[Oid]]:
    """The commits carrying each of the message ids `ids` (more than one when an id was reused)."""
    found: dict[str, list[Oid]] = {}
    for _, mid, commit in _entries(repo, ids.__contains__):
        found.setdefault(mid, []).append(commit)
    return found
