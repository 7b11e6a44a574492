"""Housekeeping: keeping a long-lived bus packed, beside agents that keep writing.

Every post leaves a loose commit object and every ref update a loose ref file: 100k loose messages
take 1.2 GB and are read ~2.6× slower than packed ones. `check` only looks at
files, the way `git gc --auto` estimates (one of the 256 object fan-out folders, times 256), so a
watcher can afford it after every update. `run` uses only what is safe beside live writers:
`git pack-refs --all` (git writes `packed-refs` before it deletes a loose ref, and gitbus reads loose
refs first) and `git gc` with its default prune age, which keeps any unreferenced object younger than
two weeks, so an object a writer has just written and not yet pointed a ref at survives. Never
`--prune=now`: git documents it as unsafe beside a concurrent writer. One housekeeper per repository
at a time (an `flock`, released by the kernel if it dies); a second one returns at once.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitbus import state
from gitbus.errors import GitbusError
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import BUS_PREFIX, KEPT_PREFIX

if TYPE_CHECKING:
    from gitbus.git import Repository

MIN_INTERVAL_SECONDS = 600.0  # `maybe_run` looks at most this often


@dataclass(frozen=True)
class Limits:
    """How much clutter is worth a run; the object and pack limits are git's own defaults."""

    loose_objects: int = 6700  # gc.auto
    packs: int = 50  # gc.autoPackLimit
    loose_refs: int = 100  # bus refs outside packed-refs (each agent's chain, tracking refs)


@dataclass(frozen=True)
class Clutter:
    """What a run would tidy, read from files: loose objects (estimated), packs and loose bus refs."""

    loose_objects: int
    packs: int
    loose_refs: int

    def due(self, limits: Limits | None = None) -> bool:
        """Whether a run would do something; for objects exactly when `git gc --auto` would."""
        lim = limits or Limits()
        objects = self.loose_objects > _git_auto(lim.loose_objects) * 256 or self.packs > lim.packs
        return objects or self.loose_refs > lim.loose_refs


