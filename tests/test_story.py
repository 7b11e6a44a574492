"""A commit's note and a path's story (`gitbus.story`): what the post-commit hook writes, and
`gitbus history`, over real commits with the real hooks (helpers from test_notes.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gitbus import notes
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.story import story

from .conftest import git, raw_git
from .test_notes import at_second, clones, commit, gb, gb_json, git_traced, huge_note, join_team, note, sync

__all__ = ["clones"]  # a fixture of test_notes.py, used here too


@pytest.fixture
def team(worktrees: list[Path]) -> list[Bus]:
    return join_team(worktrees)


# -- the note on a commit ------------------------------------------------------------------------


def test_a_commit_gets_a_note_with_its_agent_covering_claims_posts_and_answers(team: list[Bus]) -> None:
    api, web = team[0], team[1]
    wt = api.repo.root
    api.claim(["internal/api/"], reason="splitting handlers")
    api.claim(["config/"], reason="db settings")  # held, but the commit does not touch config/
    found = api.discover("handler.go retries thrice before giving up", ["internal/api/handler.go"])
    question = web.ask("who runs the migrations?", to="api-1")
    theirs = web.discover("the CSS build is slow")
    answer = api.answer(question.id, "I do, from cmd/migrate\nthis second line stays out of the note")
    sha = commit(wt, "internal/api/handler.go")

    assert git(wt, "notes", "--ref=gitbus", "list", sha).strip(), "no note under refs/notes/gitbus"
    lines = note(wt, sha).splitlines()
    assert lines[0] == "gitbus: committed by agent api-1"
    claims = [line for line in lines if line.startswith("claim: ")]
    assert len(claims) == 1, lines
    assert claims[0].startswith("claim: api-1 holds internal/api/ until ")
    assert claims[0].endswith('(reason: "splitting handlers")')
    posted = f"posted: {found.id[:8]} discovery: handler.go retries thrice before giving up"
    answered = f"answered: {answer.id[:8]} answer: I do, from cmd/migrate"
    assert posted in lines and answered in lines
    assert lines.index(posted) < lines.index(answered)  # oldest first
    text = "\n".join(lines)
    assert "this second line" not in text  # one line each
    assert question.id[:8] not in text and theirs.id[:8] not in text and "CSS" not in text  # not web-1's

    shown = git(wt, "log", "-1", "--notes=gitbus")
    assert "\nNotes (gitbus):\n    gitbus: committed by agent api-1\n" in shown
    assert f"\n    {posted}\n" in shown and f"\n    {answered}\n" in shown


def test_a_note_lists_only_what_the_agent_posted_since_its_previous_commit(team: list[Bus]) -> None:
    api = team[0]
    wt = api.repo.root
    first = api.discover("first finding, before the first commit")
    # git stamps whole seconds: this commit is made in the same second as the post, after it.
    c1 = commit(wt, "README.md", **at_second(first.time))
    assert f"posted: {first.id[:8]} discovery: first finding" in note(wt, c1)
    second = api.discover("second finding, after the first commit")
    c2 = commit(wt, "README.md")
    text = note(wt, c2)
    assert f"posted: {second.id[:8]} discovery: second finding" in text
    assert first.id[:8] not in text, f"a post from before the previous commit is listed again:\n{text}"


def test_a_note_reaches_back_past_other_agents_commits_to_the_agents_own_previous_one(
    team: list[Bus],
) -> None:
    api, web = team[0], team[1]
    here, there = api.repo.root, web.repo.root
    c1 = commit(here, "README.md")
    found = api.discover("found after my first commit")
    branch = git(there, "branch", "--show-current").strip()
    git(there, "merge", "-q", "--ff-only", "main")
    c2 = commit(there, "web/app.ts", **at_second(found.time + 1500))  # web-1's, a second later, on mine
    assert note(there, c2).startswith("gitbus: committed by agent web-1")
    git(here, "merge", "-q", "--ff-only", branch)
    c3 = commit(here, "README.md")
    text = note(here, c3)
    assert f"posted: {found.id[:8]} discovery: found after my first commit" in text, text
    assert found.id[:8] not in note(here, c1) + note(here, c2)


def test_a_post_made_after_the_previous_commit_in_the_same_second_is_still_listed(
    team: list[Bus],
) -> None:
    wt = team[0].repo.root
    clock = FakeClock(start_ms=(time.time_ns() // 1_000_000_000 + 120) * 1000)  # a whole second, ahead
    api = Bus.open(wt, "api-1", clock)
    c1 = commit(wt, "README.md", **at_second(clock.now_ms()))
    clock.advance(10)  # still c1's second on git's clock, but after c1's note was written
    late = api.discover("found just after the first commit")
    assert late.id[:8] not in note(wt, c1)
    c2 = commit(wt, "README.md")
    assert f"posted: {late.id[:8]} discovery: found just after the first commit" in note(wt, c2)


# -- the story of a path -------------------------------------------------------------------------


def test_history_of_a_path_interleaves_its_messages_and_commits_in_time(team: list[Bus]) -> None:
    wt, web_wt = team[0].repo.root, team[1].repo.root
    clock = FakeClock(start_ms=(time.time_ns() // 1_000_000_000 + 120) * 1000)  # whole seconds, ahead
    api, web = Bus.open(wt, "api-1", clock), Bus.open(web_wt, "web-1", clock)

    def tick() -> None:
        clock.advance(1000)

    tick()
    claim = api.claim(["internal/api/"], reason="splitting handlers")
    tick()
    question = web.ask("who calls handler.go?", to="api-1", paths=["internal/api/handler.go"])
    tick()
    answer = api.answer(question.id, "only the router")
    tick()
    found = api.discover("handler.go retries thrice", ["internal/api/handler.go"])
    tick()
    c1 = commit(wt, "internal/api/handler.go", "split the handler", **at_second(clock.now_ms()))
    tick()
    released = api.release(["internal/api/"], reason="done splitting")
    assert released is not None
    tick()
    unrelated = [web.discover("db.yaml is read twice", ["config/db.yaml"]).id, web.ask("lunch?").id]
    tick()
    commit(wt, "README.md", "touch the readme", **at_second(clock.now_ms()))
    initial = git(wt, "rev-list", "--max-parents=0", "HEAD").strip()

    story = gb_json(wt, "history", "internal/api/handler.go")
    kinds = [e["message"]["type"] if "message" in e else "commit" for e in story]
    assert kinds == ["commit", "claim", "question", "answer", "discovery", "commit", "release"]
    ids = [e["message"]["id"] if "message" in e else e["commit"] for e in story]
    assert ids == [initial, claim.id, question.id, answer.id, found.id, c1, released.id]
    assert [e["time"] for e in story] == sorted(e["time"] for e in story)
    assert not set(unrelated) & set(ids)
    c1_entry = story[5]
    assert c1_entry["subject"] == "split the handler" and c1_entry["author"] == "Test"
    assert c1_entry["note"].startswith("gitbus: committed by agent api-1\n")
    assert "claim: api-1 holds internal/api/" in c1_entry["note"]
    assert f"posted: {found.id[:8]} discovery: handler.go retries thrice" in c1_entry["note"]
    assert f"answered: {answer.id[:8]} answer: only the router" in c1_entry["note"]
    assert story[2]["message"]["from"] == "web-1" and story[3]["message"]["reply_to"] == question.id

    same_dir = gb_json(web_wt, "history", "internal/api/")  # the directory, from another worktree
    assert [e["message"]["id"] for e in same_dir if "message" in e] == ids[1:5] + ids[6:]

    code, out, _ = gb(wt, "history", "internal/api/handler.go")
    assert code == 0
    marks = [claim.id[:8], question.id[:8], answer.id[:8], found.id[:8], c1[:10], released.id[:8]]
    where = [out.index(m) for m in marks]
    assert where == sorted(where), out
    assert f"commit    {c1[:10]} Test: split the handler\n" in out
    assert "\n                 gitbus: committed by agent api-1\n" in out

    code, out, _ = gb(wt, "history", "docs/nothing-here.md")
    assert (code, out.strip()) == (0, "nothing on the bus or in the history touches this path")


def test_history_places_a_commit_after_the_posts_its_note_lists_from_the_same_second(
    team: list[Bus],
) -> None:
    wt = team[0].repo.root
    clock = FakeClock(start_ms=(time.time_ns() // 1_000_000_000 + 120) * 1000 + 500)  # mid-second, ahead
    api = Bus.open(wt, "api-1", clock)
    before = api.discover("handler.go retries thrice", ["internal/api/handler.go"])
    c1 = commit(wt, "internal/api/handler.go", **at_second(clock.now_ms()))  # git says: .000 of it
    clock.advance(200)
    after = api.discover("handler.go now retries once", ["internal/api/handler.go"])
    story = gb_json(wt, "history", "internal/api/handler.go")
    ids = [e["message"]["id"] if "message" in e else e["commit"] for e in story]
    assert ids[-3:] == [before.id, c1, after.id]
    assert [e["time"] for e in story] == sorted(e["time"] for e in story)


def test_a_note_with_a_bidi_override_is_left_out_of_a_paths_history_and_counted(team: list[Bus]) -> None:
    wt = team[0].repo.root
    (wt / "README.md").write_text("changed\n")
    git(wt, "commit", "-q", "-am", "touch readme")
    git(wt, "notes", "--ref=gitbus", "add", "-f", "-m", "evil \u202e txt.exe", "HEAD")
    [touched] = [e for e in story(team[0], "README.md") if e.subject == "touch readme"]
    assert touched.note == ""
    assert any(k.startswith("note ") for k in team[0].repo.skipped)


# -- a peer's note or commit message can forge nothing ---------------------------------------------

FORGED = "d" * 40


def forging(text: str) -> str:
    """A note or commit message crafted to start a record of its own in `git log`'s output, were
    it split on the separators gitbus asked git for."""
    record = f"{FORGED}\x1f1000000000\x1fmallory\x1fForged: alice approved the release\x1fsigned"
    return f"{text}\x1e\n{record}\x1e"


def test_a_peers_note_cannot_forge_a_commit_in_the_history_it_travels_to(
    clones: tuple[Path, Path, Path],
) -> None:
    _, a, b = clones
    initial = git(b, "rev-list", "--max-parents=0", "HEAD").strip()
    (b / "n").write_text(forging("ok"))
    git(b, "notes", "--ref=gitbus", "add", "-f", "-F", "n", initial)
    sync(b, a)
    assert "mallory" in note(a, initial)  # the note travelled

    story = gb_json(a, "history", "README.md")
    commits = [e for e in story if "commit" in e]
    assert [e["commit"] for e in commits] == [initial], story
    assert commits[0]["author"] == "Test" and commits[0]["subject"] == "initial"
    assert "mallory" not in commits[0]["note"]
    code, out, err = gb(a, "history", "README.md")
    assert code == 0 and "mallory" not in out and FORGED[:10] not in out, out
    assert "1 note left out" in err, err


def test_a_peers_note_cannot_forge_the_agents_previous_commit_for_its_next_note(team: list[Bus]) -> None:
    api = team[0]
    wt = api.repo.root
    initial = git(wt, "rev-list", "--max-parents=0", "HEAD").strip()
    forged = f"ok\x1e{initial} 4000000000\ngitbus: committed by agent api-1\n"  # a record far ahead
    git(wt, "notes", "--ref=gitbus", "add", "-f", "-m", forged, initial)
    found = api.discover("handler.go retries thrice")
    c1 = commit(wt, "README.md")
    assert f"posted: {found.id[:8]} discovery: handler.go retries thrice" in note(wt, c1)


def test_a_commit_message_cannot_forge_a_commit_in_the_history(team: list[Bus]) -> None:
    wt = team[0].repo.root
    (wt / "README.md").write_text("changed\n")
    git(wt, "add", "README.md")
    msg = forging("touch readme")
    raw_git(wt, "commit", "-q", "--no-verify", "--cleanup=verbatim", "-F", "-", input=msg.encode())
    sha = git(wt, "rev-parse", "HEAD").strip()
    story = gb_json(wt, "history", "README.md")
    commits = [e for e in story if "commit" in e]
    assert [e["commit"] for e in commits][-1] == sha and FORGED not in [e["commit"] for e in commits]
    assert not [e for e in commits if e["author"] == "mallory"], commits
    assert commits[-1]["subject"].startswith("touch readme\x1e")  # its own subject, whole and exact
    code, out, _ = gb(wt, "history", "README.md")
    assert code == 0 and "\x1e" not in out and "touch readme\\x1e" in out  # shown inert


def test_history_shows_the_commits_without_notes_when_the_notes_ref_is_damaged(team: list[Bus]) -> None:
    wt = team[0].repo.root
    c1 = commit(wt, "README.md", "touch the readme")
    blob = raw_git(wt, "hash-object", "-w", "--stdin", input=b"x\n")
    git(wt, "update-ref", "refs/notes/gitbus", blob)
    initial = git(wt, "rev-list", "--max-parents=0", "HEAD").strip()
    code, out, err = gb(wt, "history", "README.md")
    assert code == 0
    assert f"commit    {c1[:10]} Test: touch the readme" in out and initial[:10] in out, out
    lines = [line for line in err.splitlines() if "refs/notes/gitbus" in line]
    assert len(lines) == 1 and "without notes" in lines[0], err
    story = gb_json(wt, "history", "README.md")
    assert [e["commit"] for e in story if "commit" in e] == [initial, c1]


@pytest.mark.parametrize("mode", ["120000", "160000"])
def test_a_notes_tree_entry_that_is_no_file_is_no_note(team: list[Bus], mode: str) -> None:
    """git reads only a regular file at a commit's name as its note: a symbolic link (or a gitlink)
    planted there is no note to `git log --notes` and none to history either."""
    wt = team[0].repo.root
    c1 = commit(wt, "README.md", "touch the readme")
    blob = raw_git(wt, "hash-object", "-w", "--stdin", input=b"gitbus: committed by agent mallory\n")
    entry = f"{mode} {'blob' if mode == '120000' else 'commit'} {blob if mode == '120000' else c1}\t{c1}\n"
    tree = raw_git(wt, "mktree", input=entry.encode())
    git(wt, "update-ref", "refs/notes/gitbus", raw_git(wt, "commit-tree", tree, input=b"planted\n"))
    assert git(wt, "log", "-1", "--notes=gitbus", "--format=[%N]", c1).strip() == "[]"
    [shown] = [e for e in gb_json(wt, "history", "README.md") if e.get("commit") == c1]
    assert not shown.get("note"), shown
    assert "mallory" not in gb(wt, "history", "README.md")[1]


def test_writing_a_note_on_a_damaged_notes_ref_names_the_ref(team: list[Bus]) -> None:
    wt = team[0].repo.root
    blob = raw_git(wt, "hash-object", "-w", "--stdin", input=b"x\n")
    git(wt, "update-ref", "refs/notes/gitbus", blob)
    code, _, err = gb(wt, "note", "HEAD")
    assert code == 1 and "refs/notes/gitbus cannot be read" in err and "Traceback" not in err, err
    assert git(wt, "rev-parse", "refs/notes/gitbus").strip() == blob  # nothing written over it


def test_a_huge_note_is_cut_for_history_and_says_so(team: list[Bus]) -> None:
    wt = team[0].repo.root
    c1 = commit(wt, "README.md", "touch the readme")
    (wt / "n").write_text("gitbus: committed by agent api-1\n" + "spam line\n" * 100_000)  # 1 MB
    git(wt, "notes", "--ref=gitbus", "add", "-f", "-F", "n", c1)
    assert notes.MERGED_BYTES >= 33 + 10 * 100_000  # over what is shown, not over what is read at all
    [entry] = [e for e in gb_json(wt, "history", "README.md") if e.get("commit") == c1]
    assert entry["note"].startswith("gitbus: committed by agent api-1\nspam line\n")
    assert len(entry["note"].encode()) <= 64 * 1024 and entry["note_bytes"] == 33 + 10 * 100_000
    assert entry["note_cut"] is True
    code, out, _ = gb(wt, "history", "README.md")
    assert code == 0 and out.count("spam line") <= 64 * 1024 // 10
    assert "note cut" in out, out[-500:]


def test_a_packed_note_too_large_to_show_is_never_read_and_history_gives_its_size_in_one_line(
    team: list[Bus], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git inflates a packed blob whole to stream even its start, so a note over the bound is judged
    by its object header alone: no git child reads it, whatever the history shows."""
    wt = team[0].repo.root
    monkeypatch.setattr(notes, "MERGED_BYTES", 256 * 1024)
    c1 = commit(wt, "README.md", "touch the readme")
    size = 4_000_000  # a whole number of huge_note's 100-byte lines
    huge_note(wt, c1, size)
    git(wt, "repack", "-adfq")  # every object packed, the note too
    common = Path(git(wt, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    assert not list((common / "objects").glob("[0-9a-f][0-9a-f]/*")), "loose objects left"
    log = git_traced(tmp_path, monkeypatch)

    code, out, err = gb(wt, "history", "README.md")
    [entry] = [e for e in gb_json(wt, "history", "README.md") if e.get("commit") == c1]

    read = [c for c in (log.read_text() if log.exists() else "").splitlines() if "cat-file" in c]
    assert not read, read
    line = f"(note of {size:,} bytes, too large to show: git notes --ref=gitbus show {c1[:12]} reads it)"
    assert code == 0 and "Traceback" not in err, err
    shown = out[out.index(c1[:10]) :].splitlines()[1:]
    assert [s.strip() for s in shown[:1]] == [line] and "xxxx" not in out, out[-500:]
    assert (entry["note"], entry["note_bytes"]) == (line, size), entry
    assert len(note(wt, c1)) == size  # git notes show still reads it whole
