"""Per-repository settings: every stored value is checked before it is acted on, and writers of
different keys never lose each other's change."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from typer.testing import CliRunner

from gitbus import settings, state
from gitbus.cli import app


def test_a_stored_value_of_the_wrong_type_counts_as_the_default_and_is_named(repo: Path) -> None:
    common = repo / ".git"
    state.settings(common).parent.mkdir(parents=True, exist_ok=True)
    state.settings(common).write_text(
        json.dumps({"autoclaim": "false", "sync_interval": "30", "guard": 1, "operator": "Not A Name!"})
    )
    conf = settings.load(common)
    assert (conf["autoclaim"], conf["sync_interval"], conf["guard"], conf["operator"]) == (
        False,
        30,
        "deny",
        "operator",
    )
    found = " ".join(settings.problems(common))
    assert all(k in found for k in ("autoclaim", "sync_interval", "guard", "operator"))
    r = CliRunner().invoke(app, ["-C", str(repo), "config"], env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "autoclaim" in r.stderr and "Traceback" not in r.stderr


def test_a_config_that_cannot_be_read_counts_as_empty_and_is_named(repo: Path) -> None:
    common = repo / ".git"
    state.settings(common).parent.mkdir(parents=True, exist_ok=True)
    state.settings(common).write_text("[" * 100_000 + "]" * 100_000)
    assert settings.load(common) == settings.DEFAULTS
    assert settings.problems(common)


def test_writers_of_different_keys_at_once_lose_no_change(repo: Path) -> None:
    common = repo / ".git"
    values = {"sync_interval": lambda r: r + 1, "operator": lambda r: f"op-{r}", "remote": lambda r: f"r{r}"}
    lost = []
    for r in range(30):
        state.settings(common).unlink(missing_ok=True)
        gate = threading.Barrier(len(values))

        def write(key: str, r: int = r, gate: threading.Barrier = gate) -> None:
            gate.wait(timeout=10)
            settings.save(common, key, values[key](r))

        threads = [threading.Thread(target=write, args=(k,)) for k in values]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        conf = settings.load(common)
        if any(conf[k] != f(r) for k, f in values.items()):
            lost.append(r)
    assert lost == []
