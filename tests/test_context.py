"""The context file: what `render` says for one agent, and how `update_all` writes it into worktrees."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from itertools import count, pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitbus import context, context_text, context_view
from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.clock import FakeClock
from gitbus.git import Repository
from gitbus.ids import EVERYONE, AgentName, MessageId
from gitbus.message import Kind, Message
from gitbus.paths import overlaps

from .conftest import git

BusFor = Callable[[Path, str], Bus]

NOW = 1_764_000_000_000
ME = AgentName("api-1")
ROOT = Path("/work/api")
_ids = count(1)


def msg(
    kind: Kind,
    sender: str,
    text: str,
    *,
    to: str = EVERYONE,
    paths: tuple[str, ...] = (),
    reply_to: str | None = None,
    ago_ms: int = 60_000,
) -> Message:
    return Message(
        MessageId(f"{next(_ids):016x}"),
        kind,
        AgentName(sender),
        AgentName(to),
        text,
        NOW - ago_ms,
        paths,
        MessageId(reply_to) if reply_to else None,
    )


def claim(owner: str, path: str, *, left_ms: int = 20 * 60_000, reason: str = "") -> Claim:
    return Claim(
        path,
        AgentName(owner),
        reason,
        NOW - 60_000,
        NOW + left_ms,
        30 * 60_000,
        MessageId(f"{next(_ids):016x}"),
    )


def view(
    recent: list[Message], claims: list[Claim] | None = None, requests: list[Message] | None = None
) -> context_view.View:
    """A view as `read_view` builds it: `recent` newest first."""
    return context_view.View(NOW, claims or [], recent, requests or [])


def section(text: str, title: str) -> list[str]:
    """The bullet lines under `## <title>…` up to the next heading or the closing pointer."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}"))
    out: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith(("## ", "More: ")):
            break
        if line:
            out.append(line)
    return out


def render(v: context_view.View, changed: list[str] | None = None, ignorecase: bool = False) -> str:
    return context_text.render(v, ME, ROOT, changed or [], ignorecase)


# -- render ------------------------------------------------------------------------------------------


def test_discoveries_on_paths_i_claim_come_first_then_newest_first() -> None:
    newest = msg(Kind.DISCOVERY, "db-1", "pool size lives in config", paths=("config/db.yaml",), ago_ms=1000)
    on_mine = msg(Kind.DISCOVERY, "web-1", "handler retries twice", paths=("internal/api/x.go",), ago_ms=5000)
    older = msg(Kind.DISCOVERY, "db-1", "migrations run at boot", ago_ms=9000)
    above_mine = msg(Kind.DISCOVERY, "web-1", "internal/ is generated", paths=("internal/",), ago_ms=20_000)
    text = render(view([newest, on_mine, older, above_mine], [claim("api-1", "internal/api/")]))
    found = section(text, "Recent discoveries")
    assert [line.split(": ", 1)[1] for line in found] == [
        '"handler retries twice"',
        '"internal/ is generated"',
        '"pool size lives in config"',
        '"migrations run at boot"',
    ]
    assert found[0] == '- web-1 on internal/api/x.go: "handler retries twice"'


def test_discoveries_on_files_i_changed_rank_with_those_on_my_claims() -> None:
    newest = msg(Kind.DISCOVERY, "db-1", "unrelated", paths=("docs/x.md",), ago_ms=1000)
    on_changed = msg(Kind.DISCOVERY, "db-1", "readme is generated", paths=("README.md",), ago_ms=8000)
    text = render(view([newest, on_changed]), changed=["README.md"])
    assert section(text, "Recent discoveries")[0].endswith('"readme is generated"')


def test_path_ranking_follows_the_repositorys_case_sensitivity() -> None:
    newest = msg(Kind.DISCOVERY, "db-1", "unrelated", ago_ms=1000)
    on_mine = msg(Kind.DISCOVERY, "db-1", "case differs", paths=("Internal/API/x.go",), ago_ms=8000)
    mine = [claim("api-1", "internal/api/")]
    assert section(render(view([newest, on_mine], mine)), "Recent discoveries")[0].endswith('"unrelated"')
    folded = render(view([newest, on_mine], mine), ignorecase=True)
    assert section(folded, "Recent discoveries")[0].endswith('"case differs"')


