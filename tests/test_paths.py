from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitbus import paths as P
from gitbus.errors import GitbusError
from gitbus.ids import agent_name, message_id_prefix
from gitbus.message import full_id


def norm(repo: Path, raw: str, cwd: Path | None = None) -> str:
    return P.normalize(raw, root=repo, cwd=cwd or repo)


def test_dot_slash_and_double_slashes_are_normalised(repo: Path) -> None:
    assert norm(repo, "./internal//api/") == "internal/api/"
    assert norm(repo, "internal/./api/../api/handler.go") == "internal/api/handler.go"


def test_an_existing_directory_is_a_directory_claim_without_a_slash(repo: Path) -> None:
    assert norm(repo, "internal/api") == "internal/api/"
    assert norm(repo, "not/yet/there") == "not/yet/there"
    assert norm(repo, "not/yet/there/") == "not/yet/there/"


def test_absolute_paths_inside_the_worktree_become_relative(repo: Path) -> None:
    assert norm(repo, str(repo / "config" / "db.yaml")) == "config/db.yaml"


def test_relative_paths_are_taken_from_the_working_directory(repo: Path) -> None:
    assert norm(repo, "handler.go", repo / "internal" / "api") == "internal/api/handler.go"
    assert norm(repo, "../apis/", repo / "internal" / "api") == "internal/apis/"


@pytest.mark.parametrize("raw", ["..", "../x", "a/../../x", "/etc/passwd", "/"])
def test_paths_outside_the_repository_are_refused(repo: Path, raw: str) -> None:
    with pytest.raises(GitbusError, match="outside the repository"):
        norm(repo, raw)


def test_a_symlink_out_of_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (repo / "etclink").symlink_to(tmp_path / "elsewhere")
    for raw in ("etclink/passwd", "etclink", str(repo / "etclink" / "x")):
        with pytest.raises(GitbusError, match="outside the repository through a symlink"):
            norm(repo, raw)


def test_a_symlink_inside_the_repository_claims_what_it_points_at(repo: Path) -> None:
    (repo / "alias").symlink_to("internal")
    assert norm(repo, "alias/api/handler.go") == "internal/api/handler.go"
    assert norm(repo, "alias/api/") == "internal/api/"
    assert P.overlaps(norm(repo, "alias/api/h.go"), "internal/api/")
    (repo / "gitlink").symlink_to(".git")
    with pytest.raises(GitbusError, match="git's own directory"):
        norm(repo, "gitlink/config")


@pytest.mark.parametrize("raw", ["", "  ", ".", "./", "a/.."])
def test_empty_paths_and_the_root_are_refused(repo: Path, raw: str) -> None:
    with pytest.raises(GitbusError):
        norm(repo, raw)


@pytest.mark.parametrize("raw", [".git/config", "a/.git/x", ".GIT/HEAD"])
def test_paths_into_git_metadata_are_refused(repo: Path, raw: str) -> None:
    with pytest.raises(GitbusError, match="git's own directory"):
        norm(repo, raw)


@pytest.mark.parametrize("raw", ["a\x00b", "a\nb", "tab\there", "x\x7f"])
def test_control_characters_are_refused(repo: Path, raw: str) -> None:
    with pytest.raises(GitbusError, match="control characters"):
        norm(repo, raw)


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        ("evil\u202etxt.exe", "bidirectional"),
        ("a\u2066b", "bidirectional"),
        ("one\u2028two", "line separator"),
        ("csi\x9b31m", "control characters"),
    ],
)
def test_bidi_line_separator_and_c1_characters_are_refused_in_one_line(
    repo: Path, raw: str, what: str
) -> None:
    with pytest.raises(GitbusError, match=what) as e:
        norm(repo, raw)
    assert "\n" not in str(e.value)


def test_a_path_deeper_than_any_source_tree_is_refused(repo: Path) -> None:
    with pytest.raises(GitbusError, match=f"more than {P.MAX_DEPTH} folders deep"):
        norm(repo, "a/" * P.MAX_DEPTH + "x")
    assert norm(repo, "a/" * (P.MAX_DEPTH - 1) + "x").count("/") == P.MAX_DEPTH - 1
    with pytest.raises(GitbusError, match="4096 bytes|folders deep"):
        P.canonical("a/" * 3000 + "x")


