"""Git's trees, through the door to git: an entry at a path, a folder's listing, every blob below a
tree, what differs between two trees, and new trees built from changes to paths.

A ledger step builds three small trees, and libgit2's tree builder reads each entry it is given back
from disk to check it (issue 16): a tree of at most `_SMALL_TREE` entries, laid out as git writes
trees, is built here by `gitbus.loose` from entries this handle remembers by tree id, and any other
tree is libgit2's. Listings are remembered by id too (a tree never changes), and libgit2 keeps trees of
up to 1 MiB in its cache. The trade-off is memory per handle, bounded by counts. A peer's tree may be
hostile: every walk is iterative, a diff gives up past its limit, and a tree whose entries are out of
git's order or share a name is refused. `Trees` is a base of `Repository`, on top of `Objects`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import pygit2

from gitbus import loose
from gitbus.errors import Unreadable
from gitbus.gitfiles import Oid
from gitbus.gitobjects import Objects, write_object

# libgit2 keeps no tree over 4 KiB in its object cache, so each path lookup in a ledger folder of
# thousands of claims inflated and parsed that folder again (issue 16): trees up to 1 MiB are kept.
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 1 << 20)


_LISTINGS_KEPT = 64  # folder listings remembered per handle, by tree id (a tree never changes)
_ENTRIES_KEPT = 64  # the entries of trees this handle wrote or read to write, by id
_SMALL_TREE = 64  # entries: a tree up to this size is laid out here (`gitbus.loose`), a larger one by libgit2
FILE_MODE = pygit2.enums.FileMode.BLOB
_EXECUTABLE_MODE = pygit2.enums.FileMode.BLOB_EXECUTABLE
_TREE_MODE = pygit2.enums.FileMode.TREE


class Trees(Objects):
    """The tree verbs of `Repository` (a base: `Repository` supplies the caches)."""

    _listings: dict[Oid, list[tuple[str, str]]]
    _entries: dict[Oid, loose.Entries]

    @property
    def empty_tree(self) -> Oid:
        if self._empty_tree is None:
            self._empty_tree = Oid(str(write_object(self._repo.TreeBuilder().write)))
        return self._empty_tree

    def tree_entry(self, tree: Oid, path: str) -> tuple[str, Oid] | None:
        """('blob'|'tree', oid) at `path` inside `tree`, or None (also when `tree` is no tree)."""
        obj = self._entry(tree, path)
        if obj is None:
            return None
        if obj.type == pygit2.enums.ObjectType.TREE:
            return ("tree", Oid(str(obj.id)))
        return ("blob", Oid(str(obj.id))) if obj.type == pygit2.enums.ObjectType.BLOB else None

    def file_entry(self, tree: Oid, path: str) -> Oid | None:
        """The blob at `path` inside `tree` when it is a regular file there (mode 100644 or 100755),
        else None: what git reads as a note; a symbolic link or a gitlink in its place is none."""
        obj = self._entry(tree, path)
        if obj is None:
            return None
        regular = obj.filemode in (FILE_MODE, _EXECUTABLE_MODE)
        return Oid(str(obj.id)) if regular and obj.type == pygit2.enums.ObjectType.BLOB else None

    def _entry(self, tree: Oid, path: str) -> pygit2.Object | None:
        t = self._tree(tree)
        if t is None:
            return None
        try:
            return t[path]
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def tree_list(self, tree: Oid, path: str) -> list[tuple[str, str]]:
        """(name, 'blob'|'tree') of every entry of the folder `path` inside `tree` ('' for the root).
        Remembered by the folder's id: a claim decision lists the same few folders again and again."""
        found = ("tree", tree) if not path else self.tree_entry(tree, path)
        if not found or found[0] != "tree":
            return []
        listing = self._listings.get(found[1])
        if listing is None:
            t = self._tree(found[1])
            if t is None:
                return []
            kinds = {pygit2.enums.ObjectType.TREE: "tree", pygit2.enums.ObjectType.BLOB: "blob"}
            listing = [(e.name, kinds[e.type]) for e in t if e.type in kinds and e.name is not None]
            if len(self._listings) >= _LISTINGS_KEPT:
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del self._listings[next(iter(self._listings))]
            self._listings[found[1]] = listing
        return list(listing)

    def _tree(self, oid: Oid) -> pygit2.Tree | None:
        try:
            t = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return t if isinstance(t, pygit2.Tree) else None

    def _sorted_tree(self, oid: Oid) -> pygit2.Tree | None:
        """Tree `oid` (None: none), refused as git fsck refuses it when two entries share a name or
        the entries are out of git's order: a reader keyed by name would see only one of the two."""
        tree = self._tree(oid)
        if tree is None:
            return None
        last: bytes | None = None
        for e in tree:
            raw = e.raw_name if e.raw_name is not None else b""
            key = raw + b"/" if e.type == pygit2.enums.ObjectType.TREE else raw
            if last is not None and key <= last:
                raise Unreadable(f"tree {oid[:12]} has entries out of order or sharing a name")
            last = key
        return tree

    def tree_blobs(
        self, tree: Oid, prefix: str = "", max_depth: int | None = None, others: list[str] | None = None
    ) -> Iterator[tuple[str, Oid]]:
        """Every blob below `tree`, depth first in name order, as (path, oid). Iterative, so a
        tree of any depth is walked; subtrees below `max_depth` folders are left out. With
        `others`, only files are blobs: the paths of symbolic links and submodules go there."""
        first = self._tree(tree)
        if first is None:
            return
        stack: list[tuple[Iterator[pygit2.Object], str, int]] = [(iter(first), prefix, 0)]
        while stack:
            entries, at, depth = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            path = f"{at}{entry.name}"
            if entry.type == pygit2.enums.ObjectType.TREE:
                sub = self._tree(Oid(str(entry.id)))
                if sub is not None and (max_depth is None or depth < max_depth):
                    stack.append((iter(sub), path + "/", depth + 1))
            elif others is not None and entry.filemode not in (FILE_MODE, _EXECUTABLE_MODE):
                others.append(path)
            elif entry.type == pygit2.enums.ObjectType.BLOB:
                yield path, Oid(str(entry.id))

    def tree_diff(
        self, old: Oid | None, new: Oid | None, limit: int
    ) -> list[tuple[str, Oid | None, Oid | None]] | None:
        """Every leaf that differs between trees `old` and `new` (None: empty), as (path, old entry,
        new entry), entries that are no blob (a submodule, a symlink) included; folders both hold
        unchanged are never opened. Iterative, so any depth is walked; None once more than `limit`
        leaves differ, so a hostile tree of millions of entries costs `limit`, never its size."""
        out: list[tuple[str, Oid | None, Oid | None]] = []
        todo: list[tuple[str, Oid | None, Oid | None]] = [("", old, new)]
        while todo:
            prefix, a, b = todo.pop()
            ta = self._sorted_tree(a) if a else None
            tb = self._sorted_tree(b) if b else None
            for oid, found in ((a, ta), (b, tb)):
                if oid and found is None:  # never read as empty: every entry would look added or removed
                    raise Unreadable(f"tree {oid[:12]} is missing from the repository or no tree")
            left = {e.name: e for e in ta if e.name is not None} if ta is not None else {}
            right = {e.name: e for e in tb if e.name is not None} if tb is not None else {}
            for name in sorted(left.keys() | right.keys()):
                ea, eb = left.get(name), right.get(name)
                ia = Oid(str(ea.id)) if ea is not None else None
                ib = Oid(str(eb.id)) if eb is not None else None
                if ia == ib and (ea is None or eb is None or ea.filemode == eb.filemode):
                    continue
                a_dir = ea is not None and ea.type == pygit2.enums.ObjectType.TREE
                b_dir = eb is not None and eb.type == pygit2.enums.ObjectType.TREE
                if a_dir or b_dir:
                    todo.append((f"{prefix}{name}/", ia if a_dir else None, ib if b_dir else None))
                if (not a_dir and ia is not None) or (not b_dir and ib is not None):
                    out.append((f"{prefix}{name}", None if a_dir else ia, None if b_dir else ib))
                if len(out) > limit or len(todo) > limit:
                    return None
        return out

    def tree_pick(self, tree: Oid, folder: str, names: Iterable[str]) -> Oid | None:
        """A new tree holding only the entries `names` of `folder` (one name, at the root of `tree`),
        as they are (no blob is read, each looked up by name); None when it would be empty."""
        found = self.tree_entry(tree, folder)
        sub = self._tree(found[1]) if found is not None and found[0] == "tree" else None
        if sub is None:
            return None
        tb = self._repo.TreeBuilder()
        for name in names:
            try:
                e = sub[name]
            except (KeyError, ValueError, pygit2.GitError):
                continue
            tb.insert(name, e.id, e.filemode)
        if len(tb) == 0:
            return None
        top = self._repo.TreeBuilder()
        top.insert(folder, write_object(tb.write), _TREE_MODE)
        return Oid(str(write_object(top.write)))

    def tree_update(self, tree: Oid | None, changes: Mapping[str, Oid | None]) -> Oid:
        """A new tree: `tree` with each path set to a blob (or removed for None); empty dirs pruned."""
        groups: dict[str, dict[str, Oid | None]] = {}
        leaves: dict[str, Oid | None] = {}
        for path, value in changes.items():
            head, _, rest = path.partition("/")
            if rest:
                groups.setdefault(head, {})[rest] = value
            else:
                leaves[head] = value
        entries = self._small_tree(tree)
        names = {name: loose.plain(name) for name in (*leaves, *groups)}
        blobs = all(v is None or (loose.full_id(v) and self._is(v, b"blob")) for v in leaves.values())
        if entries is None or None in names.values() or not blobs:  # libgit2 refuses a bad entry, as before
            return self._built_tree(tree, leaves, groups)
        for name, value in leaves.items():
            if value is None:
                entries.pop(names[name] or b"", None)
            else:
                entries[names[name] or b""] = (loose.BLOB, bytes.fromhex(value))
        for name, sub in groups.items():
            key = names[name] or b""
            existing = entries.get(key)
            new_sub = self.tree_update(
                Oid(existing[1].hex()) if existing and existing[0] == loose.TREE else None, sub
            )
            if new_sub == loose.EMPTY_TREE:
                entries.pop(key, None)
            else:
                entries[key] = (loose.TREE, bytes.fromhex(new_sub))
        if not entries:
            return self.empty_tree
        oid = self._put(b"tree", loose.tree_bytes(entries))
        self._remember_entries(oid, entries)
        return oid

    def _small_tree(self, tree: Oid | None) -> loose.Entries | None:
        """A copy of the entries of `tree` (None: none) when this handle lays the tree out itself: a
        SHA-1 repository, a tree of at most `_SMALL_TREE` entries, as git writes trees. Else None."""
        if self._objects is None:
            return None
        if tree is None:
            return {}
        known = self._entries.get(tree)
        if known is not None:
            return dict(known)
        t = self._tree(tree)
        if t is None or len(t) > _SMALL_TREE:
            return None
        entries = loose.parse_tree(t.read_raw())
        if entries is not None:
            self._remember_entries(tree, entries)
        return None if entries is None else dict(entries)

    def _remember_entries(self, oid: Oid, entries: loose.Entries) -> None:
        if len(self._entries) >= _ENTRIES_KEPT:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._entries[next(iter(self._entries))]
        self._entries[oid] = entries

    def _built_tree(
        self, tree: Oid | None, leaves: dict[str, Oid | None], groups: dict[str, dict[str, Oid | None]]
    ) -> Oid:
        """`tree_update` by libgit2's tree builder: for a large tree, or one not as git writes it."""
        tb = self._repo.TreeBuilder(pygit2.Oid(hex=tree)) if tree else self._repo.TreeBuilder()
        for name, value in leaves.items():
            if value is None:
                if tb.get(name) is not None:
                    tb.remove(name)
            else:
                tb.insert(name, pygit2.Oid(hex=value), FILE_MODE)
        for name, sub in groups.items():
            existing = tb.get(name)
            sub_tree = Oid(str(existing.id)) if existing is not None and existing.type_str == "tree" else None
            new_sub = self.tree_update(sub_tree, sub)
            if new_sub == self.empty_tree:
                if existing is not None:
                    tb.remove(name)
            else:
                tb.insert(name, pygit2.Oid(hex=new_sub), _TREE_MODE)
        return Oid(str(write_object(tb.write)))
