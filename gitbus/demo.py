"""`gitbus demo`: three scripted agents in three worktrees of a throwaway repository.

It shows the whole loop in seconds: discoveries, a claim collision, a question and its answer, a
request taken by exactly one agent. The repository is removed afterwards unless kept.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.errors import GitbusError
from gitbus.git import init_repository
from gitbus.message import Message

FILES = {
    "internal/api/handler.go": "package api\n",
    "internal/api/routes.go": "package api\n",
    "config/db.yaml": "pool: 10\n",
    "web/app.ts": "export {}\n",
}


@dataclass(frozen=True)
class Step:
    agent: str
    action: str
    outcome: str
    ok: bool


@dataclass(frozen=True)
class DemoResult:
    repo_name: str
    steps: list[Step]
    log: list[Message]
    claims: list[Claim]
    now: int
    kept: Path | None


def run_demo(keep: Path | None = None) -> DemoResult:
    """Run the scenario; keep the repository at `keep` (which must not exist yet) if given."""
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise GitbusError(f"{keep} exists and is not empty; name a new directory for --keep.")
    base = keep.resolve() if keep else Path(tempfile.mkdtemp(prefix="gitbus-demo-"))
    try:
        return _scenario(base, keep is not None)
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _scenario(base: Path, kept: bool) -> DemoResult:
    main = base / "api"
    main.mkdir(parents=True)
    for rel, text in FILES.items():
        (main / rel).parent.mkdir(parents=True, exist_ok=True)
        (main / rel).write_text(text)
    repo = init_repository(main)
    repo.git("add", "-A")
    repo.git("-c", "user.name=demo", "-c", "user.email=demo@gitbus.invalid", "commit", "-qm", "demo code")
    for name in ("web", "db"):
        repo.git("worktree", "add", "-q", "-b", name, str(base / name))

    buses = {}
    for folder, agent in (("api", "api-1"), ("web", "web-1"), ("db", "db-1")):
        buses[agent] = Bus.open(base / folder, agent)
        buses[agent].join(agent)
    api, web, db = buses["api-1"], buses["web-1"], buses["db-1"]
    steps: list[Step] = [Step(a, "joined the bus", f"worktree {a.split('-')[0]}/", True) for a in buses]

    def act(agent: str, action: str, do: Callable[[], str]) -> None:
        try:
            steps.append(Step(agent, action, do(), True))
        except GitbusError as e:
            steps.append(Step(agent, action, str(e), False))

    act(
        "api-1",
        "claims internal/api/",
        lambda: _said(api.claim(["internal/api/"], reason="splitting handlers")),
    )
    act(
        "db-1",
        "posts a discovery",
        lambda: _said(
            db.discover(
                "The database config is config/db.yaml; the pool size is set there.", ["config/db.yaml"]
            )
        ),
    )
    act(
        "web-1",
        "tries to claim internal/api/handler.go",
        lambda: _said(web.claim(["internal/api/handler.go"], reason="add CORS headers")),
    )
    q = web.ask("When will internal/api/handler.go be free? I need to add CORS headers.", "api-1")
    steps.append(Step("web-1", "asks api-1 a question", _said(q), True))
    act(
        "api-1",
        "answers",
        lambda: _said(api.answer(q.id, "In about 20 minutes; put CORS in web/ meanwhile.")),
    )
    r = api.request("Add an index on users.email", paths=["config/db.yaml"])
    steps.append(Step("api-1", "hands off a request", _said(r), True))
    act("db-1", "takes the request", lambda: _said(db.take(r.id)))
    act("web-1", "tries to take the same request", lambda: _said(web.take(r.id)))
    act("db-1", "finishes it", lambda: _said(db.done(r.id, "Index added in migrations/0042.sql.")))
    act("web-1", "claims web/ instead", lambda: _said(web.claim(["web/"], reason="CORS middleware")))
    return DemoResult(main.name, steps, api.log(40), api.claims(), api.clock.now_ms(), base if kept else None)


def _said(m: Message | None) -> str:
    return f"{m.kind.value} {m.id[:8]}: {m.summary()}" if m else "nothing to do"
