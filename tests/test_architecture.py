"""The architecture holds: imports go down the floors, never in a circle, and the faces alone speak UI.

The table of floors below is the one docs/architecture.md draws (a test checks they agree). Imports
are read from the source (AST): module-level and inside functions alike, except under
`if TYPE_CHECKING:`, which never runs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gitbus"
DOC = ROOT / "docs" / "architecture.md"

# floor: (what lives there, its modules as the doc names them: `tui/` is the package, `__init__` is
# gitbus's own). A module imports from its own floor and below, never from above.
FLOORS: dict[int, tuple[str, tuple[str, ...]]] = {
    10: ("the executable", ("entry", "__main__")),
    9: (
        "faces",
        (
            *("cli/", "quick", "quick_args", "quick_parse", "render", "statusview", "syncview", "tui/"),
            *("mcp_server", "mcp_wire"),
            *("hooks", "hook_session", "hook_start", "hook_guard", "hook_stop", "waiter", "agentcli/"),
            *("githooks", "demo"),
        ),
    ),
    8: (
        "behaviours built on the bus",
        (
            *("story", "context", "context_view", "context_text", "guard", "watch", "watch_daemon"),
            *("install", "install_files", "install_agents"),
        ),
    ),
    7: ("the library's front door", ("bus", "reading", "status", "__init__")),
    6: (
        "services over the bus",
        (
            "delivery",
            "inbox",
            "inbox_walk",
            "inbox_marks",
            "inbox_pages",
            "board",
            "searchindex",
            "claimsindex",
            "remote",
            "remote_fetch",
            "remote_push",
            "fetching",
            "sync",
            "ledger_sync",
            "vouch",
            "vouch_move",
            "housekeeping",
            "roster",
            "joins",
            "request_lookup",
        ),
    ),
    5: (
        "the bus's data and decisions",
        (
            "chains",
            "ledger",
            "ledger_shards",
            "ledger_state",
            "ledger_cas",
            "claims",
            "delegation",
            "steps",
            "step_rules",
            "notes",
        ),
    ),
    4: ("encodings and small stores", ("message", "cursors", "settings", "agents", "install_record")),
    3: ("the one door to git", ("git", "gitobjects", "gittrees", "gitcli")),
    2: ("files and processes, no libgit2", ("gitfiles", "loose", "state", "races", "lifeline")),
    1: (
        "values and rules, stdlib only",
        ("errors", "ids", "paths", "clock", "inert", "fastpath", "reffiles", "namerules"),
    ),
}
FACES = 9  # from this floor up a module may speak UI (typer, rich, textual, mcp)
UI_PACKAGES = ("typer", "rich", "textual", "mcp")

# Modules the table places that do not exist yet, with where they come from; drop an entry once the
# module is merged.
COMING: dict[str, str] = {}

# Imports that cross a floor upward today, with why; remove an entry when the import is fixed (the
# test fails on an entry that no longer occurs, so the list cannot go stale).
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def _module_name(f: Path) -> str:
    parts = list(f.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(f): f for f in sorted(PACKAGE.rglob("*.py"))}


def place(module: str) -> str:
    """A module's name in the table: `gitbus.tui.app` is `tui/` (a package is one entry), `gitbus`
    itself is `__init__`."""
    parts = module.split(".")
    if parts == ["gitbus"]:
        return "__init__"
    if (PACKAGE / parts[1]).is_dir():
        return f"{parts[1]}/"
    return parts[1]


FLOOR_OF = {name: floor for floor, (_what, names) in FLOORS.items() for name in names}


def _resolve(module: str, name: str | None) -> str | None:
    """The gitbus module `from module import name` (or `import module`) loads, or None if outside."""
    if module != "gitbus" and not module.startswith("gitbus."):
        return None
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    while module not in MODULES:  # `import gitbus.x.y` of a name inside a module
        module = module.rpartition(".")[0]
    return module


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> Iterator[tuple[str, int, bool]]:
    """Every module `module` imports: (imported, line, at module level), TYPE_CHECKING blocks excluded;
    third-party modules by their full dotted name, gitbus modules resolved to the file that loads."""
    f = MODULES[module]
    package = module if f.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                yield from (x for c in child.orelse for x in walk_one(c, top))
                continue
            yield from walk_one(child, top)

    def walk_one(child: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield (_resolve(alias.name, None) or alias.name, child.lineno, top)
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in child.names:
                yield (_resolve(base, alias.name) or base, child.lineno, top)
        else:
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    yield from walk(ast.parse(f.read_text()), True)


def gitbus_imports(module: str, top_only: bool = False) -> Iterator[tuple[str, int]]:
    for imported, line, top in imports(module):
        if imported in MODULES and imported != module and (top or not top_only):
            yield imported, line


# -- the table and the doc --------------------------------------------------------------------------


def test_every_module_is_on_exactly_one_floor() -> None:
    names = [n for _what, ns in FLOORS.values() for n in ns]
    assert len(names) == len(set(names)), "a module is on two floors"
    unplaced = sorted({place(m) for m in MODULES} - set(names))
    assert unplaced == [], f"put these modules on a floor (FLOORS here, and docs/architecture.md): {unplaced}"
    missing = sorted(set(names) - {place(m) for m in MODULES} - set(COMING))
    assert missing == [], f"the table names modules that do not exist: {missing}"
    arrived = sorted(set(COMING) & {place(m) for m in MODULES})
    assert arrived == [], f"these have arrived; drop them from COMING: {arrived}"


def doc_floors() -> dict[int, tuple[str, tuple[str, ...]]]:
    """The floors as docs/architecture.md draws them: rows `│ 9 │ cli  render … │ faces │`, and a row
    with no floor number goes on with the names of the floor above it."""
    text = DOC.read_text()
    picture = text.split("<!-- floors -->", 2)[1]
    out: dict[int, tuple[str, tuple[str, ...]]] = {}
    floor = None
    for line in picture.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 5 and cells[1].isdigit():
            floor = int(cells[1])
            out[floor] = (cells[3], tuple(cells[2].split()))
        elif len(cells) == 5 and not cells[1] and floor is not None:
            what, names = out[floor]
            out[floor] = (what, names + tuple(cells[2].split()))
    return out


def test_the_architecture_doc_draws_the_same_floors() -> None:
    assert doc_floors() == FLOORS


# -- the rules ----------------------------------------------------------------------------------------


def upward_imports() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for module in MODULES:
        here = FLOOR_OF[place(module)]
        for imported, line in gitbus_imports(module):
            if FLOOR_OF[place(imported)] > here:
                where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {imported}"
                found.setdefault((place(module), place(imported)), []).append(where)
    return found


def test_no_import_crosses_a_floor_upward() -> None:
    found = upward_imports()
    new = {k: v for k, v in found.items() if k not in KNOWN_UPWARD}
    assert new == {}, "an import goes up a floor (move the helper down, or the module up): " + repr(new)
    fixed = sorted(set(KNOWN_UPWARD) - set(found))
    assert fixed == [], f"these upward imports are gone; drop them from KNOWN_UPWARD: {fixed}"


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The circles of `graph` (module: the modules it imports), by Tarjan's strongly connected
    components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1 or v in graph[v]:
                out.append(sorted(part))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_among_module_level_imports() -> None:
    graph = {m: sorted({i for i, _line in gitbus_imports(m, top_only=True)}) for m in MODULES}
    assert cycles(graph) == []


def bench_graph() -> dict[str, list[str]]:
    """What each bench script imports of the others, at any level (they import each other by name,
    with bench/ first on `sys.path`)."""
    scripts = {f.stem: f for f in (ROOT / "bench").glob("*.py")}
    graph: dict[str, list[str]] = {}
    for name, f in scripts.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
        graph[name] = sorted(found & set(scripts) - {name})
    return graph


def test_the_bench_has_no_import_circle() -> None:
    """The driver (run.py) imports every benchmark; a benchmark that needs a helper imports it from a
    module of helpers, never from the driver."""
    assert cycles(bench_graph()) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_opens_with_what_it_owns(module: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text())) or ""
    first = doc.split("\n\n")[0]
    assert len(first) >= 20 and first.rstrip().endswith((".", "?", ")")), (
        f"{module}: open with a sentence saying what the module owns"
    )
    assert not re.search(r"field\s+notes", doc, re.IGNORECASE), f"{module} cites a document not here"


MODULE_LINES_MAX = 400  # split a module by concept before it passes about this many lines


def test_no_module_outgrows_one_concept() -> None:
    long = {m: n for m, f in MODULES.items() if (n := len(f.read_text().splitlines())) > MODULE_LINES_MAX}
    assert long == {}, f"split these by concept (docs/architecture.md names each module's): {long}"


def test_only_faces_speak_ui() -> None:
    found = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {imported}"
        for m in MODULES
        if FLOOR_OF[place(m)] < FACES
        for imported, line, _top in imports(m)
        if imported.split(".")[0] in UI_PACKAGES
    ]
    assert found == [], "a core module imports a UI library (faces only)"


DOOR_TO_GIT = ("gitbus.git", "gitbus.gitobjects", "gitbus.gittrees")  # the modules that may import pygit2


def test_only_the_door_to_git_imports_pygit2() -> None:
    assert {FLOOR_OF[place(m)] for m in DOOR_TO_GIT} == {3}, "the door to git is floor 3"
    found = [
        f"{MODULES[m].relative_to(ROOT)}:{line}"
        for m in MODULES
        if m not in DOOR_TO_GIT
        for imported, line, _top in imports(m)
        if imported.split(".")[0] == "pygit2"
    ]
    assert found == []


# -- the checks check -------------------------------------------------------------------------------


def test_the_import_reader_sees_function_level_imports_and_skips_type_checking() -> None:
    # the hook handler's modules hold all three kinds: hook_session imports cursors at module level,
    # hooks imports the waiter in a function, hook_start the bus in one and under TYPE_CHECKING
    seen = {
        (i, top)
        for m in ("gitbus.hooks", "gitbus.hook_session", "gitbus.hook_start")
        for i, _line, top in imports(m)
    }
    assert ("gitbus.cursors", True) in seen  # module level
    assert ("gitbus.waiter", False) in seen  # inside a function
    assert ("gitbus.bus", False) in seen  # inside a function; also under TYPE_CHECKING, skipped there
    assert all(not (i == "gitbus.bus" and top) for i, top in seen)
    assert ("gitbus.tui.app", True) in {(i, top) for i, _line, top in imports("gitbus.tui")}


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e"]}
    assert cycles(graph) == [["a", "b", "c"], ["e"]]
