"""Vectors -> neighbours: builds the FAISS index, saves it atomically reloads it.

The FAISS file is derived data: ``vectors.<generation>.faiss`` reflects the store generation in its
name, so a stale or half-written file is never mistaken for a current one and can always be rebuilt.
"""

import errno
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

try:
    import fcntl
except ImportError:  # Windows: temp files are judged by their age
    fcntl = None  # type: ignore[assignment]

from indexer.atomic import fsync_path, sync_directory
from indexer.config import INDEX_PREFIX, INDEX_TYPES
from indexer.errors import BadQuery, DiskFull, LibraryError
from indexer.library.layout import INDEX_FILE_RE, INDEX_TMP_RE

# Exact search below this many vectors: one query over 200k x 768 floats is ~10 ms on 2 cores, and
# exact is what users trust. Above it HNSW (graph search, recall@10 >= 0.95 as measured in bench/).
EXACT_MAX_VECTORS = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# recall@10 at 1M realistic vectors: 0.941 at 64, 0.979 at 128 (p50 1.8 ms on 2 cores); 100k: 0.999
HNSW_EF_SEARCH = 128
# Above this HNSW's RAM (the full vectors plus ~256 B/vector of graph: ~9 GB at 5M 384-d) is more
# than a workstation has: IVF-PQ holds ~100 B/vector, and its candidates are re-scored with the
# exact vectors from the library's memory-mapped file (bench/results/scale_store.md).
IVFPQ_MIN_VECTORS = 5_000_000
IVFPQ_DIMS_PER_BYTE = 4  # PQ: one 8-bit code per 4 dimensions (96 B for 384-d, 192 B for 768-d)
# 1M realistic vectors, IVF4000,PQ96 (bench/results/perf_search_speed_ivfpq.md): recall@10 0.932 at
# nprobe 128 / 100 candidates, 0.948 at 128/200, 0.964 at 256/100, 0.983 at 256/200 (p50 4.9 ms)
IVFPQ_NPROBE = 256
IVFPQ_CANDIDATES = 200  # PQ candidates per query re-scored exactly
IVFPQ_TRAIN_PER_LIST = 40  # k-means wants >= 39 training vectors per list
IVFPQ_ADD_CHUNK = 65_536
IVFPQ_MIN_VECTORS_TO_TRAIN = 256  # 8-bit PQ codes need 256 training vectors; fewer: exact search
# An index is brought up to date in place (rows removed and added) unless more than this share of
# the library changed, or it would have to remove rows from HNSW (it cannot): then it is rebuilt.
UPDATE_MAX_FRACTION = 0.5
STALE_TMP_S = 600  # a temp file this old belongs to no live writer
# A writer creates its temp file, then locks it; between the two it looks abandoned. Threads of
# one process (the API's, an index job's) take this lock for both steps and for the cleanup check.
_TMP_LOCK = threading.Lock()


@dataclass
class Hit:
    rank: int
    id: int
    path: str
    score: float

    def to_json(self) -> dict:
        return {"rank": self.rank, "id": self.id, "path": self.path, "score": round(self.score, 6)}


@dataclass
class QueryResult:
    query: list[str]
    model: str
    results: list[Hit] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "model": self.model,
            "results": [h.to_json() for h in self.results],
        }


def choose_index_type(count: int, dim: int, requested: str = "auto") -> str:
    """The index for a library of `count` vectors: exact when that is fast enough, then HNSW,
    then IVF-PQ when HNSW would not fit in RAM."""
    if requested == "ivfpq" and count < IVFPQ_MIN_VECTORS_TO_TRAIN:
        return "flat"  # nothing to train codes on: exact search, which is also instant here
    if requested != "auto":
        return requested
    if count <= EXACT_MAX_VECTORS:
        return "flat"
    return "hnsw" if count < IVFPQ_MIN_VECTORS else "ivfpq"


