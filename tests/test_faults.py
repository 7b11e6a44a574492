"""The fault-injection suite (tests/faults.py) in its short mode: each scenario loses nothing and
keeps its invariants. `pytest --long` runs the full counts; `python -m tests.faults` writes the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gitbus.cli import app

from . import faults


@pytest.mark.parametrize("name", list(faults.SCENARIOS))
def test_a_fault_scenario_loses_nothing_and_keeps_every_invariant(
    name: str, tmp_path: Path, long_mode: bool
) -> None:
    res = faults.run_scenario(name, tmp_path, faults.LONG if long_mode else faults.SHORT)
    assert res.injected and res.checked, f"{name} does not say what it did"
    assert res.ok, f"{name}: {res.lost} acknowledged writes lost; problems:\n" + "\n".join(res.problems)


def test_every_cli_command_meets_a_bad_input_or_is_named_as_left_out() -> None:
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    covered = {faults._command_of(c) for c in faults.load_corpus()}
    assert commands - covered - faults.NOT_IN_CORPUS.keys() == set()
    assert faults.NOT_IN_CORPUS.keys() <= commands, "a command left out of the corpus no longer exists"
    assert covered <= commands, "the corpus names a command gitbus does not have"


def test_the_bad_input_corpus_is_well_formed() -> None:
    cases = faults.load_corpus()
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "two cases share a name"
    for c in cases:
        assert isinstance(c["args"], list) and c["args"], c["name"]
        assert c.get("exit", 1) in (1, 2, 3), c["name"]
        assert c.get("exit", 1) == 2 or c.get("error"), f"{c['name']} does not say which error it expects"


def test_the_report_gives_per_scenario_what_was_injected_checked_and_lost_and_how_to_reproduce() -> None:
    held = faults.Result("posts", "Posts", ["8 posts"], ["all there"], seconds=1.5)
    broken = faults.Result("kill", "Kills", ["3 kills"], ["all there"], lost=2, problems=["2 lost"])
    text = faults.report([held, broken], faults.SHORT, faults.machine(), "python -m tests.faults", 9.0)
    assert "| [Posts](#posts) | **held** | 0 | 1.5 s |" in text
    assert "**FAILED** (1 problems) | 2 |" in text and "- 2 lost" in text
    assert "**Injected.** 8 posts" in text and "**Checked.** all there" in text
    assert "`python -m tests.faults --only kill`" in text and "cores" in text
