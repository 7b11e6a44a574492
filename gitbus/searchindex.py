"""The search index: every message's text in one file beside the bus, never its source of truth.

`git log --grep` has to inflate every commit it scans: about 1.9 s over 100,000 loose messages. The
index is one append-only file with a line per message (time, id, commit, its text folded to lower
case), brought up to the bus tips before each search by walking only what is new since the tips it
covers (O(new), like a read cursor); a search is then one pass over the file, and only the hits are
read from git. Deleting the folder is harmless: the next search rebuilds it from the chains. A chain
that no longer contains a commit the index covered (it cannot happen through gitbus) makes it rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from gitbus import state
from gitbus.chains import all_tips, history
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.gitobjects import commits_read_once
from gitbus.message import Message, decode


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _searchable(m: Message) -> str:
    """What a search matches: the subject line and the text, folded, on one line."""
    return _escape(f"{m.summary()}\x1f{m.text}".casefold())


def _refresh(repo: Repository, d: Path) -> None:
    """Append what the chains hold beyond the covered tips (the caller holds the lock)."""
    index, covered_file = d / "index.tsv", d / "covered.json"
    try:
        covered = {str(k): Oid(str(v)) for k, v in json.loads(covered_file.read_text()).items()}
    except (OSError, ValueError, AttributeError, RecursionError):
        covered = {}
    tips = all_tips(repo)
    if covered == tips and index.exists():
        return
    kept = {ref: c for ref, c in covered.items() if ref in tips}
    moved = any(c != tips[ref] and not repo.is_ancestor(c, tips[ref]) for ref, c in kept.items())
    if moved or not index.exists() or len(kept) < len(covered):
        kept = {}  # something the index holds is no longer on the bus as it was: start again
        state.write_atomic(index, "", prefix=".index-")
    with index.open("a", encoding="utf-8") as out, commits_read_once():  # a first build reads them all
        for e in history(repo, tips, kept):
            m = e.message
            out.write(f"{m.time}\t{m.id}\t{e.commit}\t{_searchable(m)}\n")
    # After the lines: a crash in between leaves lines written twice, which a search counts once.
    state.write_atomic(covered_file, json.dumps(tips), prefix=".covered-")


def matching(repo: Repository, text: str) -> Iterator[Message]:
    """Messages whose text or subject contains `text` (any case), newest first by (time, id)."""
    if not text.strip():
        raise GitbusError("Search for some text.")
    needle = text.casefold()
    escaped = _escape(needle)
    hits: dict[str, tuple[int, int, str]] = {}  # commit -> sort key; a line written twice counts once
    d = state.search(repo.common_dir)
    with state.locked(d / "lock"):
        _refresh(repo, d)
        with (d / "index.tsv").open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if escaped not in line:
                    continue
                parts = line.rstrip("\n").split("\t", 3)
                if len(parts) != 4 or escaped not in parts[3] or not parts[0].isdigit():
                    continue
                try:
                    order = int(parts[1], 16)
                except ValueError:
                    order = 0
                hits[parts[2]] = (int(parts[0]), order, parts[2])
    for _time, _order, commit in sorted(hits.values(), reverse=True):
        try:
            m = decode(repo.read_commit(Oid(commit)).message)
        except GitbusError:
            continue
        # The folded, escaped line can match across an escape; the message itself decides.
        if needle in m.text.casefold() or needle in m.summary().casefold():
            yield m


def _entries(repo: Repository, wanted: Callable[[str], bool]) -> list[tuple[int, str, Oid]]:
    """(time, id, commit) of every message whose id is `wanted`, oldest first, and nothing written:
    the index as it stands (read without its lock: `covered.json` is replaced only after its lines
    are appended, so what it names is in the file) plus, in memory, what the bus holds beyond it.
    Without a usable index, the whole bus is walked."""
    d = state.search(repo.common_dir)
    tips = all_tips(repo)
    try:
        covered = {str(k): Oid(str(v)) for k, v in json.loads((d / "covered.json").read_text()).items()}
        kept = {ref: c for ref, c in covered.items() if ref in tips}
        usable = len(kept) == len(covered) and all(
            c == tips[ref] or repo.is_ancestor(c, tips[ref]) for ref, c in kept.items()
        )
    except (OSError, ValueError, AttributeError, KeyError, RecursionError):
        kept, usable = {}, False
    found: dict[str, tuple[int, str, Oid]] = {}  # commit -> entry; a line written twice counts once
    if usable:
        try:
            with (d / "index.tsv").open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    parts = line.split("\t", 3)
                    if len(parts) == 4 and parts[0].isdigit() and wanted(parts[1]):
                        found[parts[2]] = (int(parts[0]), parts[1], Oid(parts[2]))
        except OSError:
            found, kept = {}, {}
    else:
        kept = {}
    for e in history(repo, tips, kept):
        if wanted(e.message.id):
            found[e.commit] = (e.message.time, e.message.id, e.commit)
    return sorted(found.values())


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
