"""fsck for a library: do the files on disk, the SQLite rows and the derived FAISS file agree?

`check_library` only reads (SQLite opened read-only); `repair_library` mends what can be mended
without the model: it drops rows of files that are gone, drops rows whose vector is damaged (the
next `dinosearch index` embeds them again), removes leftover temp and stale index files, and
rebuilds the FAISS file from SQLite.
"""

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from indexer.config import DB_NAME
from indexer.errors import ReadOnlyLibrary
from indexer.files import sha256_file
from indexer.library import layout, snapshot, vectorfile
from indexer.library.store import Store
from search import knn

VECTOR_ATOL = 1e-5  # FAISS stores float32 copies: equal to the blobs up to rounding

# Problem kinds, and whether --repair can mend them without the model.
REPAIRABLE = {
    "missing_file": True,  # row dropped
    "bad_vector": True,  # row dropped; the next index run embeds the file again
    "index_missing": True,  # rebuilt from SQLite
    "index_stale": True,
    "index_damaged": True,
    "index_mismatch": True,
    "stale_index_file": True,  # removed
    "temp_file": True,  # removed
    "changed_file": False,  # needs the model: re-run dinosearch index
    "changed_content": False,
    "integrity": False,  # SQLite itself is damaged: restore a backup or .recover
    "vectors_damaged": True,  # the vector file lost rows: those rows go (bad_vector), count fixed
    "bad_row": False,
}


@dataclass
class Problem:
    kind: str
    detail: str
    path: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class CheckReport:
    library: str
    images: int = 0
    failed: int = 0
    generation: int = 0
    index_generation: int | None = None
    deep: bool = False
    problems: list[Problem] = field(default_factory=list)
    repaired: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"library": self.library, "ok": self.ok, **asdict(self)}  # problems as dicts


@dataclass
class _Row:
    id: int
    path: str
    size: int | None
    mtime_ns: int | None
    hash: str | None
    status: str
    vector: bytes | None


def check_library(directory: str | Path, deep: bool = False) -> CheckReport:
    """Every disagreement between files, SQLite and the FAISS file; reads only."""
    directory = Path(directory).expanduser().absolute()
    report = CheckReport(str(directory), deep=deep)
    conn = snapshot.open_library(directory)
    try:
        for line in snapshot.integrity_problems(conn)[:20]:
            report.problems.append(Problem("integrity", f"SQLite integrity_check: {line}"))
        meta, column, found = snapshot.meta_and_images(conn)
    except sqlite3.DatabaseError as exc:
        report.problems.append(Problem("integrity", f"cannot read {DB_NAME}: {exc}"))
        return report
    finally:
        conn.close()
    report.generation = int(meta.get("generation") or 0)
    dim = _dim(meta)
    if column == "slot":
        space = _vector_map(directory, meta, dim or 0, report)
        rows = [_Row(r[0], r[1], r[2], r[3], r[4], r[5], _vector_bytes(space, r[6])) for r in found]
    else:
        rows = [_Row(*r) for r in found]
    report.images = sum(r.status == "ok" for r in rows)
    report.failed = sum(r.status == "failed" for r in rows)
    good = _check_rows(rows, dim, deep, report)
    _check_index(directory, report, good, dim)
    _check_leftovers(directory, report)
    return report


def _vector_map(directory: Path, meta: dict, dim: int, report: CheckReport) -> np.ndarray:
    """The committed rows of the vector file; what it lacks is reported (its rows get none)."""
    path = directory / meta.get(vectorfile.VECTOR_FILE_KEY, vectorfile.file_name(0))
    slots = int(meta.get(vectorfile.VECTOR_SLOTS_KEY) or 0)
    try:
        return vectorfile.read_map(path, slots, dim)
    except (OSError, ValueError) as exc:
        report.problems.append(Problem("vectors_damaged", str(exc), str(path)))
        held = path.stat().st_size // (4 * dim) if dim and path.exists() else 0
        return vectorfile.read_map(path, min(held, slots), dim) if held else np.zeros((0, dim))


def _vector_bytes(space: np.ndarray, slot: int | None) -> bytes | None:
    return space[slot].tobytes() if slot is not None and 0 <= slot < len(space) else None


def _dim(meta: dict) -> int | None:
    raw = meta.get("model")
    return int(json.loads(raw)["dim"]) if raw else None


def _check_rows(rows: list[_Row], dim: int | None, deep: bool, report: CheckReport) -> dict:
    """Checks each row against its file; returns {id: vector} of the rows that are sound."""
    good: dict[int, np.ndarray] = {}
    for row in rows:
        if row.status not in ("ok", "failed"):
            report.problems.append(Problem("bad_row", f"unknown status {row.status!r}", row.path))
            continue
        if not _check_file(row, deep, report) or row.status != "ok":
            continue
        vector = _vector(row, dim)
        if vector is None:
            size = 0 if row.vector is None else len(row.vector)
            report.problems.append(
                Problem(
                    "bad_vector",
                    f"status ok but its vector is missing, damaged or of the wrong length "
                    f"({size} bytes, expected {4 * (dim or 0)})",
                    row.path,
                )
            )
            continue
        good[row.id] = vector
    return good


