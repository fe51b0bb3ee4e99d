"""`dinosearch check`: files <-> SQLite <-> FAISS agree (exit 0), or every problem is listed
(exit 1); `--repair` mends what SQLite alone can mend."""

import json
import os
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from indexer.library.store import Store
from search.cli.app import cli
from search.knn import VectorIndex
from tests.helpers import PHOTOS


def run_check(library, *args, expect=None):
    result = CliRunner().invoke(cli, ["check", "--index", str(library), "--json", *args])
    if expect is not None:
        assert result.exit_code == expect, (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


def kinds(report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in report["problems"]:
        out.setdefault(p["kind"], set()).add(os.path.basename(p["path"] or ""))
    return out


@pytest.fixture
def indexed(tmp_path):
    """(photos folder, library) with 5 real photos indexed through the CLI."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted(PHOTOS.glob("*.png"))[:5]:
        shutil.copy2(src, folder / src.name)
    library = tmp_path / "library"
    result = CliRunner().invoke(
        cli, ["index", str(folder), "--index", str(library), "--workers", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    return folder, library


def sql(library, statement, params=()):
    with sqlite3.connect(library / "library.db") as conn:
        conn.execute(statement, params)


def damage_vector(library, path) -> None:
    """Zeros over one row of the vector file (a torn write or bit rot: not a unit vector)."""
    with sqlite3.connect(library / "library.db") as conn:
        (slot,) = conn.execute("select slot from images where path = ?", [str(path)]).fetchone()
        meta = dict(conn.execute("select key, value from meta").fetchall())
    dim = json.loads(meta["model"])["dim"]
    with open(library / meta["vector_file"], "r+b") as f:
        f.seek(slot * dim * 4)
        f.write(b"\0" * dim * 4)


def test_fresh_library_is_clean(indexed):
    _, library = indexed
    code, report = run_check(library)
    assert code == 0 and report["ok"] and report["problems"] == []
    assert report["images"] == 5 and report["generation"] == report["index_generation"]
    human = CliRunner().invoke(cli, ["check", "--index", str(library)])
    assert human.exit_code == 0 and "all agree" in human.stdout


def test_every_repairable_problem_is_listed_then_mended(indexed):
    folder, library = indexed
    names = sorted(p.name for p in folder.iterdir())
    (folder / names[0]).unlink()  # a file that is gone
    damage_vector(library, folder / names[1])
    (library / ".vectors.1.faiss.999999.tmp").write_bytes(b"half an index")  # a dead writer's
    code, report = run_check(library, expect=1)
    found = kinds(report)
    assert found["missing_file"] == {names[0]}
    assert found["bad_vector"] == {names[1]}
    assert found["temp_file"] == {".vectors.1.faiss.999999.tmp"}
    assert "index_mismatch" in found  # the index still holds the two dropped vectors

    code, report = run_check(library, "--repair", expect=0)
    assert report["ok"] and {p["kind"] for p in report["repaired"]} >= {
        "missing_file",
        "bad_vector",
        "temp_file",
        "index_mismatch",
    }
    assert report["images"] == 3
    assert not list(library.glob(".*.tmp"))
    # the file with the damaged vector is embedded again by the next index run
    again = CliRunner().invoke(cli, ["index", str(folder), "--index", str(library), "--json"])
    assert json.loads(again.stdout)["embedded"] == 1
    run_check(library, expect=0)


def test_damaged_and_stale_index_files(indexed):
    _, library = indexed
    current = next(library.glob("vectors.*.faiss"))
    generation = int(current.name.split(".")[1])
    current.write_bytes(b"\0garbage" * 100)
    code, report = run_check(library, expect=1)
    assert set(kinds(report)) == {"index_damaged"}

    current.rename(library / f"vectors.{generation - 1}.faiss")  # an older generation's file
    code, report = run_check(library, expect=1)
    assert set(kinds(report)) == {"index_stale", "stale_index_file"}
    assert report["index_generation"] == generation - 1

    run_check(library, "--repair", expect=0)
    assert [p.name for p in library.glob("vectors.*.faiss")] == [f"vectors.{generation}.faiss"]


def test_index_that_disagrees_with_sqlite(indexed):
    """A readable index file of the right generation but other vectors is caught and rebuilt."""
    _, library = indexed
    ids, vectors = Store.open(library).vectors()
    generation = int(next(library.glob("vectors.*.faiss")).name.split(".")[1])
    VectorIndex.build(ids, vectors[::-1].copy(), "flat", generation).save(library)
    code, report = run_check(library, expect=1)
    assert [p["detail"] for p in report["problems"]] == [
        "index vectors differ from the SQLite ones"
    ]
    run_check(library, "--repair", expect=0)


def test_changed_file_needs_a_reindex_not_a_repair(indexed):
    folder, library = indexed
    a, b = sorted(folder.iterdir())[:2]
    shutil.copy(b, a)
    code, report = run_check(library, "--repair", expect=1)
    assert kinds(report) == {"changed_file": {a.name}}
    assert "dinosearch index" in report["problems"][0]["detail"]
    CliRunner().invoke(cli, ["index", str(folder), "--index", str(library), "--workers", "0"])
    run_check(library, expect=0)


def test_deep_finds_same_stat_other_content(indexed):
    folder, library = indexed
    victim = sorted(folder.iterdir())[2]
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    run_check(library, expect=0)  # size+mtime agree: only --deep can tell
    code, report = run_check(library, "--deep", expect=1)
    assert kinds(report) == {"changed_content": {victim.name}}


def test_damaged_database_is_reported_and_never_written(indexed):
    _, library = indexed
    db = library / "library.db"
    sqlite3.connect(db).execute("pragma wal_checkpoint(TRUNCATE)").close()
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = os.urandom(page)  # a page of the images table or its index
    db.write_bytes(bytes(data))
    before = db.read_bytes()
    code, report = run_check(library, "--repair", expect=1)
    assert "integrity" in kinds(report)
    assert db.read_bytes() == before


def test_no_library_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["check", "--index", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no library" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
