"""The vector file beside SQLite: committed through it, crash-safe, migrated, compacted, checked.

These drive `Store` directly with generated unit vectors (no model): what is under test is the
layout, not the embeddings.
"""

import json

import numpy as np
import pytest
import sqlite_utils

from indexer.errors import LibraryError
from indexer.library import compaction, schema, vectorfile
from indexer.library.rows import ImageRow, ModelInfo
from indexer.library.store import Store
from search.upkeep.check import check_library, repair_library

DIM = 8


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rows(paths, vectors) -> list[ImageRow]:
    return [
        ImageRow(str(p), 1, 1, f"h{p}", vector=None if v is None else v.tobytes())
        for p, v in zip(paths, vectors, strict=True)
    ]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "lib", create=True)
    s.bind_model(ModelInfo("test/model", DIM, "{}"))
    yield s
    s.close()


def by_path(store: Store) -> dict[str, np.ndarray]:
    ids, vectors = store.vectors()
    paths = store.images_by_ids(ids, "id, path")
    return {paths[int(i)]["path"]: v for i, v in zip(ids, vectors, strict=True)}


def test_vectors_live_in_the_file_not_in_sqlite(store):
    vecs = unit_vectors(5)
    store.write_rows(rows(range(5), vecs))
    columns = {c.name for c in store.db["images"].columns}
    assert "vector" not in columns and "slot" in columns
    assert (store.directory / "vectors-0.f32").stat().st_size == 5 * DIM * 4
    ids, got = store.vectors()
    assert np.array_equal(got, vecs)
    assert not got.flags.writeable and not got.flags.owndata  # a view of the map, no copy
    row = store.image(int(ids[2]))
    assert np.array_equal(np.frombuffer(row["vector"], np.float32), vecs[2])
    assert "slot" not in row


def test_a_path_reindexed_without_a_vector_loses_its_old_one(store):
    store.write_rows(rows(["a", "b"], unit_vectors(2)))
    store.write_rows([ImageRow("a", 2, 2, "ha2", status="failed", error="broken")])
    assert set(by_path(store)) == {"b"}
    assert store.image_by_path("a")["vector"] is None


def test_a_batch_that_never_committed_leaves_nothing(store, monkeypatch):
    """Killed between the vector file's fsync and SQLite's commit: the appended rows are cut
    off by the next writer and never seen by a reader."""
    first = unit_vectors(3, seed=1)
    store.write_rows(rows(["a", "b", "c"], first))

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill would, after the append

    monkeypatch.setattr(store.db["images"].__class__, "upsert_all", die)
    with pytest.raises(KeyboardInterrupt):
        store.write_rows(rows(["d", "e"], unit_vectors(2, seed=2)))
    monkeypatch.undo()
    path = store.directory / "vectors-0.f32"
    assert path.stat().st_size == 5 * DIM * 4  # the orphan rows are on disk...
    assert store.vector_slots() == 3  # ...but not committed
    again = Store.open(store.directory)
    assert set(by_path(again)) == {"a", "b", "c"}
    again.write_rows(rows(["f"], unit_vectors(1, seed=3)))
    assert path.stat().st_size == 4 * DIM * 4  # the next writer cut them off first
    assert np.array_equal(by_path(again)["f"], unit_vectors(1, seed=3)[0])


def test_compaction_keeps_every_vector_and_drops_dead_rows(store):
    paths = [f"p{i}" for i in range(40)]
    store.write_rows(rows(paths, unit_vectors(40, seed=4)))
    for round_ in range(3):  # re-embedded content: the old rows die
        store.write_rows(rows(paths[:20], unit_vectors(20, seed=10 + round_)))
    store.apply_moves([], [], [int(i) for i in store.vectors()[0][:5]])
    before = by_path(store)
    assert store.dead_vector_slots() == 100 - 35
    assert store.vectors()[1].flags.writeable  # re-embedded rows are out of id order: a copy
    assert not store.compact_vectors()  # too few dead rows to be worth it...
    assert store.compact_vectors(force=True)  # ...unless asked
    assert not store.vectors()[1].flags.writeable  # rewritten in id order: a view of the map
    assert store.get_meta("vector_file") == "vectors-1.f32"
    assert store.vector_slots() == 35 and store.dead_vector_slots() == 0
    assert (store.directory / "vectors-1.f32").stat().st_size == 35 * DIM * 4
    after = by_path(store)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[p], before[p]) for p in before)
    store.write_rows(rows(["p10"], unit_vectors(1, seed=99)))
    assert store.compact_vectors(force=True)
    names = sorted(p.name for p in store.directory.glob("vectors-*.f32"))
    assert names == ["vectors-1.f32", "vectors-2.f32"]  # the one before the previous is gone