def test_my_own_discoveries_are_not_listed() -> None:
    text = render(view([msg(Kind.DISCOVERY, "api-1", "I found this")]))
    assert section(text, "Recent discoveries") == ["- none"]


def test_it_says_who_i_am_and_ends_with_a_pointer_to_the_inbox() -> None:
    text = render(view([]))
    assert text.startswith("# gitbus context for agent api-1\n")
    assert f"You are agent **api-1** in worktree `{ROOT}`" in text
    assert text.endswith("\n\nMore: `gitbus inbox`, `gitbus log`, `gitbus status`.\n")
    for title in (
        "My claims",
        "Others' claims",
        "Open questions",
        "Answers to my",
        "Open requests",
        "Recent",
    ):
        assert section(text, title) == ["- none"], title


def test_the_worktree_path_is_written_inert() -> None:
    """A directory name is anyone's choice: raw, it put escape sequences and a bidi override into
    the file a model reads as instructions."""
    root = Path("/tmp/x/wt`` [x](http:/e) \x1b[31m\u202eZ")
    text = context_text.render(view([]), ME, root, [], False)
    assert "\x1b" not in text and "\u202e" not in text
    assert 'in worktree "/tmp/x/wt`` [x](http:/e) \\x1b[31m\\u202eZ". Updated' in text


def test_my_claims_show_their_expiry_and_only_others_live_claims_are_listed() -> None:
    claims = [
        claim("api-1", "internal/api/", left_ms=12 * 60_000, reason="splitting handlers"),
        claim("api-1", "docs/", left_ms=-60_000),
        claim("web-1", "web/", left_ms=5 * 60_000),
        claim("db-1", "config/", left_ms=-1),
    ]
    text = render(view([], claims))
    mine = section(text, "My claims")
    assert mine[0].startswith("- api-1 holds internal/api/ until ") and "(12m left)" in mine[0]
    assert mine[0].endswith('(reason: "splitting handlers")')
    assert mine[1].startswith("- api-1 holds docs/ expired at ")
    others = section(text, "Others' claims")
    assert len(others) == 1 and others[0].startswith("- web-1 holds web/ until ") and "(5m left)" in others[0]


def test_open_questions_are_those_to_me_or_to_all_not_yet_answered() -> None:
    to_me = msg(Kind.QUESTION, "web-1", "when is internal/api/ free?", to="api-1", ago_ms=3000)
    to_all = msg(Kind.QUESTION, "db-1", "who owns migrations?", ago_ms=4000)
    to_other = msg(Kind.QUESTION, "web-1", "db question", to="db-1", ago_ms=5000)
    answered = msg(Kind.QUESTION, "db-1", "already settled?", ago_ms=6000)
    mine = msg(Kind.QUESTION, "api-1", "my own question", ago_ms=7000)
    reply = msg(Kind.ANSWER, "web-1", "yes", to="db-1", reply_to=answered.id, ago_ms=2000)
    text = render(view([reply, to_me, to_all, to_other, answered, mine]))
    assert section(text, "Open questions") == [
        f'- [{to_me.id[:8]}] web-1 asks me: "when is internal/api/ free?"',
        f'- [{to_all.id[:8]}] db-1 asks: "who owns migrations?"',
    ]


def test_answers_to_my_questions_are_listed_and_others_answers_are_not() -> None:
    mine = msg(Kind.QUESTION, "api-1", "where is the db config?", ago_ms=9000)
    theirs = msg(Kind.QUESTION, "web-1", "what port?", ago_ms=8000)
    a1 = msg(Kind.ANSWER, "db-1", "config/db.yaml", to="api-1", reply_to=mine.id, ago_ms=2000)
    a2 = msg(Kind.ANSWER, "db-1", "8080", to="web-1", reply_to=theirs.id, ago_ms=1000)
    text = render(view([a2, a1, theirs, mine]))
    assert section(text, "Answers to my questions") == [f'- db-1 on [{mine.id[:8]}]: "config/db.yaml"']


