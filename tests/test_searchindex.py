"""The search index (`gitbus.searchindex`) when its file is damaged: a cut, emptied or garbled
`index.tsv` never hides a message, never glues a new line onto a broken one and never raises a
traceback; a disk that refuses the append is one sentence. Finding over the whole history is
test_notes.py's.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gitbus.bus import Bus
from gitbus.cli import app

from .conftest import make_repo


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def found(wt: Path, *args: str) -> list[str]:
    code, out, err = gb(wt, *args, "--json")
    assert code == 0, err
    return [m["id"] for m in json.loads(out)]


def index_of(bus: Bus) -> Path:
    return bus.repo.common_dir / "gitbus" / "search" / "index.tsv"


def test_an_emptied_index_is_rebuilt_and_hides_no_message(repo: Path, bus_for: Any) -> None:
    bus = bus_for(repo, "api-1")
    m = bus.discover("the okapi sleeps under the stairs")
    assert found(repo, "search", "okapi") == [m.id]
    index_of(bus).write_bytes(b"")
    code, out, err = gb(repo, "show", m.id)
    assert code == 0 and "okapi" in out, err
    index_of(bus).write_bytes(b"")
    assert found(repo, "search", "okapi") == [m.id]
    index_of(bus).write_bytes(b"")
    assert found(repo, "log", "--grep", "okapi") == [m.id]


def test_an_index_cut_mid_line_is_rebuilt_and_the_next_message_is_found(repo: Path, bus_for: Any) -> None:
    bus = bus_for(repo, "api-1")
    first = [bus.discover(f"finding number {k}, a walrus-free one") for k in range(3)]
    assert found(repo, "search", "walrus-free") == [m.id for m in reversed(first)]
    index = index_of(bus)
    with index.open("r+b") as f:
        f.truncate(100)
    fourth = bus.discover("fourth finding walrus")
    for _ in range(2):  # the second search reads the index the first one repaired
        assert found(repo, "search", "walrus") == [fourth.id, *(m.id for m in reversed(first))]
    assert index.read_bytes().endswith(b"\n")


def test_garbled_index_lines_are_skipped_and_counted_never_raised(repo: Path, bus_for: Any) -> None:
    bus = bus_for(repo, "api-1")
    zebra = bus.discover("a zebra crossing in the handler")
    assert found(repo, "search", "zebra") == [zebra.id]
    with index_of(bus).open("ab") as f:
        f.write(b"\xc2\xb2\tabcd\t" + b"0" * 40 + b"\tzebra\n")  # a time int() refuses
        f.write(b"17\tabd\tnot-a-commit\tzebra\n")
        f.write(b"17\tabe\t" + b"g" * 40 + b"\tzebra\n")
    reader = Bus.open(repo, "api-1")
    assert [m.id for m in reader.log(None, grep="zebra")] == [zebra.id]
    assert len(reader.repo.skipped) == 3, reader.repo.skipped
    assert b"not-a-commit" not in index_of(bus).read_bytes()  # the search that met them rebuilt it
    assert found(repo, "search", "zebra") == [zebra.id]
    code, out, err = gb(repo, "show", "abcd")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, (out, err)


def test_an_id_lookup_reads_a_garbled_line_without_raising(repo: Path, bus_for: Any) -> None:
    bus = bus_for(repo, "api-1")
    m = bus.discover("a finding to look up")
    assert found(repo, "search", "finding") == [m.id]
    covered = index_of(bus).with_name("covered.json")
    before = covered.read_bytes()
    with index_of(bus).open("ab") as f:
        f.write(b"\xc2\xb2\tabcd\t" + b"0" * 40 + b"\tzebra\n")
    covered.write_bytes(before)  # even when the garbled line is among those the index vouches for
    raw = json.loads(before)
    if "bytes" in raw:
        raw["bytes"] = index_of(bus).stat().st_size
        covered.write_text(json.dumps(raw))
    code, out, err = gb(repo, "show", "abcd")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    code, out, err = gb(repo, "show", m.id)
    assert code == 0 and "a finding to look up" in out, err


def test_an_index_that_is_a_folder_is_one_sentence(repo: Path, bus_for: Any) -> None:
    bus = bus_for(repo, "api-1")
    bus.discover("the okapi again")
    index_of(bus).mkdir(parents=True)
    code, out, err = gb(repo, "search", "okapi")
    assert code == 1 and out == "" and err.strip().splitlines() == [err.strip()], err
    assert "index.tsv" in err


def test_on_a_full_disk_a_search_says_so_in_one_line_and_recovers(small_disk: Path) -> None:
    repo = make_repo(small_disk / "r")
    bus = Bus.open(repo, "api-1")
    bus.init()
    okapi = bus.discover("the okapi is shy")
    assert found(repo, "search", "okapi") == [okapi.id]
    later = bus.discover("a second okapi, " + "long text " * 2000)
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        for _ in range(10_000):  # 640 MiB at most: the disk has 1 MiB
            f.write(b"\0" * 65536)
    code, out, err = gb(repo, "search", "okapi")
    assert code == 1 and out == "" and err.strip().splitlines() == [err.strip()], err
    assert "the disk is full" in err
    filler.unlink()
    assert found(repo, "search", "okapi") == [later.id, okapi.id]