def test_spaces_unicode_and_lock_suffixes_are_ordinary_names(repo: Path) -> None:
    assert norm(repo, "docs/my file.md") == "docs/my file.md"
    assert norm(repo, "données/été/") == "données/été/"
    assert norm(repo, "pkg/x.lock") == "pkg/x.lock"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("internal/api/", "internal/api/handler.go", True),
        ("internal/api/", "internal/", True),
        ("internal/api/", "internal/api/", True),
        ("internal/api/", "internal/apis/", False),
        ("internal/api", "internal/api/", True),
        ("a/b.go", "a/b.go.orig", False),
        ("a/", "b/", False),
    ],
)
def test_overlap_is_hierarchical_by_whole_components(a: str, b: str, expected: bool) -> None:
    assert P.overlaps(a, b) is expected
    assert P.overlaps(b, a) is expected


def test_overlap_honours_ignorecase() -> None:
    assert not P.overlaps("Internal/API/", "internal/api/x.go")
    assert P.overlaps("Internal/API/", "internal/api/x.go", ignorecase=True)


segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=8,
).filter(lambda s: s.strip() and s not in (".", "..") and s.casefold() != ".git")
rel_paths = st.lists(segment, min_size=1, max_size=5).map("/".join)


@settings(max_examples=200, deadline=None)
@given(a=rel_paths, b=rel_paths, a_dir=st.booleans(), b_dir=st.booleans())
def test_overlap_is_symmetric_and_containment_implies_it(a: str, b: str, a_dir: bool, b_dir: bool) -> None:
    pa, pb = a + ("/" if a_dir else ""), b + ("/" if b_dir else "")
    assert P.overlaps(pa, pb) == P.overlaps(pb, pa)
    if P.covers(pa, pb):
        assert P.overlaps(pa, pb)
    assert P.overlaps(pa, pa)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=rel_paths, noise=st.sampled_from(["", "./", ".//", "x/../"]), slash=st.booleans())
def test_normalising_is_idempotent_and_stays_inside(
    tmp_path: Path, raw: str, noise: str, slash: bool
) -> None:
    root = tmp_path
    once = P.normalize(noise + raw + ("/" if slash else ""), root=root, cwd=root, literal=True)
    assert P.normalize(once, root=root, cwd=root, literal=True) == once
    assert not once.startswith(("/", "../")) and "//" not in once
    assert P.canonical(once) == once


@pytest.mark.parametrize(
    ("raw", "instead"),
    [
        ("internal/**", "name internal/ for everything under it"),
        ("src/*.py", "name src/ for everything under it"),
        ("internal/api/handler?.go", "name internal/api/ for everything under it"),
        ("web/[ab]/x.ts", "name web/ for everything under it"),
        ("*.go", "name the files one by one, or the folder that holds them"),
    ],
)
def test_a_glob_is_refused_naming_the_folder_to_claim_instead(repo: Path, raw: str, instead: str) -> None:
    with pytest.raises(GitbusError) as e:
        norm(repo, raw)
    assert str(e.value).startswith(f"'{raw}' is a pattern, and gitbus takes paths and folders, not patterns")
    assert instead in str(e.value) and "\n" not in str(e.value)


def test_a_file_whose_name_really_has_glob_characters_is_taken_as_itself(repo: Path) -> None:
    (repo / "docs").mkdir(exist_ok=True)
    (repo / "docs" / "what*if[1]?.md").write_text("a real file\n")
    assert norm(repo, "docs/what*if[1]?.md") == "docs/what*if[1]?.md"


def test_a_tool_call_names_a_file_as_is_glob_characters_and_all(repo: Path) -> None:
    assert P.normalize("new/a*b.txt", root=repo, cwd=repo, literal=True) == "new/a*b.txt"


@pytest.mark.parametrize("text", ["alice\n", "a\n", "api-1\n"])
def test_an_agent_name_with_a_trailing_newline_is_refused(text: str) -> None:
    """`$` in a pattern matches before a final newline: a name read from a file or a peer's trailer
    must not carry one into a ref name, a cursor file or a message."""
    with pytest.raises(GitbusError, match="not a valid agent name"):
        agent_name(text)