def test_open_requests_are_those_to_me_or_to_anyone() -> None:
    to_all = msg(Kind.REQUEST, "web-1", "add an index")
    to_me = msg(Kind.REQUEST, "db-1", "review the schema", to="api-1")
    to_other = msg(Kind.REQUEST, "api-1", "fix CSS", to="web-1")
    text = render(view([], requests=[to_all, to_me, to_other]))
    assert section(text, "Open requests") == [
        f'- [{to_all.id[:8]}] from web-1: "add an index"',
        f'- [{to_me.id[:8]}] from db-1 to me: "review the schema"',
    ]


def test_peers_words_are_quoted_on_one_line_and_shortened() -> None:
    long = "x" * 500
    text = render(
        view(
            [msg(Kind.DISCOVERY, "db-1", 'a "quoted"\nmultiline\n\nclaim'), msg(Kind.DISCOVERY, "db-1", long)]
        )
    )
    found = section(text, "Recent discoveries")
    assert found[0] == "- db-1: \"a 'quoted' multiline claim\""
    assert len(found[1]) < 220 and found[1].endswith('…"')


def test_at_most_twenty_discoveries_are_listed_and_the_rest_counted() -> None:
    many = [msg(Kind.DISCOVERY, "db-1", f"finding {i}", ago_ms=1000 * (i + 1)) for i in range(30)]
    found = section(render(view(many)), "Recent discoveries")
    assert len(found) == 21 and found[0].endswith('"finding 0"') and found[19].endswith('"finding 19"')
    assert found[20] == "- … and 10 more: `gitbus log`"


def shown_and_more(lines: list[str]) -> tuple[list[str], int]:
    """A section's entries and the count its "N more" line gives (0 without one)."""
    if lines and (m := re.fullmatch(r"- … and (\d+) more: `gitbus \w+`", lines[-1])):
        return lines[:-1], int(m.group(1))
    return lines, 0


def crowded(others: int = 150) -> tuple[context_view.View, dict[str, int]]:
    """A bus with something in every section and far more than fits: many long claims of others."""
    asked = msg(Kind.QUESTION, "api-1", "where is the pool size set?", ago_ms=90_000)
    recent = (
        [msg(Kind.QUESTION, "web-1", f"question {i} " + "q" * 150, to="api-1") for i in range(30)]
        + [msg(Kind.ANSWER, "db-1", f"answer {i} " + "a" * 150, reply_to=asked.id) for i in range(30)]
        + [msg(Kind.DISCOVERY, "db-1", f"finding {i} " + "d" * 150) for i in range(30)]
        + [asked]
    )
    requests = [msg(Kind.REQUEST, "web-1", f"request {i} " + "r" * 150) for i in range(30)]
    claims = [claim("api-1", f"mine{i}/", reason="m" * 90) for i in range(30)] + [
        claim(f"peer-{i}", f"pkg{i}/", reason="o" * 200) for i in range(others)
    ]
    totals = {
        "My claims": 30,
        "Others' claims": others,
        "Open questions": 30,
        "Answers to my": 30,
        "Open requests": 30,
        "Recent discoveries": 30,
    }
    return view(recent, claims, requests), totals


def test_a_long_list_of_others_claims_leaves_every_section_its_first_entries_and_a_count() -> None:
    v, totals = crowded()
    text = render(v)
    assert len(text) <= context_text.MAX_CHARS
    assert text.startswith("# gitbus context for agent api-1\n")
    assert text.endswith("\n\nMore: `gitbus inbox`, `gitbus log`, `gitbus status`.\n")
    for title, total in totals.items():
        entries, more = shown_and_more(section(text, title))
        assert len(entries) >= 3 and more > 0 and len(entries) + more == total, (title, entries, more)
    # the most important of each first: the newest question, answer, request, discovery
    assert section(text, "Open questions")[0].endswith(' asks me: "question 0 ' + "q" * 150 + '"')
    assert section(text, "Answers to my")[0].startswith("- db-1 on [") and '"answer 0 ' in text
    assert '"request 0 ' in section(text, "Open requests")[0]
    assert '"finding 0 ' in section(text, "Recent discoveries")[0]


