"""Vectors -> neighbours: builds the FAISS index, saves it atomically reloads it.

The FAISS file is derived data: ``vectors.<generation>.faiss`` reflects the store generation in its
name, so a stale or half-written file is never mistaken for a current one and can always be rebuilt.
"""

import errno
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.config import INDEX_PREFIX
from indexer.errors import DiskFull, LibraryError

# Exact search below this many vectors: one query over 200k x 768 floats is ~10 ms on 2 cores, and
# exact is what users trust. Above it HNSW (graph search, recall@10 >= 0.95 as measured in bench/).
EXACT_MAX_VECTORS = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# recall@10 at 1M realistic vectors: 0.941 at 64, 0.979 at 128 (p50 1.8 ms on 2 cores); 100k: 0.999
HNSW_EF_SEARCH = 128
INDEX_TYPES = ("auto", "flat", "hnsw")
FILE_RE = re.compile(rf"^{INDEX_PREFIX}\.(\d+)\.faiss$")
TMP_RE = re.compile(rf"^\.{INDEX_PREFIX}\.\d+\.faiss\..*\.tmp$")
STALE_TMP_S = 600  # a temp file this old belongs to no live writer


def choose_index_type(count: int, dim: int, requested: str = "auto") -> str:
    """The index for a library of `count` vectors: exact when that is fast enough, else HNSW."""
    if requested != "auto":
        return requested
    return "flat" if count <= EXACT_MAX_VECTORS else "hnsw"


@dataclass
class VectorIndex:
    index: object  # a faiss.IndexIDMap2 around the chosen index
    kind: str
    generation: int
    build_seconds: float = 0.0

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, kind: str, generation: int
    ) -> "VectorIndex":
        import faiss

        started = time.perf_counter()
        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
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
        """(scores, ids), each (Q, k); missing results have id -1."""
        k = max(1, min(k, self.count)) if self.count else 1
        if not self.count:
            q = len(queries)
            return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, directory: Path) -> Path:
        """Write atomically (temp file, fsync, rename), then drop files of older generations."""
        final = directory / f"{INDEX_PREFIX}.{self.generation}.faiss"
        # A unique temp name: two threads (an API query and an index job) may save one generation.
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.", suffix=".tmp")
        tmp = Path(name)
        try:
            _lock(fd)  # held while writing: cleanup never removes a live writer's file
            self._write(tmp)
            os.replace(tmp, final)
        except (OSError, RuntimeError) as exc:
            tmp.unlink(missing_ok=True)
            if _disk_full(exc):
                raise DiskFull(directory) from None
            raise LibraryError(f"cannot write the vector index in {directory}: {exc}") from None
        finally:
            os.close(fd)
        _fsync_dir(directory)
        remove_leftovers(directory, self.generation)
        return final

    def _write(self, tmp: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())

    @classmethod
    def load(cls, directory: Path, generation: int) -> "VectorIndex | None":
        """The saved index for exactly this generation, or None (missing, stale or damaged)."""
        import faiss

        path = directory / f"{INDEX_PREFIX}.{generation}.faiss"
        if not path.exists():
            return None
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            return None  # damaged: the caller rebuilds it from SQLite
        inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
        kind = "hnsw" if "HNSW" in type(inner).__name__ else "flat"
        if kind == "hnsw":
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        try:
            remove_leftovers(directory, generation)  # e.g. after a writer killed before cleanup
        except OSError:
            pass  # a read-only library still answers queries
        return cls(index, kind, generation)


def saved_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if FILE_RE.match(p.name))


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
        m = FILE_RE.match(old.name)
        if m and int(m.group(1)) < generation:
            old.unlink(missing_ok=True)
        elif TMP_RE.match(old.name) and _abandoned(old):
            old.unlink(missing_ok=True)  # left by a writer that was killed mid-write


def _lock(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows: cleanup falls back to the file's age
        pass


def _abandoned(path: Path) -> bool:
    """True when no process holds the temp file's lock (or, without flock, when it is old)."""
    try:
        import fcntl
    except ImportError:
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


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