def test_a_whole_message_id_with_a_trailing_newline_is_refused() -> None:
    """A whole id comes from a peer's trailer or a ledger entry, never typed: no trailing newline
    (a typed prefix is stripped of blank space on purpose, `message_id_prefix`)."""
    with pytest.raises(GitbusError, match="not a 16-hex-digit message id"):
        full_id("0123456789abcdef\n")
    assert message_id_prefix(" abcd\n") == "abcd"


def test_a_bus_resolving_its_folders_once_normalises_every_path_as_normalize_does(
    repo: Path, tmp_path: Path
) -> None:
    """Links below the root: chained, dangling, leading out; and a root reached through a link."""
    (tmp_path / "elsewhere").mkdir()
    (repo / "alias").symlink_to("internal")
    (repo / "chain").symlink_to("alias/api")
    (repo / "dangling").symlink_to("nowhere/at/all")
    (repo / "out").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "via").symlink_to(repo)
    raws = [
        "alias/api/h.go",
        "chain/",
        "chain/x/y",
        "dangling",
        "dangling/z",
        "out/x",
        "README.md/x",
        "new/a/b/",
    ]
    raws += [
        str(tmp_path / "via" / "alias" / "x"),
        str(repo / "chain" / "x"),
        "internal/api",
        "../main/alias/",
    ]
    for root, cwd in (
        (repo, repo),
        (tmp_path / "via", tmp_path / "via" / "internal"),
        (repo, repo / "alias"),
    ):
        real_root, real_cwd = P.real_dirs(root, cwd)
        for raw in raws:
            try:
                expected: str | None = P.normalize(raw, root=root, cwd=cwd)
            except GitbusError as e:
                expected = str(e)
            try:
                got: str | None = P.normalize(raw, root=real_root, cwd=real_cwd, resolved=True)
            except GitbusError as e:
                got = str(e)
            assert got == expected, (root, cwd, raw)


# A generated tree below a real root: folders, files, links inside (relative, absolute, to a parent,
# chained), links leading out, dangling links; then a path of names and `..` through it.
_NAMES = ["a", "b", "c"]
_NODE = st.tuples(
    st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3),
    st.sampled_from(["folder", "file", "link in", "link abs", "link up", "link out", "dangling"]),
    st.lists(st.sampled_from([*_NAMES, ".."]), min_size=0, max_size=3),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.lists(_NODE, min_size=1, max_size=8), data=st.data())
def test_real_below_is_realpath_for_any_path_below_the_root(
    nodes: list[tuple[list[str], str, list[str]]], data: st.DataObject
) -> None:
    # Through a node the tree has, mostly, and on into what lies behind it.
    start = data.draw(st.sampled_from([[], *(parts for parts, _, _ in nodes)]))
    query = start + data.draw(st.lists(st.sampled_from([*_NAMES, "..", "x"]), max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.realpath(tmp)
        root, outside = f"{base}/root", f"{base}/outside"
        os.makedirs(f"{outside}/a")
        os.mkdir(root)
        for parts, kind, target in nodes:
            at = os.path.join(root, *parts)
            try:
                os.makedirs(os.path.dirname(at), exist_ok=True)  # through a link, when one is on the way
            except OSError:
                continue  # a file, or a dangling link, is on the way
            if os.path.lexists(at):
                continue
            rel = os.path.join(*target) if target else "."
            if kind == "folder":
                os.mkdir(at)
            elif kind == "file":
                Path(at).write_text("x")
            else:
                os.symlink(
                    {
                        "link in": rel,
                        "link abs": os.path.join(root, rel),
                        "link up": os.path.join("..", rel),
                        "link out": os.path.join(outside, rel),
                        "dangling": os.path.join("nowhere", rel),
                    }[kind],
                    at,
                )
        full = os.path.normpath(os.path.join(root, *query))
        if full != root and not full.startswith(root + os.sep):
            return  # `normalize` refuses such a path before it resolves anything
        assert P._real_below(root, full) == os.path.realpath(full), (nodes, query)


def test_a_path_under_a_folder_whose_name_is_not_utf8_is_refused_in_one_line(repo: Path) -> None:
    """Run from a folder named with bytes that are not UTF-8 (`d\\xff`): the repository-relative
    path holds them, and no ledger entry or message can carry it."""
    odd = repo / os.fsdecode(b"d\xff")
    odd.mkdir()
    with pytest.raises(GitbusError, match="not valid UTF-8"):
        P.normalize("foo", root=repo, cwd=odd)