def ivfpq_shape(count: int, dim: int) -> tuple[int, int]:
    """(lists, PQ bytes) for `count` vectors: ~4·sqrt(n) lists, each trainable; one byte per
    IVFPQ_DIMS_PER_BYTE dimensions (the largest divisor of dim at or below that)."""
    lists = max(1, min(int(4 * np.sqrt(count)), count // IVFPQ_TRAIN_PER_LIST))
    target = max(1, dim // IVFPQ_DIMS_PER_BYTE)
    m = max(d for d in range(1, target + 1) if dim % d == 0)
    return lists, m


def index_ids(index) -> np.ndarray:
    """The ids a FAISS index holds: an IndexIDMap2's map, or an IVF index's own lists.

    IVF-PQ keeps the ids in its inverted lists (no IndexIDMap2 around it): there a removal is
    done by the lists themselves, where inside an id map it would shift later rows' ids."""
    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    assert lists is not None  # an IVF index always has its lists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def inner_index(index):
    """The index inside an IndexIDMap2 (flat or HNSW), or the IVF-PQ index itself."""
    return faiss.downcast_index(index.index) if hasattr(index, "id_map") else index


def build_all(store, requested: str = "auto") -> "VectorIndex":
    """A new index of all the store's vectors, for its generation (no previous file used)."""
    with store.snapshot():
        generation = store.generation
        ids, vectors = store.vectors()
    kind = choose_index_type(len(ids), vectors.shape[1], requested)
    return VectorIndex.build(ids, vectors, kind, generation)


@dataclass
class VectorIndex:
    index: faiss.Index  # IndexIDMap2 around a flat or HNSW index; an IndexIVFPQ as it is
    kind: str
    generation: int
    build_seconds: float = 0.0
    # ivfpq: the exact vectors of given ids (the library's), to re-score the PQ candidates
    exact: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, kind: str, generation: int
    ) -> "VectorIndex":
        started = time.perf_counter()
        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
        if kind == "ivfpq":
            if len(ids) < IVFPQ_MIN_VECTORS_TO_TRAIN:
                raise ValueError(f"IVF-PQ needs {IVFPQ_MIN_VECTORS_TO_TRAIN} vectors to train")
            index = _build_ivfpq(ids, vectors, dim)
            return cls(index, kind, generation, time.perf_counter() - started)
        inner: faiss.Index
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        elif kind == "flat":
            inner = faiss.IndexFlatIP(dim)
        else:
            raise ValueError(f"unknown index type {kind!r}; choose one of {INDEX_TYPES}")
        index = faiss.IndexIDMap2(inner)
        if len(ids):
            index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )
        return cls(index, kind, generation, time.perf_counter() - started)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k); missing results have id -1.

        IVF-PQ with `exact` set: the best IVFPQ_CANDIDATES by PQ code, re-scored with the exact
        vectors, so the scores are true cosines like the other kinds'."""
        k = max(1, min(k, self.count)) if self.count else 1
        if not self.count:
            q = len(queries)
            return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.kind != "ivfpq" or self.exact is None:
            return self.index.search(queries, k)
        _, candidates = self.index.search(queries, max(k, IVFPQ_CANDIDATES))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        found = np.full((len(queries), k), -1, np.int64)
        for row, (query, cand) in enumerate(zip(queries, candidates, strict=True)):
            cand = cand[cand >= 0]
            exact = self.exact(cand) @ query
            top = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(top)], found[row, : len(top)] = exact[top], cand[top]
        return scores, found

    def save(self, directory: Path) -> Path:
        """Write atomically (temp file, fsync, rename), then drop files of older generations."""
        final = directory / f"{INDEX_PREFIX}.{self.generation}.faiss"
        fd, tmp = _locked_temp_file(directory, final.name)
        try:
            self._write(tmp)
            os.replace(tmp, final)
        except (OSError, RuntimeError) as exc:
            tmp.unlink(missing_ok=True)
            if _disk_full(exc):
                raise DiskFull(directory) from None
            raise LibraryError(f"cannot write the vector index in {directory}: {exc}") from None
        finally:
            os.close(fd)
        sync_directory(directory)
        remove_leftovers(directory, self.generation)
        return final

    def _write(self, tmp: Path) -> None:
        faiss.write_index(self.index, str(tmp))
        fsync_path(tmp)

    def ids(self) -> np.ndarray:
        return index_ids(self.index)

    def updated(
        self,
        ids: np.ndarray,
        take: Callable[[np.ndarray], np.ndarray],
        dim: int,
        changed: np.ndarray,
        generation: int,
    ) -> "VectorIndex | None":
        """This index brought to `generation` in place, or None when rebuilding is better.

        `ids` are the library's now and `take(positions)` their vectors (only the added ones are
        read), `changed` the ids written since this index's generation (re-embedded files keep
        their id: they are removed and added again)."""
        have = self.ids()
        if not len(have) or self.index.d != dim:
            return None
        remove = have[~np.isin(have, ids) | np.isin(have, changed)]
        add = ~np.isin(ids, have) | np.isin(ids, changed)
        if len(remove) + int(add.sum()) > UPDATE_MAX_FRACTION * len(ids):
            return None
        if self.kind == "hnsw" and len(remove):
            return None
        if self.kind == "ivfpq" and self._outgrown(len(ids)):
            return None
        started = time.perf_counter()
        if len(remove):
            gone = np.ascontiguousarray(remove, dtype=np.int64)
            self.index.remove_ids(faiss.IDSelectorBatch(len(gone), faiss.swig_ptr(gone)))
        where = np.flatnonzero(add)
        for start in range(0, len(where), IVFPQ_ADD_CHUNK):
            rows = where[start : start + IVFPQ_ADD_CHUNK]
            self.index.add_with_ids(
                np.ascontiguousarray(take(rows), dtype=np.float32),
                np.ascontiguousarray(ids[rows], dtype=np.int64),
            )
        self.generation = generation
        self.build_seconds = time.perf_counter() - started
        return self

    def _outgrown(self, count: int) -> bool:
        """IVF-PQ trained for far fewer vectors than it would now hold: under half the lists a
        fresh build would make (~4x fewer vectors)."""
        lists = faiss.extract_index_ivf(self.index).nlist
        return 2 * lists < ivfpq_shape(count, self.index.d)[0]

    @classmethod
    def load_latest(cls, directory: Path, generation: int) -> "VectorIndex | None":
        """The newest readable saved index of `generation` or an older one (to update)."""
        older = sorted(
            (int(m.group(1)) for p in directory.iterdir() if (m := INDEX_FILE_RE.match(p.name))),
            reverse=True,
        )
        for found in older:
            if found > generation:
                continue
            if (index := cls.load(directory, found, cleanup=False)) is not None:
                return index
        return None

    @classmethod
    def load(cls, directory: Path, generation: int, cleanup: bool = True) -> "VectorIndex | None":
        """The saved index for exactly this generation, or None (missing, stale or damaged)."""
        path = directory / f"{INDEX_PREFIX}.{generation}.faiss"
        if not path.exists():
            return None
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            return None  # damaged: the caller rebuilds it from SQLite
        inner = inner_index(index)
        name = type(inner).__name__
        kind = "hnsw" if "HNSW" in name else "ivfpq" if "IVFPQ" in name else "flat"
        if kind == "hnsw":
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        if kind == "ivfpq":
            inner.nprobe = IVFPQ_NPROBE
        if cleanup:
            try:
                remove_leftovers(directory, generation)  # e.g. a writer killed before cleanup
            except OSError:
                pass  # a read-only library still answers queries
        return cls(index, kind, generation)


