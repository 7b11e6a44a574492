"""How a sync, push or pull shows what moved: one line of counts on stdout (or the report as JSON),
and on stderr what it dropped, passed over or refused, a peer's words and ref names inert.

A face module beside `render` and `statusview`.
"""

from __future__ import annotations

from gitbus import render
from gitbus.inert import inert, inert_block
from gitbus.remote import Report
from gitbus.render import Out


def report(out: Out, got: Report, json_out: bool) -> None:
    if json_out:
        render.dump(
            out,
            {
                "remote": got.remote,
                "updated": got.updated,
                "merged": got.merged,
                "pushed": got.pushed,
                "dropped": [m.to_json() for m in got.dropped],
                "ignored": got.ignored,
                "refused": [{"ref": r.ref, "reason": r.reason, "kept": r.kept} for r in got.refused],
                "restored": got.restored,
                "passed": got.passed,
            },
        )
        return
    render.say(
        out,
        f"{got.remote}: {len(got.updated)} ref(s) updated, {len(got.merged)} merged, "
        f"{len(got.pushed)} pushed",
    )
    err = render.console_for(stderr=True)
    for m in got.dropped:
        render.say(err, f"gitbus: {inert_block(m.text)}")
    render.a_few(
        err,
        [f"ignored {inert(ref)}: {_not_ours(ref)}, so no gitbus wrote it" for ref in got.ignored],
        "ignored {} more ref(s) with names no gitbus writes",
    )
    render.a_few(
        err, [inert(line, 600) for line in got.restored], f"put back {{}} more ref(s) on {got.remote}"
    )
    render.a_few(
        err,
        [f"passed over {inert(line, 600)}" for line in got.passed],
        "passed over {} more entries, no gitbus data or notes too large to merge "
        "(gitbus sync --json lists them)",
    )
    render.a_few(
        err,
        [inert(r.line(), 600) for r in got.refused],
        "refused {} more ref(s) (gitbus sync --json lists them)",
    )


def _not_ours(ref: str) -> str:
    """Why sync left remote ref `ref` alone, in a few words."""
    if "/bus/ledgers/" in ref:
        return "not a ledger (`main`, or a shard's 4 hex digits)"
    return "not a valid agent name"