def test_sections_are_filled_by_priority_when_room_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    v, totals = crowded()
    counts: list[dict[str, int]] = []
    for cap in (3000, 4000, 6000, 16_000):
        monkeypatch.setattr(context_text, "MAX_CHARS", cap)
        text = render(v)
        assert len(text) <= cap and text.endswith(context_text.POINTER)
        got = {title: len(shown_and_more(section(text, title))[0]) for title in totals}
        assert all(n >= 1 for n in got.values()), got
        counts.append(got)
    first, *_, roomy = counts
    # with one entry each, what is left goes to my claims, then questions to me, then answers …
    assert first["My claims"] >= first["Open questions"] >= first["Answers to my"] >= first["Open requests"]
    assert first["Others' claims"] >= first["Open requests"] >= first["Recent discoveries"]
    assert all(a[t] <= b[t] for a, b in pairwise(counts) for t in totals)  # more room, never less
    assert all(n >= 10 for n in roomy.values()), roomy


def test_questions_to_me_are_kept_before_newer_questions_to_all(monkeypatch: pytest.MonkeyPatch) -> None:
    broadcasts = [msg(Kind.QUESTION, "db-1", f"to all {i}", ago_ms=1000 + i) for i in range(40)]
    to_me = msg(Kind.QUESTION, "web-1", "to me, older", to="api-1", ago_ms=90_000)
    v = view([*broadcasts, to_me])
    monkeypatch.setattr(context_text, "MAX_CHARS", len(render(v)) - 200)
    entries, more = shown_and_more(section(render(v), "Open questions"))
    assert entries[-1] == f'- [{to_me.id[:8]}] web-1 asks me: "to me, older"'  # still newest first
    assert entries[0].endswith('"to all 0"') and len(entries) + more == 41 and more > 0


def test_others_claims_on_my_paths_or_changed_files_come_first() -> None:
    claims = [
        claim("web-1", "web/"),
        claim("db-1", "internal/api/routes.go"),
        claim("db-1", "README.md"),
        claim("api-1", "internal/"),
    ]
    others = section(render(view([], claims), changed=["README.md"]), "Others' claims")
    assert [line.split()[3] for line in others] == ["internal/api/routes.go", "README.md", "web/"]


def test_the_file_is_capped_in_size_and_still_ends_with_the_pointer() -> None:
    questions = [msg(Kind.QUESTION, f"peer-{i}", "q" * 150 + f" {i}") for i in range(100)]
    for pad in range(1, 240):  # wherever the cap falls relative to a line end
        claims = [claim("peer-x", "a" * pad + "/")] + [
            claim(f"peer-{i}", f"pkg{i}/", reason="r" * 90) for i in range(60)
        ]
        text = render(view(questions, claims))
        assert len(text) <= context_text.MAX_CHARS, (
            f"{len(text)} characters with a {pad}-character first path"
        )
        assert text.endswith("\n\nMore: `gitbus inbox`, `gitbus log`, `gitbus status`.\n")
        assert text.startswith("# gitbus context for agent api-1\n")
        for title, total in (("Others' claims", 61), ("Open questions", 100)):
            entries, more = shown_and_more(section(text, title))
            assert entries and more and len(entries) + more == total


def test_a_text_exactly_at_the_cap_is_whole_and_one_character_less_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = view([msg(Kind.DISCOVERY, "db-1", f"finding {i}", ago_ms=i + 1) for i in range(20)])
    whole = render(v)
    monkeypatch.setattr(context_text, "MAX_CHARS", len(whole))
    assert render(v) == whole
    monkeypatch.setattr(context_text, "MAX_CHARS", len(whole) - 1)
    cut = render(v)
    assert len(cut) <= len(whole) - 1
    assert cut.endswith("\n\nMore: `gitbus inbox`, `gitbus log`, `gitbus status`.\n")
    entries, more = shown_and_more(section(cut, "Recent discoveries"))
    assert entries == section(whole, "Recent discoveries")[: len(entries)] and len(entries) + more == 20


# -- writing into worktrees ---------------------------------------------------------------------------


@pytest.fixture
def trio(worktrees: list[Path], clock: FakeClock) -> tuple[Bus, Bus, Bus]:
    """Three agents that joined by name, so a worktree's agent is known without GITBUS_AGENT."""
    out = []
    for wt, name in zip(worktrees, ("api-1", "web-1", "db-1"), strict=True):
        bus = Bus.open(wt, name, clock)
        bus.join(name)
        out.append(bus)
    return out[0], out[1], out[2]


