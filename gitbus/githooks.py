"""`gitbus install git-hooks`: the pre-commit guard and the post-commit note, chained to the user's hooks.

git runs one hooks directory: `<common git dir>/hooks`, or `core.hooksPath`. When that is one folder
for every worktree (the default, or an absolute `core.hooksPath`), our two hooks go into it and the
user's hooks of the same names are renamed to `<name>.before-gitbus` and run after ours. A relative
`core.hooksPath` (husky, a tracked `.githooks/`) is resolved in each worktree on its own, and writing
there would change tracked files; so then gitbus points `core.hooksPath` (this repository's config)
at a folder of its own in the common git dir, whose hooks run our step and then the worktree's own
hook of the same name under the old relative path. Uninstall puts every part back.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from gitbus import state
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.install_files import gitbus_command

GUARD_TAG = "# gitbus commit guard"
HOOKS = ("pre-commit", "post-commit")
# Every hook git runs from the hooks directory: with our own folder in place, each one still reaches
# the worktree's hook of that name.
ALL_HOOKS = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
    "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge",
    "pre-push", "pre-receive", "update", "proc-receive", "post-receive", "post-update",
    "reference-transaction", "push-to-checkout", "pre-auto-gc", "post-rewrite", "sendemail-validate",
    "fsmonitor-watchman", "p4-changelist", "p4-prepare-changelist", "p4-post-changelist", "p4-pre-submit",
    "post-index-change",
)  # fmt: skip
# Run on every ref update or index write: wrapped only when the user has one, or each costs a shell.
HOT = ("reference-transaction", "post-index-change", "fsmonitor-watchman")


def hooks_dir(repo: Repository) -> Path:
    """The hooks directory git uses here (respects `core.hooksPath`)."""
    path = Path(repo.git("rev-parse", "--git-path", "hooks").strip())
    return path if path.is_absolute() else (repo.root / path).resolve()


def _step(name: str, cmd: str) -> str:
    if name == "pre-commit":
        return f"""if [ "${{GITBUS_NO_GUARD:-}}" != "1" ]; then
    {cmd} guard --staged || exit $?
fi
"""
    if name == "post-commit":  # a note of the coordination behind the commit; never fails the commit
        return f"{cmd} note HEAD >/dev/null 2>&1 || true\n"
    return ""


def _script(name: str, cmd: str, chained: str) -> str:
    """The hook `name`: our step first (if it has one), then `chained`, the user's hook."""
    return f"""#!/bin/sh
{GUARD_TAG} (installed by `gitbus install git-hooks`; bypass with GITBUS_NO_GUARD=1 or --no-verify)
{_step(name, cmd)}chained={chained}
if [ -x "$chained" ]; then
    exec "$chained" "$@"
fi
exit 0
"""


def _relative_hooks_path(repo: Repository) -> str | None:
    """`core.hooksPath` when it is relative (resolved per worktree), else None; once our own folder
    stands in front of it, the relative path it replaced."""
    value = repo.git("config", "--get", "core.hooksPath", check=False).strip()
    if value == str(state.own_hooks(repo.common_dir)):
        try:
            was = json.loads(state.hooks_path_record(repo.common_dir).read_text())
        except (OSError, ValueError, RecursionError):
            raise GitbusError(
                f"core.hooksPath points at {value} but gitbus has no record of what it replaced; "
                "set core.hooksPath back yourself, then install again."
            ) from None
        return str(was["relative"]) if isinstance(was, dict) and was.get("relative") else None
    if not value or value.startswith(("/", "~")):
        return None
    return value


def install_git_hooks(repo: Repository) -> list[Path]:
    """Install the pre-commit guard and the post-commit note, chaining any hooks already there;
    notes follow amends and rebases (`notes.rewriteRef`). Returns the hooks it wrote: none when they
    were in place already."""
    relative = _relative_hooks_path(repo)
    written = _install_own_dir(repo, relative) if relative is not None else _install_in_place(repo)
    current = repo.git("config", "--get-all", "notes.rewriteRef", check=False).split()
    if "refs/notes/gitbus" not in current:
        repo.git("config", "--add", "notes.rewriteRef", "refs/notes/gitbus")
    return written


def _install_in_place(repo: Repository) -> list[Path]:
    d = hooks_dir(repo)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name in HOOKS:
        hook, chained = d / name, d / f"{name}.before-gitbus"
        if hook.exists() and GUARD_TAG not in hook.read_text(errors="replace"):
            if chained.exists():
                raise GitbusError(f"{chained} already exists; gitbus will not overwrite a chained hook.")
            hook.rename(chained)
        if _put(hook, _script(name, gitbus_command(), f'"$(dirname "$0")/{name}.before-gitbus"')):
            written.append(hook)
    return written


def _put(hook: Path, script: str) -> bool:
    """Write an executable hook unless it already says exactly `script`; whether it wrote."""
    try:
        if hook.read_text() == script and os.access(hook, os.X_OK):
            return False
    except (OSError, ValueError):
        pass
    state.write_atomic(hook, script, prefix=f".{hook.name}.gitbus-", mode=0o755)
    return True


def _install_own_dir(repo: Repository, relative: str) -> list[Path]:
    """Our own hooks folder in front of a relative `core.hooksPath`, which each hook still runs."""
    d = state.own_hooks(repo.common_dir)
    local = repo.git("config", "--local", "--get", "core.hooksPath", check=False).strip()
    if local != str(d):  # not installed yet: remember what to put back
        record = json.dumps({"local": local or None, "relative": relative})
        state.write_atomic(state.hooks_path_record(repo.common_dir), record, prefix=".hooks-path-")
    d.mkdir(parents=True, exist_ok=True)
    folder = relative.rstrip("/")
    written = []
    for name in ALL_HOOKS:
        if name in HOT and not any((wt / folder / name).exists() for wt in repo.worktrees()):
            continue
        hook = d / name
        chained = '"$(git rev-parse --show-toplevel)"/' + shlex.quote(f"{folder}/{name}")
        if _put(hook, _script(name, gitbus_command(), chained)) and name in HOOKS:
            written.append(hook)
    if local != str(d):
        repo.git("config", "--local", "core.hooksPath", str(d))
    return written


def uninstall_git_hooks(repo: Repository) -> list[Path]:
    """Remove our hooks and put back the user's (and their `core.hooksPath`) as they were."""
    removed = []
    record = state.hooks_path_record(repo.common_dir)
    if record.exists():
        try:
            was = json.loads(record.read_text())
        except (ValueError, RecursionError):
            was = {}
        d = state.own_hooks(repo.common_dir)
        if isinstance(was, dict) and was.get("local"):
            repo.git("config", "--local", "core.hooksPath", str(was["local"]))
        elif repo.git("config", "--local", "--get", "core.hooksPath", check=False).strip() == str(d):
            repo.git("config", "--local", "--unset", "core.hooksPath", check=False)
        for name in ALL_HOOKS:
            hook = d / name
            if hook.exists() and GUARD_TAG in hook.read_text(errors="replace"):
                hook.unlink()
                if name in HOOKS:
                    removed.append(hook)
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
        record.unlink()
    d = hooks_dir(repo)
    for name in HOOKS:
        hook, chained = d / name, d / f"{name}.before-gitbus"
        if hook.exists() and GUARD_TAG in hook.read_text(errors="replace"):
            hook.unlink()
            if chained.exists():
                chained.rename(hook)
            removed.append(hook)
    repo.git("config", "--unset", "notes.rewriteRef", "^refs/notes/gitbus$", check=False)
    return removed