def _check_file(row: _Row, deep: bool, report: CheckReport) -> bool:
    try:
        st = os.stat(row.path)
    except OSError as exc:
        report.problems.append(
            Problem("missing_file", f"file is gone ({exc.strerror or exc})", row.path)
        )
        return False
    if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
        report.problems.append(
            Problem(
                "changed_file",
                f"file changed since indexed (size {row.size} -> {st.st_size}, mtime "
                f"{row.mtime_ns} -> {st.st_mtime_ns}); re-run dinosearch index",
                row.path,
            )
        )
        return True
    if deep and row.hash and _sha256(row.path) != row.hash:
        report.problems.append(
            Problem(
                "changed_content",
                "content differs from its recorded SHA-256 though size and mtime match; "
                "re-run dinosearch index --retry-failed after touching the file",
                row.path,
            )
        )
    return True


def _sha256(path: str) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _vector(row: _Row, dim: int | None) -> np.ndarray | None:
    if row.vector is None or not dim or len(row.vector) != 4 * dim:
        return None
    vector = np.frombuffer(row.vector, dtype="<f4")
    if not np.all(np.isfinite(vector)) or abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
        return None
    return vector


def _check_index(directory: Path, report: CheckReport, good: dict, dim: int | None) -> None:
    files = {
        int(m.group(1)): p for p in directory.iterdir() if (m := layout.INDEX_FILE_RE.match(p.name))
    }
    for generation, path in sorted(files.items()):
        if generation != report.generation:
            report.problems.append(
                Problem(
                    "stale_index_file",
                    f"index file of generation {generation}, store is at {report.generation}",
                    str(path),
                )
            )
    current = files.get(report.generation)
    if current is None:
        report.index_generation = max(files) if files else None
        kind = "index_stale" if files else "index_missing"
        report.problems.append(
            Problem(kind, f"no index file for store generation {report.generation}")
        )
        return
    report.index_generation = report.generation
    _compare_index(current, report, good, dim)


def _compare_index(path: Path, report: CheckReport, good: dict, dim: int | None) -> None:
    try:
        index = faiss.read_index(str(path))
        ids = knn.index_ids(index)
        inner = knn.inner_index(index)
        if isinstance(inner, faiss.IndexIVF):  # PQ codes: only the ids can be compared
            vectors = None
        else:
            vectors = inner.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, 1))
    except (RuntimeError, AttributeError) as exc:
        report.problems.append(Problem("index_damaged", f"cannot read: {exc}", str(path)))
        return
    expected = set(good)
    found = set(ids.tolist())
    if found != expected or len(ids) != len(found):
        report.problems.append(
            Problem(
                "index_mismatch",
                f"index holds {len(ids)} vectors, SQLite {len(expected)} sound ones "
                f"({len(found - expected)} extra, {len(expected - found)} absent)",
                str(path),
            )
        )
        return
    if vectors is None:
        if index.d != dim:
            report.problems.append(
                Problem("index_mismatch", f"index is {index.d}-d, the library {dim}-d", str(path))
            )
        return
    if len(ids) and (vectors.shape[1] != dim or not _same_vectors(ids, vectors, good)):
        report.problems.append(
            Problem("index_mismatch", "index vectors differ from the SQLite ones", str(path))
        )


def _same_vectors(ids: np.ndarray, vectors: np.ndarray, good: dict) -> bool:
    stored = np.stack([good[int(i)] for i in ids])
    return bool(np.allclose(vectors, stored, atol=VECTOR_ATOL))


def _check_leftovers(directory: Path, report: CheckReport) -> None:
    for path in sorted(directory.iterdir()):
        if layout.INDEX_TMP_RE.match(path.name) and knn.is_abandoned(path):
            report.problems.append(
                Problem("temp_file", "temp file left by an interrupted index write", str(path))
            )


def repair_library(directory: str | Path, deep: bool = False) -> CheckReport:
    """Mend what can be mended without the model, then check again."""
    directory = Path(directory).expanduser().absolute()
    before = check_library(directory, deep)
    if any(p.kind == "integrity" for p in before.problems):
        return before  # never write into a damaged database
    fixable = [p for p in before.problems if REPAIRABLE.get(p.kind)]
    if fixable and (why := snapshot.read_only_reason(directory)):
        raise ReadOnlyLibrary(directory, why, "check --repair")
    if fixable:
        gone = [p.path for p in fixable if p.kind in ("missing_file", "bad_vector") and p.path]
        _drop_rows(directory, gone)
        if any(p.kind == "vectors_damaged" for p in fixable):
            _trim_vectors(directory)
        for p in fixable:
            if p.kind in ("temp_file", "stale_index_file") and p.path:
                Path(p.path).unlink(missing_ok=True)
        _rebuild_index(directory)
    after = check_library(directory, deep)
    after.repaired = [p for p in fixable if p.to_json() not in _jsons(after.problems)]
    return after


def _jsons(problems: list[Problem]) -> list[dict]:
    return [p.to_json() for p in problems]


def _drop_rows(directory: Path, paths: list[str]) -> None:
    if not paths:
        return
    store = Store.open(directory)
    try:
        store.apply_moves([], [], store.ids_for_paths(paths))  # one transaction, a new generation
    finally:
        store.close()


def _trim_vectors(directory: Path) -> None:
    store = Store.open(directory)
    try:
        store.trim_vector_slots()
    finally:
        store.close()


def _rebuild_index(directory: Path) -> None:
    """Write the FAISS file for the store's generation from SQLite, replacing whatever is there."""
    store = Store.open(directory)
    try:
        knn.build_all(store, store.get_meta("index_type") or "auto").save(directory)
    finally:
        store.close()
