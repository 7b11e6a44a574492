"""What `gitbus install` changed, and how to give it back byte for byte.

The record (`<common git dir>/gitbus/created.json`) holds what install created (files, folders, and
keys as `<file>#hooks.Stop`) and the text of each file of the user's it changed, as the file was
before install first touched it. Files are written only when their text changes, atomically, and
in their own indentation; uninstall writes the original bytes back when what is left parses to what
the user had, so formatting json.dumps would not reproduce (tabs, key spacing, escapes, a missing
final newline) survives an install and an uninstall.

Only what can be written back safely is touched: a regular file (a FIFO would block the read),
valid UTF-8 JSON whose every value json writes back as valid JSON, a place inside the repository
(`check_inside`: a link leading out is refused, one staying in is written through). The record
also keeps a server of the user's named gitbus, and the one install wrote (`install_files`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.paths import inside
from gitbus.state import install_record, write_atomic

BOM = "\ufeff"


def read_json(f: Path) -> dict[str, Any]:
    text = text_of(f)
    return parse(f, text) if text is not None else {}


def parse(f: Path, text: str) -> dict[str, Any]:
    """The JSON object `f` holds (`text`); a UTF-8 BOM before it is read past, as editors write it.

    Refused in one sentence: text that is not JSON (`NaN` and `Infinity` included, which Python
    reads but JSON has not), bytes that are not UTF-8, and a number too large for a float (json
    would write `1e999` back as `Infinity`, which Node's JSON.parse, and so Claude Code, rejects)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise GitbusError(f"{f} is not UTF-8; fix it first, gitbus will not overwrite it.") from None
    try:
        obj = json.loads(text.removeprefix(BOM) or "{}", parse_constant=_no_constant, parse_float=_finite)
    except _TooLarge as e:
        raise GitbusError(
            f"{f} holds the number {e}, too large for gitbus to write back as it is; fix it first."
        ) from None
    except (ValueError, RecursionError):
        raise GitbusError(f"{f} is not valid JSON; fix it first, gitbus will not overwrite it.") from None
    if not isinstance(obj, dict):
        raise GitbusError(f"{f} does not hold a JSON object; fix it first.")
    return obj


class _TooLarge(Exception):
    """A JSON number beyond a float's range (its text is the message)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _TooLarge(text)
    return value


def text_of(f: Path) -> str | None:
    """The text of `f` exactly as its bytes say: line ends and a BOM kept, bytes that are not UTF-8
    carried as surrogates (`encode` gives them back), so a file round-trips byte for byte. Only a
    regular file is read: a FIFO would block forever, a device is no settings file."""
    try:
        fd = os.open(f, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise GitbusError(f"Could not read {f}: {e.strerror or e}.") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GitbusError(f"{f} is not a regular file; gitbus will not read or replace it.")
        try:
            return file.read().decode("utf-8", "surrogateescape")
        except OSError as e:
            raise GitbusError(f"Could not read {f}: {e.strerror or e}.") from None


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_like(obj: dict[str, Any], like: str | None) -> str:
    """`obj` as JSON in the indentation, line ends and BOM of `like` (the file's text so far; two
    spaces and LF without one). A lone surrogate (`"\\ud800"` in the file) stays an escape: as a
    character it has no UTF-8."""
    found = re.search(r"\n([ \t]+)\S", like or "")
    indent: str | int = 2 if found is None else ("\t" if "\t" in found[1] else len(found[1]))
    ascii_only = like is None or like.removeprefix(BOM).isascii()
    end = "" if like is not None and like and not like.endswith("\n") else "\n"
    out = json.dumps(obj, indent=indent, ensure_ascii=ascii_only) + end
    # a surrogate can only be inside a string (JSON's own text is ASCII): write it as an escape
    out = _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", out)
    if like is not None and "\r\n" in like:
        out = out.replace("\n", "\r\n")  # JSON strings escape their newlines: only layout changes
    return (BOM + out) if like is not None and like.startswith(BOM) else out


def write_text(f: Path, text: str, new_mode: int | None = None) -> bool:
    """Write `text` to `f` atomically unless it holds it already; True when it changed. The file
    keeps its permissions (a new one gets `new_mode`, else the umask's): a private file stays so."""
    if text_of(f) == text:
        return False
    real = Path(os.path.realpath(f))  # through a link (see `check_inside`): the link stays one
    mode = stat.S_IMODE(real.stat().st_mode) if real.exists() else new_mode
    write_atomic(
        real, encode(text), prefix=f".{real.name}.gitbus-", mode=_umask_mode() if mode is None else mode
    )
    return True


def remove_made(f: Path, record: Record, ours: Collection[str] = ()) -> None:
    """Remove the file install made at `f`, and forget it; and its folder, when that is among
    `ours` (install made it) and nothing else is left in it. Through a link the user made, the
    file it names goes (what install wrote, `write_text`), never the link itself."""
    Path(os.path.realpath(f)).unlink()
    record.forget(str(f))
    if folder(f.parent) in ours and f.parent.exists() and not any(f.parent.iterdir()):
        f.parent.rmdir()
        record.forget(folder(f.parent))


def check_inside(f: Path, roots: list[Path]) -> None:
    """Refuse, in one sentence, a file of a worktree whose real place is outside every one of
    `roots` (the repository's worktrees): a symbolic link on the way, the file's own or a folder's,
    leads out, and install would write, and uninstall delete, where nobody asked it to. A link that
    stays inside is written through (`write_text`), so it stays a link."""
    real = os.path.realpath(f)
    if any(inside(real, os.path.realpath(r)) for r in roots):
        return
    link = next((p for p in _steps(f, roots) if p.is_symlink()), f)
    raise GitbusError(
        f"{link} is a symbolic link to {os.path.realpath(link)}, outside the repository: gitbus will "
        "not write through it. Replace the link with the file, or add gitbus's entries yourself."
    )



def _steps(f: Path, roots: list[Path]) -> list[Path]:
    """The paths from the worktree `f` is in down to `f` (its first folder first)."""
    root = next((r for r in roots if f.is_relative_to(r)), None)
    if root is None:
        return [f]
    parts = f.relative_to(root).parts
    return [root.joinpath(*parts[: i + 1]) for i in range(len(parts))]


def _umask_mode() -> int:
    """The permissions a file the user makes here would get."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json(f: Path, obj: dict[str, Any], new_mode: int | None = None) -> bool:
    return write_text(f, _json_like(obj, text_of(f)), new_mode)


def give_back_json(
    f: Path,
    obj: dict[str, Any],
    record: Record,
    users: Callable[[dict[str, Any]], dict[str, Any]] = lambda x: x,
) -> bool:
    """Write what uninstall leaves of `f`: the user's original bytes when the content is theirs
    again (`users` of the original, what uninstall would leave of it, is `obj`: entries of the
    user's that look like ours come back with it), else `obj` in the file's indentation. True when
    the file changed."""
    original = record.originals.get(str(f))
    record.forget_original(str(f))
    if original is not None and users(parse(f, original)) == obj:
        return write_text(f, original)
    return write_json(f, obj)


class Record:
    """What install created (files, and settings keys as `<file>#hooks.Stop`), so uninstall removes
    exactly that, and the original text of each file it changed, so uninstall can give the bytes
    back; kept in the common git dir, outside every worktree."""

    def __init__(self, repo: Repository) -> None:
        self.file = install_record(repo.common_dir)
        self.items: set[str] = set()
        self.originals: dict[str, str] = {}
        try:
            saved = json.loads(self.file.read_text())
        except (OSError, ValueError, RecursionError):
            return
        if isinstance(saved, list):  # the record before originals were kept
            saved = {"items": saved}
        if isinstance(saved, dict):
            self.items = {str(x) for x in saved.get("items", [])}
            originals = saved.get("originals", {})
            if isinstance(originals, dict):
                self.originals = {str(k): v for k, v in originals.items() if isinstance(v, str)}

    def keys(self, settings_file: Path) -> set[str]:
        prefix = f"{settings_file}#"
        return {x[len(prefix) :] for x in self.items if x.startswith(prefix)}

    def knows(self, f: Path) -> bool:
        """Whether install has been at `f` (made it, kept its original or made keys in it): in a
        file it never touched, an entry that looks like gitbus's is the user's own."""
        return str(f) in self.items or str(f) in self.originals or bool(self.keys(f))

    def add(self, item: str) -> None:
        if item not in self.items:
            self.items.add(item)
            self._save()

    def keep_original(self, path: str, text: str) -> None:
        """The user's text of `path` before install first changed it (a newer one replaces it)."""
        if self.originals.get(path) != text:
            self.originals[path] = text
            self._save()

    def forget_keys(self, settings_file: Path) -> None:
        """Drop the settings keys recorded for `settings_file`, keeping the file's own entry: once
        uninstall has taken out what was ours, what the file holds is the user's."""
        kept = {x for x in self.items if not x.startswith(f"{settings_file}#")}
        if kept != self.items:
            self.items = kept
            self._save()

    def forget_original(self, path: str) -> None:
        if self.originals.pop(path, None) is not None:
            self._save()

    def forget(self, path: str) -> None:
        """Drop a file uninstall removed, with its keys: a file of the same name made later is the
        user's, not ours."""
        kept = {x for x in self.items if x != path and not x.startswith(f"{path}#")}
        if kept != self.items:
            self.items = kept
            self._save()

    def _save(self) -> None:
        write_atomic(self.file, json.dumps({"items": sorted(self.items), "originals": self.originals}))


def folder(path: Path) -> str:
    """How the record names a folder install created (a trailing `/`: never a file's name)."""
    return f"{path}/"
