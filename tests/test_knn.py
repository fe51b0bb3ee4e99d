"""The approximate indexes against exact search, through search.knn.VectorIndex."""

import fcntl
import os

import faiss
import numpy as np
import pytest

from indexer.library.rows import ImageRow, ModelInfo
from indexer.library.store import Store
from search import knn
from search.collection import Collection
from search.upkeep.check import check_library


def clustered_unit_vectors(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Vectors in tight clusters of ~20, like photo embeddings (the hard case for PQ codes)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 20 + 1, dim)).astype(np.float32)
    v = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def test_ivfpq_reranked_with_exact_vectors_finds_the_true_neighbours():
    space = clustered_unit_vectors(20_000)
    ids = np.arange(100, 100 + len(space), dtype=np.int64)  # ids are not row numbers
    queries = space[:200] + 0.05 * np.random.default_rng(1).standard_normal((200, 64))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    truth_scores, truth = knn.VectorIndex.build(ids, space, "flat", 0).search(queries, 10)

    approx = knn.VectorIndex.build(ids, space, "ivfpq", 0)
    assert approx.kind == "ivfpq"
    _, pq_only = approx.search(queries, 10)  # no exact vectors given: PQ codes alone
    approx.exact = lambda wanted: space[wanted - 100]
    scores, found = approx.search(queries, 10)
    reranked = recall_at_10(found, truth)
    assert reranked >= 0.95 and reranked > recall_at_10(pq_only, truth)
    hit = found == truth
    np.testing.assert_allclose(scores[hit], truth_scores[hit], atol=1e-5)  # true cosines


def test_ivfpq_round_trips_through_its_file(tmp_path):
    space = clustered_unit_vectors(3000, seed=2)
    ids = np.arange(len(space), dtype=np.int64)
    built = knn.VectorIndex.build(ids, space, "ivfpq", 7)
    built.save(tmp_path)
    loaded = knn.VectorIndex.load(tmp_path, 7)
    assert loaded.kind == "ivfpq" and loaded.count == 3000
    loaded.exact = built.exact = lambda wanted: space[wanted]
    assert np.array_equal(loaded.search(space[:5], 10)[1], built.search(space[:5], 10)[1])


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1000, "flat"), (knn.EXACT_MAX_VECTORS + 1, "hnsw"), (knn.IVFPQ_MIN_VECTORS, "ivfpq")],
)
def test_auto_picks_the_index_by_size(count, expected):
    assert knn.choose_index_type(count, 384) == expected
    assert knn.choose_index_type(count, 384, "flat") == "flat"


def test_ivfpq_shape_fits_the_dimension_and_the_count():
    assert knn.ivfpq_shape(10_000_000, 384) == (12649, 96)
    assert knn.ivfpq_shape(10_000_000, 768)[1] == 192
    lists, m = knn.ivfpq_shape(50, 37)  # tiny and prime: one list, one byte
    assert lists == 1 and m == 1


def as_dict(index: knn.VectorIndex) -> dict[int, np.ndarray]:
    """id -> stored vector, for exact (flat) indexes."""
    inner = faiss.downcast_index(index.index.index)
    vectors = inner.reconstruct_n(0, index.count)
    return dict(zip(index.ids().tolist(), vectors, strict=True))


def test_an_update_equals_a_rebuild():
    space = clustered_unit_vectors(200, seed=3)
    ids = np.arange(200, dtype=np.int64)
    index = knn.VectorIndex.build(ids, space, "flat", 1)
    # then: 10 rows removed, 10 re-embedded (same id, new vector), 10 new
    now_ids = np.concatenate([ids[10:], np.arange(500, 510)])
    now = np.concatenate([space[10:], clustered_unit_vectors(10, seed=4)])
    now[:10] = clustered_unit_vectors(10, seed=5)
    changed = np.concatenate([now_ids[:10], np.arange(500, 510)])
    updated = index.updated(now_ids, lambda rows: now[rows], 64, changed, 2)
    assert updated is index and updated.generation == 2
    fresh = knn.VectorIndex.build(now_ids, now, "flat", 2)
    got, want = as_dict(updated), as_dict(fresh)
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[i], want[i]) for i in want)


def test_an_update_gives_way_to_a_rebuild_when_it_should():
    space = clustered_unit_vectors(300, seed=6)
    ids = np.arange(300, dtype=np.int64)
    none = np.array([], np.int64)
    flat = knn.VectorIndex.build(ids, space, "flat", 1)
    assert flat.updated(ids[:100], lambda r: space[r], 64, none, 2) is None  # 2/3 gone
    assert flat.updated(ids, lambda r: space[r], 32, none, 2) is None  # another dimension
    hnsw = knn.VectorIndex.build(ids, space, "hnsw", 1)
    assert hnsw.updated(ids[1:], lambda r: space[1:][r], 64, none, 2) is None  # cannot remove
    more = np.concatenate([space, clustered_unit_vectors(10, seed=7)])
    grown = hnsw.updated(np.arange(310), lambda r: more[r], 64, np.arange(300, 310), 2)
    assert grown is hnsw and hnsw.count == 310  # adding is fine