def real_files(folder, names) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of small files made for rows that `check` compares with disk."""
    folder.mkdir(exist_ok=True)
    out = []
    for name in names:
        f = folder / name
        f.write_bytes(b"x")
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def test_migration_moves_blobs_out_of_sqlite(tmp_path):
    """A library written by the blob layout (schema 3) opens with the same vectors; a row with
    a blob of the wrong length becomes a failure that --retry-failed embeds again."""
    directory = tmp_path / "old"
    directory.mkdir()
    files = real_files(tmp_path / "files", ["0", "1", "2", "3", "short"])
    db = sqlite_utils.Database(directory / "library.db")
    for step in schema.MIGRATIONS[:3]:
        step(db, directory)
    db["meta"].insert_all(
        [
            {"key": schema.SCHEMA_VERSION_KEY, "value": "3"},
            {"key": "model", "value": json.dumps({"id": "m", "dim": DIM, "recipe": "{}"})},
        ]
    )
    vecs = unit_vectors(4, seed=5)
    blobs = [v.tobytes() for v in vecs] + [b"\0" * 12]
    for (path, size, mtime_ns), blob in zip(files, blobs, strict=True):
        db["images"].insert(
            {"path": path, "status": "ok", "size": size, "mtime_ns": mtime_ns, "vector": blob}
        )
    db["images"].insert({"path": "/x/failed", "status": "failed", "size": 1})
    db.close()
    before = check_library(directory)
    bad_before = [p.path for p in before.problems if p.kind == "bad_vector"]  # the old layout
    assert bad_before == [files[4][0]]

    store = Store.open(directory)
    assert store.get_meta(schema.SCHEMA_VERSION_KEY) == str(len(schema.MIGRATIONS))
    got = by_path(store)
    assert list(got) == [f[0] for f in files[:4]]
    assert all(np.array_equal(got[f[0]], v) for f, v in zip(files, vecs, strict=False))
    assert "vector" not in {c.name for c in store.db["images"].columns}
    store.close()
    store = Store.open(directory)
    damaged = store.image_by_path(files[4][0])
    assert damaged["status"] == "failed" and "retry-failed" in damaged["error"]
    store.close()
    assert not [p for p in check_library(directory).problems if p.kind == "bad_vector"]


def test_a_truncated_vector_file_is_reported_and_repaired(store, tmp_path):
    files = real_files(tmp_path / "files", [f"img{i}" for i in range(6)])
    store.write_rows(
        [
            ImageRow(path, size, mtime_ns, f"h{path}", vector=v.tobytes())
            for (path, size, mtime_ns), v in zip(files, unit_vectors(6, seed=6), strict=True)
        ]
    )
    path = store.directory / "vectors-0.f32"
    with open(path, "r+b") as f:
        f.truncate(4 * DIM * 4 + 5)  # lost the last two rows and a bit
    with pytest.raises(LibraryError, match="damaged.*check --repair"):
        store.vectors()
    report = check_library(store.directory)
    kinds = {p.kind for p in report.problems}
    assert "vectors_damaged" in kinds
    assert sorted(p.path for p in report.problems if p.kind == "bad_vector") == [
        f[0] for f in files[4:]
    ]
    repaired = repair_library(store.directory)
    assert repaired.ok, repaired.problems
    assert store.vector_slots() == 4 and set(by_path(store)) == {f[0] for f in files[:4]}


def test_read_map_refuses_a_short_file(tmp_path):
    path = tmp_path / "v.f32"
    vectorfile.append(path, 0, DIM, unit_vectors(2))
    assert vectorfile.read_map(path, 2, DIM).shape == (2, DIM)
    with pytest.raises(ValueError, match="holds 2 vectors.*commits 3"):
        vectorfile.read_map(path, 3, DIM)


def test_a_writer_never_pads_lost_vectors_with_zeros(store):
    """A vector file shorter than committed is damage to report, not a gap to fill: the next
    batch refuses to write (before, it would have zero-filled the lost rows)."""
    store.write_rows(rows(range(6), unit_vectors(6)))
    path = store.directory / "vectors-0.f32"
    with open(path, "r+b") as f:
        f.truncate(2 * DIM * 4)
    with pytest.raises(LibraryError, match="holds 2 vectors.*commits 6"):
        store.write_rows(rows(["new"], unit_vectors(1, seed=1)))
    path.unlink()
    with pytest.raises(LibraryError, match="missing"):
        store.write_rows(rows(["new"], unit_vectors(1, seed=1)))


def test_compaction_without_room_leaves_the_library_as_it_was(store, monkeypatch):
    paths = [f"p{i}" for i in range(10)]
    store.write_rows(rows(paths, unit_vectors(10)))
    store.write_rows(rows(paths, unit_vectors(10, seed=1)))  # 10 dead rows
    before = by_path(store)
    monkeypatch.setattr(compaction, "out_of_space", lambda directory, margin=0: True)
    assert not store.compact_vectors(force=True)
    assert store.get_meta("vector_file") == "vectors-0.f32" and store.vector_slots() == 20
    assert sorted(p.name for p in store.directory.glob("vectors-*")) == ["vectors-0.f32"]
    after = by_path(store)
    assert all(np.array_equal(after[p], before[p]) for p in before)
