"""How a sync, push or pull shows what moved: one line of counts on stdout (or the report as JSON),
and on stderr what it dropped, passed over or refused, a peer's words and ref names inert.

A face module beside `render` and `statusview`.
"""

from __future__ import annotations

from gitbus import render
from gitbus.inert import inert, inert_block
from gitbus.remote import Report
from gitbus.render import Out

SYNC_NAMED = 5  # bad refs a sync names one by one; `--json` lists them all


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
    # A peer can push any number of bad refs: name a few, count the rest.
    for ref in got.ignored[:SYNC_NAMED]:
        render.say(err, f"gitbus: ignored {inert(ref)}: {_not_ours(ref)}, so no gitbus wrote it")
    if len(got.ignored) > SYNC_NAMED:
        more = len(got.ignored) - SYNC_NAMED
        render.say(err, f"gitbus: ignored {more} more ref(s) with names no gitbus writes")
    for line in got.restored[:SYNC_NAMED]:  # what the remote lost, and this push put back
        render.say(err, f"gitbus: {inert(line, 600)}")
    if len(got.restored) > SYNC_NAMED:
        render.say(err, f"gitbus: put back {len(got.restored) - SYNC_NAMED} more ref(s) on {got.remote}")
    for refusal in got.refused[:SYNC_NAMED]:
        render.say(err, f"gitbus: {inert(refusal.line(), 600)}")
    if len(got.refused) > SYNC_NAMED:
        more = len(got.refused) - SYNC_NAMED
        render.say(err, f"gitbus: refused {more} more ref(s) (gitbus sync --json lists them)")


def _not_ours(ref: str) -> str:
    """Why sync left remote ref `ref` alone, in a few words."""
    if "/bus/ledgers/" in ref:
        return "not a ledger (`main`, or a shard's 4 hex digits)"
    return "not a valid agent name"