def test_ivfpq_takes_additions_in_place():
    space = clustered_unit_vectors(3000, seed=8)
    ids = np.arange(3000, dtype=np.int64)
    index = knn.VectorIndex.build(ids[:2900], space[:2900], "ivfpq", 1)
    index.exact = lambda wanted: space[wanted]
    grown = index.updated(ids, lambda rows: space[rows], 64, np.arange(2900, 3000), 2)
    assert grown is index and index.count == 3000
    probe = np.array([5, 100, 2000, 2950, 2999])
    assert np.array_equal(index.search(space[probe], 1)[1][:, 0], probe)


def test_a_library_too_small_for_ivfpq_gets_exact_search():
    assert knn.choose_index_type(255, 384, "ivfpq") == "flat"
    assert knn.choose_index_type(256, 384, "ivfpq") == "ivfpq"
    with pytest.raises(ValueError, match="needs 256 vectors"):
        knn.VectorIndex.build(np.arange(3), clustered_unit_vectors(3), "ivfpq", 0)


def test_a_collection_serves_ivfpq_with_the_librarys_exact_vectors(tmp_path):
    """Through the product path: the store's memory-mapped vectors re-score the candidates,
    so an IVF-PQ library answers as an exact one does."""
    space = clustered_unit_vectors(2000, seed=9)
    store = Store.open(tmp_path / "lib", create=True)
    store.bind_model(ModelInfo("facebook/dinov2-small", 64, "{}"))
    files = tmp_path / "files"
    files.mkdir()
    rows = []
    for i, v in enumerate(space):
        f = files / f"{i}.jpg"
        f.write_bytes(b"x")  # `check` compares rows with files on disk
        rows.append(ImageRow(str(f), 1, f.stat().st_mtime_ns, f"h{i}", vector=v.tobytes()))
    store.write_rows(rows)
    store.close()
    answers = {}
    for kind in ("flat", "ivfpq"):
        coll = Collection(tmp_path / "lib", index_type=kind)
        assert coll.vector_index().kind == kind
        answers[kind] = [coll.search_vector(space[i], 5).results for i in (0, 777, 1999)]
    for flat, ivf in zip(answers["flat"], answers["ivfpq"], strict=True):
        assert [h.path for h in ivf] == [h.path for h in flat]
        np.testing.assert_allclose([h.score for h in ivf], [h.score for h in flat], atol=1e-5)
    assert check_library(tmp_path / "lib").problems == []  # its ids agree with SQLite


def test_ivfpq_is_retrained_once_the_library_outgrows_it():
    space = clustered_unit_vectors(20_000, seed=10)
    ids = np.arange(len(space), dtype=np.int64)
    small = knn.VectorIndex.build(ids[:4000], space[:4000], "ivfpq", 1)  # 100 lists
    take = lambda rows: space[rows]  # noqa: E731
    assert small.updated(ids[:6000], take, 64, np.arange(4000, 6000), 2) is small  # 150 lists
    # each step adds a third, but 9000 vectors would get 225 lists, over twice the 100 it has
    assert small.updated(ids[:9000], take, 64, np.arange(6000, 9000), 3) is None


def test_ivfpq_removes_in_place_and_every_other_id_still_finds_its_vector():
    """The case an id map around IVF gets wrong: after a removal, later rows keep their ids."""
    space = clustered_unit_vectors(3000, seed=11)
    ids = np.arange(3000, dtype=np.int64)
    index = knn.VectorIndex.build(ids, space, "ivfpq", 1)
    now = space.copy()
    now[0] = clustered_unit_vectors(1, seed=12)[0]  # id 0 re-embedded
    keep = np.setdiff1d(ids, np.arange(10, 60))  # 50 files removed
    updated = index.updated(keep, lambda rows: now[keep[rows]], 64, np.array([0]), 2)
    assert updated is index and index.count == len(keep)
    assert set(index.ids().tolist()) == set(keep.tolist())
    index.exact = lambda wanted: now[wanted]
    probe = np.array([0, 5, 100, 2000, 2999])
    assert np.array_equal(index.search(now[probe], 1)[1][:, 0], probe)


@pytest.mark.parametrize("race", ["removed", "probed"])
def test_a_save_survives_another_process_cleaning_its_new_temp_file(tmp_path, monkeypatch, race):
    """Another process's cleanup can meet a new temp file between its creation and its lock
    (found as a FileNotFoundError in a reader's save while `index` ran): it removes the file, or
    holds its lock for a moment. The save then makes a new one and succeeds."""
    space = clustered_unit_vectors(50, seed=3)
    built = knn.VectorIndex.build(np.arange(50, dtype=np.int64), space, "flat", 4)
    real_mkstemp, made = knn.tempfile.mkstemp, []

    def mkstemp(**kwargs):
        fd, path = real_mkstemp(**kwargs)
        made.append(path)
        if len(made) == 1:  # the other process, in the gap
            if race == "removed":
                os.unlink(path)
            else:
                probe = os.open(path, os.O_RDONLY)
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                monkeypatch.setattr(knn, "_probe", probe, raising=False)
        return fd, path

    monkeypatch.setattr(knn.tempfile, "mkstemp", mkstemp)
    final = built.save(tmp_path)
    assert len(made) == 2 and final.exists()
    assert knn.VectorIndex.load(tmp_path, 4).count == 50
    if race == "probed":
        os.close(knn._probe)