def _git_auto(limit: int) -> int:
    """git's own sample threshold: more than ceil(gc.auto / 256) loose objects in `objects/17`."""
    return max(1, -(-limit // 256))


@dataclass(frozen=True)
class Outcome:
    """What a run did: the git commands it ran, those that failed (as sentences), before and after."""

    before: Clutter
    after: Clutter
    ran: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: str | None = None  # why nothing ran

    def describe(self) -> str:
        """One line for people: what ran and what it changed, or why nothing ran."""
        b, a = self.before, self.after
        counts = (
            f"~{b.loose_objects:,} loose objects, {b.packs} packs, {b.loose_refs} loose bus refs"
            if self.skipped
            else f"loose objects ~{b.loose_objects:,} → ~{a.loose_objects:,}, packs {b.packs} → {a.packs}, "
            f"loose bus refs {b.loose_refs} → {a.loose_refs}"
        )
        what = f"nothing ran: {self.skipped}" if self.skipped else "ran " + ", ".join(self.ran)
        return f"{what} ({counts})"

    def to_json(self) -> dict[str, object]:
        return {
            "ran": list(self.ran),
            "failed": list(self.failed),
            "skipped": self.skipped,
            "before": dataclasses.asdict(self.before),
            "after": dataclasses.asdict(self.after),
        }


def check(common_dir: Path) -> Clutter:
    """The clutter of the repository whose shared git dir is `common_dir` (a few directory reads)."""
    objects = common_dir / "objects"
    try:
        sample = sum(1 for n in os.listdir(objects / "17") if len(n) == 38)
    except FileNotFoundError:
        sample = 0
    try:
        packs = sum(1 for n in os.listdir(objects / "pack") if n.endswith(".pack"))
    except FileNotFoundError:
        packs = 0
    return Clutter(sample * 256, packs, _loose_bus_refs(common_dir))


def _loose_bus_refs(common_dir: Path) -> int:
    """Loose ref files under refs/bus/ and refs/gitbus/ (what gitbus keeps of each remote's bus)."""
    roots = [common_dir / BUS_PREFIX, common_dir / KEPT_PREFIX]
    count = 0
    for root in roots:
        for _dir, _subdirs, files in os.walk(root):
            count += sum(1 for f in files if not f.endswith(".lock"))
    return count


def run(repo: Repository, *, force: bool = False, limits: Limits | None = None) -> Outcome:
    """Pack what is due (everything with `force`), safely beside live writers.

    A git command that fails (another git holds `packed-refs.lock`, or gc is already running) is
    reported in `failed`, never raised: housekeeping must not break the watcher that calls it."""
    lim = limits or Limits()
    common = repo.common_dir
    before = check(common)
    with state.locked(state.housekeeping_lock(common), wait=False) as mine:
        if not mine:
            return Outcome(before, before, skipped="another housekeeping run is under way")
        dropped = _drop_forgotten_remotes(repo)
        commands: list[tuple[str, ...]] = []
        if force:
            commands.append(("gc", "--quiet"))  # packs refs too; prunes only what is 2 weeks unreferenced
        else:
            if before.loose_refs > lim.loose_refs:
                commands.append(("pack-refs", "--all"))
            if before.loose_objects > _git_auto(lim.loose_objects) * 256 or before.packs > lim.packs:
                commands.append(("gc", "--auto", "--quiet"))
        if not commands:
            _stamp(common)
            return Outcome(before, before, dropped, skipped=None if dropped else "nothing is due")
        # Our limits rather than the user's gc.auto, and in the foreground so `failed` tells the truth.
        config = ["-c", f"gc.auto={max(1, lim.loose_objects)}", "-c", f"gc.autoPackLimit={max(1, lim.packs)}"]
        config += ["-c", "gc.autoDetach=false"]
        ran: list[str] = []
        failed: list[str] = []
        for args in commands:
            code, _out, err = repo.git_result(*config, *args)
            ran.append("git " + " ".join(args))
            if code != 0:
                lines = err.strip().splitlines()
                failed.append(f"git {args[0]} failed: {lines[-1] if lines else code}")
        _stamp(common)
        return Outcome(before, check(common), (*dropped, *ran), tuple(failed))


def _drop_forgotten_remotes(repo: Repository) -> tuple[str, ...]:
    """Delete what gitbus keeps of remotes git no longer knows (`refs/gitbus/{fetched,vouched}/<name>/`:
    git renames and removes only a remote's `refs/remotes/<name>/`), each ref leased on its value;
    what was done, as `ran` says it. Kept, they would hold their objects from gc for good; gitbus
    syncs only with remotes git knows (`remote.require_remote`), so none in use is dropped."""
    code, out, _ = repo.git_result("remote")
    if code != 0:
        return ()
    known = set(out.split())
    gone: set[str] = set()
    changes: list[tuple[str, Oid | None, Oid | None]] = []
    for ref, oid in repo.refs(KEPT_PREFIX).items():
        rest = ref[len(KEPT_PREFIX) :].partition("/")[2]  # past `fetched/` or `vouched/`
        name = rest.split("/bus/", 1)[0] if "/bus/" in rest else rest.removesuffix("/notes/gitbus")
        if name and name != rest and name not in known:
            gone.add(name)
            changes.append((ref, None, oid))
    if not changes:
        return ()
    try:
        repo.update_refs(changes, "gitbus housekeeping")
    except (RefMoved, GitbusError):
        return ()  # changed meanwhile: the next run looks again
    return tuple(
        f"git update-ref -d refs/gitbus/*/{name}/ (a remote git no longer knows)" for name in sorted(gone)
    )


def maybe_run(
    repo: Repository, *, min_interval: float = MIN_INTERVAL_SECONDS, limits: Limits | None = None
) -> Outcome | None:
    """Run if the last look was over `min_interval` seconds ago and something is due; else None.

    Costs one `stat` when a look was recent: a watcher can call it after every update."""
    stamp = state.housekeeping_stamp(repo.common_dir)
    try:
        if time.time() - stamp.stat().st_mtime < min_interval:
            return None
    except FileNotFoundError:
        pass
    if not check(repo.common_dir).due(limits):
        _stamp(repo.common_dir)
        return None
    return run(repo, limits=limits)


def _stamp(common_dir: Path) -> None:
    f = state.housekeeping_stamp(common_dir)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.touch()