def test_update_all_writes_each_worktrees_file_for_its_own_agent(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock
) -> None:
    api, web, db = trio
    api.claim(["internal/api/"], reason="splitting handlers")
    db.discover("the pool size is in config/db.yaml", ["config/db.yaml"])
    written = context.update_all(api.repo, clock.now_ms())
    assert written == [b.repo.root for b in trio]
    for b in trio:
        text = (b.repo.root / context.FILE).read_text()
        assert text.startswith(f"# gitbus context for agent {b.agent}\n")
        assert git(b.repo.root, "status", "--porcelain") == ""
    web_text = (web.repo.root / context.FILE).read_text()
    assert section(web_text, "Others' claims")[0].startswith("- api-1 holds internal/api/ until")
    assert section((api.repo.root / context.FILE).read_text(), "Others' claims") == ["- none"]
    assert context.update_all(api.repo, clock.now_ms()) == []  # nothing changed: nothing rewritten


def test_claims_that_cannot_be_read_are_said_to_be_unknown_never_none(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock
) -> None:
    """A damaged ledger ref: its claims are unknown, and the guard refuses edits. The context file
    must not tell an agent "none" under the claims (nor leave the warning out of a session's brief)."""
    api, web, _ = trio
    api.claim(["internal/api/"], reason="splitting handlers")
    shard = next(p for p in (api.repo.common_dir / "refs" / "bus" / "ledgers").iterdir() if p.name != "main")
    shard.write_bytes(b"")
    view = context_view.read_view(web.repo, clock.now_ms())
    text = context_text.render(view, web.agent, web.repo.root, [], False)
    for title in ("My claims", "Others' claims"):
        first = section(text, title)[0]
        assert "cannot be read" in first and shard.name in first and "refused" in first, text
    brief, _ = context_text.brief(view, web.agent, [], False, 4000)
    assert "cannot be read" in brief, brief