def _build_ivfpq(ids: np.ndarray, vectors: np.ndarray, dim: int):
    """IVF-PQ trained on a sample, then filled chunk by chunk (the vectors may be a memory map:
    no full copy is made)."""
    lists, m = ivfpq_shape(len(ids), dim)
    inner = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, m, 8, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train = min(len(ids), max(lists * IVFPQ_TRAIN_PER_LIST, 256 * IVFPQ_TRAIN_PER_LIST))
    sample = np.sort(rng.choice(len(ids), train, replace=False))  # in file order
    inner.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    inner.nprobe = IVFPQ_NPROBE
    for start in range(0, len(ids), IVFPQ_ADD_CHUNK):
        end = start + IVFPQ_ADD_CHUNK
        inner.add_with_ids(
            np.ascontiguousarray(vectors[start:end], dtype=np.float32),
            np.ascontiguousarray(ids[start:end], dtype=np.int64),
        )
    return inner


def exact_search(
    queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product search over a subset (e.g. --within a folder)."""
    if not len(ids):
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    scores = queries @ vectors.T
    k = min(k, len(ids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), ids[top]


def remove_leftovers(directory: Path, generation: int) -> None:
    """Index files of older generations, and temp files no live writer holds."""
    for old in directory.iterdir():
        m = INDEX_FILE_RE.match(old.name)
        if m and int(m.group(1)) < generation:
            old.unlink(missing_ok=True)
        elif INDEX_TMP_RE.match(old.name):
            with _TMP_LOCK:
                if is_abandoned(old):
                    old.unlink(missing_ok=True)  # left by a writer that was killed mid-write


def _locked_temp_file(directory: Path, name: str) -> tuple[int, Path]:
    """A new temp file for `name`, locked (held while writing: cleanup never removes a live
    writer's file). Unique: two threads (an API query and an index job) may save one generation.
    Another process's cleanup may see it between its creation and its lock, find it unlocked and
    remove it (or hold it for a moment): then the lock is not on the file at that path, and a
    new one is made."""
    for _ in range(5):
        with _TMP_LOCK:  # this process's own cleanup waits until it is locked
            fd, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            if _locked_in_place(fd, path):
                return fd, Path(path)
            os.close(fd)
    raise LibraryError(f"cannot write the vector index in {directory}: its temp files vanish")


def _locked_in_place(fd: int, path: str) -> bool:
    try:
        _lock(fd)
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except (BlockingIOError, FileNotFoundError):
        return False


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def is_abandoned(path: Path) -> bool:
    """Whether a temp file belongs to no live writer: no process holds its lock (without flock,
    on Windows: it is old). The one rule for `index` clean-up and `check`."""
    if fcntl is None:
        return _age_s(path) > STALE_TMP_S
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False  # renamed into place meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return getattr(exc, "errno", None) == errno.ENOSPC or "no space" in text or "errno=28" in text


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:  # another writer renamed its temp file meanwhile
        return 0.0


def mean_direction(vectors: np.ndarray) -> np.ndarray:
    """The unit direction of several query vectors' mean (a query by many images)."""
    mean = vectors.mean(axis=0)
    norm = np.linalg.norm(mean)
    if norm < 1e-6:
        raise BadQuery("the query images cancel out (their mean vector is zero)")
    return mean / norm
