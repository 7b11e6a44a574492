"""The file paths an `apply_patch` patch writes (Codex's edit format).

A patch is a block of `*** Begin Patch` … `*** End Patch`; each file it touches has a header line
`*** Add File: P`, `*** Update File: P` or `*** Delete File: P`, and a move adds `*** Move to: P`.
Paths are as the model wrote them, relative to the session's folder or absolute. Codex trims a
header line before it reads it, so an indented header writes its file too: it is read here alike.
"""

from __future__ import annotations

import re

BEGIN = "*** Begin Patch"
_HEADER = re.compile(r"^[^\S\n]*\*\*\* (?:Add File|Update File|Delete File|Move to): (.+?)\s*$", re.M)


def written_paths(patch: str) -> list[str]:
    """Every path the patch adds, changes, deletes or moves to, in order, once each."""
    return list(dict.fromkeys(p for p in _HEADER.findall(patch) if p))