def test_open_requests_leave_the_file_once_done(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api, web, db = trio
    r = api.request("add an index on users.email")
    assert section(
        context_text.render(
            context_view.read_view(web.repo, clock.now_ms()), web.agent, web.repo.root, [], False
        ),
        "Open requests",
    )[0].endswith('"add an index on users.email"')
    db.take(r.id)
    db.done(r.id, "added")
    v = context_view.read_view(web.repo, clock.now_ms())
    assert v.open_requests == []


def test_the_exclude_line_is_added_once(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api = trio[0]
    exclude = api.repo.common_dir / "info" / "exclude"
    exclude.write_text("*.log")  # no final newline
    for _ in range(3):
        context.update_all(api.repo, clock.now_ms())
    assert exclude.read_text().splitlines() == ["*.log", "/.gitbus/"]


def test_an_exclude_file_that_is_not_utf8_still_gets_the_line_once(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock
) -> None:
    """git reads `info/exclude` as bytes; a Latin-1 comment there stopped every update (and the
    watcher) with a UnicodeDecodeError. Its bytes are kept as they were."""
    api = trio[0]
    exclude = api.repo.common_dir / "info" / "exclude"
    exclude.write_bytes(b"# caf\xe9\n*.log")
    assert [len(context.update_all(api.repo, clock.now_ms())) for _ in range(2)] == [3, 0]
    assert exclude.read_bytes() == b"# caf\xe9\n*.log\n/.gitbus/\n"
    assert git(api.repo.root, "status", "--porcelain") == ""


def test_a_removed_worktree_is_skipped(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    api, web, db = trio
    context.update_all(api.repo, clock.now_ms())
    # The context file is ignored, so `git worktree remove` needs no --force.
    git(api.repo.root, "worktree", "remove", str(db.repo.root))
    shutil.rmtree(web.repo.root)  # gone from disk, still listed (prunable) by git
    Bus.open(api.repo.root, "ops-1", clock).discover("still here")
    written = context.update_all(Repository.open(api.repo.root), clock.now_ms())
    assert written == [api.repo.root]
    assert not db.repo.root.exists() and not web.repo.root.exists()


def test_updating_never_rewrites_a_worktrees_index(trio: tuple[Bus, Bus, Bus], clock: FakeClock) -> None:
    """The watcher runs beside the agents' own git commands: taking `index.lock` in their worktree
    (as a refreshing `git diff` does) makes a concurrent `git add` or `git commit` there fail."""
    _, web, _ = trio
    wt = web.repo.root
    tracked = git(wt, "ls-files").split()
    for rel in tracked:  # same content, older mtime: every entry is stat-dirty but unchanged
        os.utime(wt / rel, (time.time() - 3600, time.time() - 3600))
    index = web.repo.git_dir / "index"
    before = index.stat()
    context.update_all(web.repo, clock.now_ms())
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the index was rewritten"

    assert context.changed_paths(web.repo, wt) == []  # stat-dirty is not changed


def test_changed_paths_are_the_worktrees_uncommitted_changes(trio: tuple[Bus, Bus, Bus]) -> None:
    wt = trio[1].repo.root
    first, second = git(wt, "ls-files").split()[:2]
    (wt / first).write_text("edited\n")
    (wt / second).write_text("staged\n")
    git(wt, "add", second)
    (wt / "new-file.txt").write_text("untracked\n")
    assert sorted(context.changed_paths(trio[1].repo, wt)) == sorted([first, second])


def test_a_watchers_changed_files_never_hold_up_an_update_once_looked_at(trio: tuple[Bus, Bus, Bus]) -> None:
    """Past their time to live they are used as they were and listed stale, for a refresh off the
    update's path; the refresh brings the edit in."""
    repo, wt = trio[1].repo, trio[1].repo.root
    changed = context.ChangedPaths(ttl=0.0, stale_ok=True)
    assert changed(repo, wt) == [] and changed.stale() == [wt]
    first = git(wt, "ls-files").split()[0]
    (wt / first).write_text("edited\n")
    assert changed(repo, wt) == []  # stale, not looked up again here
    changed.refresh(repo, changed.stale())
    assert changed(repo, wt) == [first]
    eager = context.ChangedPaths(ttl=0.0)  # without stale_ok: looked up again at once
    assert eager(repo, wt) == [first]
    (wt / first).write_text(git(wt, "show", f"HEAD:{first}"))
    assert eager(repo, wt) == []


def test_a_worktree_that_cannot_take_its_file_is_reported_and_the_others_are_written(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock
) -> None:
    api, web, db = trio
    (db.repo.root / ".gitbus").write_text("a file where the folder goes\n")
    problems: list[str] = []
    written = context.update_all(api.repo, clock.now_ms(), on_problem=problems.append)
    assert written == [api.repo.root, web.repo.root]
    assert problems == [
        f"the context file of {db.repo.root} was not updated: File exists: {db.repo.root / '.gitbus'}"
    ]
    assert context.update_all(api.repo, clock.now_ms()) == []  # without a listener: skipped quietly


def test_a_problem_names_the_worktree_inert(repo: Path, clock: FakeClock) -> None:
    """A problem line goes to a terminal or `watch.log`: a worktree's directory name, anyone's
    choice, must not bring escape sequences or a bidi override there."""
    wt = repo.parent / "wt \x1b[31m\u202eZ"
    git(repo, "worktree", "add", "-q", "-b", "odd", str(wt))
    for root, name in ((repo, "api-1"), (wt, "odd-1")):
        Bus.open(root, name, clock).join(name)
    (wt / ".gitbus").write_text("a file where the folder goes\n")
    problems: list[str] = []
    written = context.update_all(Repository.open(repo), clock.now_ms(), on_problem=problems.append)
    assert written == [repo]
    shown = f"{repo.parent}/wt \\x1b[31m\\u202eZ"
    assert problems == [f"the context file of {shown} was not updated: File exists: {shown}/.gitbus"]


def test_a_worktree_whose_git_file_is_not_text_is_reported_and_the_others_are_written(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock
) -> None:
    """A `.git` file that is not UTF-8 stopped every worktree's update (and a watcher's loop)."""
    api, web, db = trio
    (db.repo.root / ".git").write_bytes(b"gitdir: \xff\n")
    problems: list[str] = []
    written = context.update_all(Repository.open(api.repo.root), clock.now_ms(), on_problem=problems.append)
    assert written == [api.repo.root, web.repo.root]
    assert len(problems) == 1 and str(db.repo.root) in problems[0] and "not UTF-8" in problems[0], problems


def test_a_gitbus_link_committed_to_the_repository_is_never_followed(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock, tmp_path: Path
) -> None:
    """A `.gitbus` symlink that came with a commit would aim the watcher's writes anywhere its author
    chose: that worktree is reported, nothing is written through the link, the others are updated."""
    api, web, db = trio
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "context.md").write_text("precious\n")
    (db.repo.root / ".gitbus").symlink_to(victim)
    git(db.repo.root, "add", ".gitbus")
    git(db.repo.root, "commit", "-qm", "a link where the folder goes")
    problems: list[str] = []
    written = context.update_all(api.repo, clock.now_ms(), on_problem=problems.append)
    assert written == [api.repo.root, web.repo.root]
    assert (victim / "context.md").read_text() == "precious\n"
    assert [p.name for p in victim.iterdir()] == ["context.md"]  # no temporary file put there either
    assert problems == [
        f"the context file of {db.repo.root} was not updated: "
        f"Is a symbolic link, never followed: {db.repo.root / '.gitbus'}"
    ]


def test_a_context_file_that_is_a_link_is_neither_read_nor_replaced(tmp_path: Path) -> None:
    """Only a regular file is compared and replaced: a link there is someone else's doing."""
    victim = tmp_path / "victim.md"
    victim.write_text("precious\n")
    wt = tmp_path / "wt"
    (wt / ".gitbus").mkdir(parents=True)
    (wt / context.FILE).symlink_to(victim)
    for text in ("new text\n", "precious\n"):  # the same text as the link's target, too
        with pytest.raises(OSError, match="symbolic link"):
            context.write(wt, text)
    assert (wt / context.FILE).is_symlink() and victim.read_text() == "precious\n"
    assert [p.name for p in (wt / ".gitbus").iterdir()] == ["context.md"]


def test_the_file_is_replaced_whole_never_written_in_place(tmp_path: Path) -> None:
    """A reader holding the file sees the old text whole; no temporary file is left behind."""
    assert context.write(tmp_path, "old text\n")
    with (tmp_path / context.FILE).open() as reader:
        assert context.write(tmp_path, "new text\n")
        assert reader.read() == "old text\n"
    assert (tmp_path / context.FILE).read_text() == "new text\n"
    assert not context.write(tmp_path, "new text\n")  # the same text: left alone
    assert [p.name for p in (tmp_path / ".gitbus").iterdir()] == ["context.md"]


PATHISH = st.lists(
    st.sampled_from(["a", "a/", "a/b", "a/b/", "a/b/c.py", "A/B", "b", "b/c/", "c.py", "ab"]), max_size=3
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(PATHISH, max_size=12), PATHISH, st.booleans())
def test_the_messages_touching_my_paths_are_found_as_overlaps_finds_them(
    paths: list[list[str]], near: list[str], ignorecase: bool
) -> None:
    """The per-view index that ranks discoveries agrees with comparing every path with every path."""
    recent = [msg(Kind.DISCOVERY, "web-1", f"m{i}", paths=tuple(p)) for i, p in enumerate(paths)]
    v = view(recent)
    brute = {
        i for i, m in enumerate(recent) if any(overlaps(p, q, ignorecase) for p in m.paths for q in near)
    }
    assert v.touching(near, ignorecase) == brute
    assert v.touching(near, ignorecase) == brute  # and again, from the index made once


def test_the_lines_every_file_shows_alike_are_made_once_per_view() -> None:
    found = [msg(Kind.DISCOVERY, "web-1", f"finding {i}", paths=(f"lib{i}/m.py",)) for i in range(30)]
    v = view(found, [claim("web-1", "pkg1/"), claim("db-1", "pkg2/")])
    texts = [context_text.render(v, AgentName(a), ROOT, [], False) for a in ("api-1", "ops-1", "qa-1")]
    made = dict(v._made)
    assert all("finding 0" in t for t in texts)
    for a in ("api-1", "ops-1", "qa-1"):  # rendering again makes nothing new
        context_text.render(v, AgentName(a), ROOT, [], False)
    assert v._made == made
