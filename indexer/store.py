"""The library on disk: SQLite (via sqlite-utils) is the source of truth for files and vectors.

Every write goes through one Store in one process at a time (the indexing job), each batch in one
transaction, so a kill at any moment leaves the last committed batch and nothing half-written.
WAL mode lets readers (queries, the API) go on while a job writes.
"""

import contextlib
import datetime as dt
import errno
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from . import config, schema
from .errors import DiskFull, LibraryError, ModelMismatch, NoLibrary

VectorArray = np.ndarray  # (N, D) float32, rows L2-normalised
BUSY_TIMEOUT_S = 30  # how long a reader or writer waits for another's transaction


@dataclass(frozen=True)
class ModelInfo:
    id: str
    dim: int
    recipe: str  # Recipe.to_json()


@dataclass(frozen=True)
class Known:
    """What the library holds about one path."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str


@dataclass
class ImageRow:
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str = "ok"
    error: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken: str | None = None
    vector: bytes | None = None


class Store:
    def __init__(self, directory: Path, db: sqlite_utils.Database):
        self.directory, self.db = directory, db

    @classmethod
    def open(cls, directory: str | Path, create: bool = False) -> "Store":
        directory = Path(directory).expanduser().absolute()
        path = directory / config.DB_NAME
        if not path.exists():
            if not create:
                raise NoLibrary(
                    f"no library at {directory}: index a folder first (dinosearch index PATH), "
                    "or point --index / DINOSEARCH_INDEX at an existing library"
                )
            directory.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
            )
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: consistent after any crash
            schema.migrate(db)
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"cannot open library {path}: {exc}") from None
        return cls(directory, db)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction; a full disk becomes one readable error, nothing half-written."""
        try:
            with self.db.atomic():
                yield
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise DiskFull(self.directory) from None
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(self.directory) from None
            raise

    # --- metadata -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("select value from meta where key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    @property
    def generation(self) -> int:
        """Bumped by every write that changes the set of vectors; the FAISS file records it."""
        return int(self.get_meta("generation") or 0)

    def _bump(self) -> None:
        self.set_meta("generation", str(self.generation + 1))

    def model(self) -> ModelInfo | None:
        raw = self.get_meta("model")
        return ModelInfo(**json.loads(raw)) if raw else None

    def bind_model(self, info: ModelInfo) -> None:
        """Record the library's model, or refuse a different one."""
        current = self.model()
        if current is None:
            with self.transaction():
                self.set_meta("model", json.dumps(info.__dict__))
            return
        if current.id != info.id or current.dim != info.dim:
            raise ModelMismatch(
                f"library {self.directory} holds {current.id} vectors ({current.dim}-d); "
                f"cannot add {info.id} ({info.dim}-d). Use another --index for that model, "
                "or drop --model to keep using the library's own"
            )

    # --- reads ----------------------------------------------------------------------------------

    def known_under(self, roots: Iterable[str]) -> dict[str, Known]:
        """Rows whose path is one of roots or lies below one."""
        out: dict[str, Known] = {}
        cols = "id, path, size, mtime_ns, hash, status"
        for root in roots:
            root = os.path.abspath(root)
            prefix = root.rstrip(os.sep) + os.sep
            rows = self.db.execute(
                f"select {cols} from images where path = ? or substr(path, 1, ?) = ?",
                [root, len(prefix), prefix],
            )
            out.update((r[1], Known(*r)) for r in rows)
        return out

    def rows_with_hashes(self, hashes: Iterable[str]) -> dict[str, dict]:
        """One ok row (with its vector) for each content hash the library already has."""
        out: dict[str, dict] = {}
        hashes = list(set(hashes))
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(
                f"select * from images where status = 'ok' and hash in ({marks})", chunk
            ):
                out.setdefault(row["hash"], row)
        return out

    def image(self, image_id: int) -> dict | None:
        rows = list(self.db.query("select * from images where id = ?", [image_id]))
        return rows[0] if rows else None

    def images_by_ids(self, ids: Iterable[int], columns: str = "*") -> dict[int, dict]:
        ids = [int(i) for i in ids]
        out: dict[int, dict] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select {columns} from images where id in ({marks})", chunk):
                out[row["id"]] = row
        return out

    def id_for_path(self, path: str) -> int | None:
        row = self.db.execute(
            "select id from images where path = ? and status = 'ok'", [os.path.abspath(path)]
        ).fetchone()
        return row[0] if row else None

    def ids_under(self, root: str) -> np.ndarray:
        root = os.path.abspath(root)
        prefix = root.rstrip(os.sep) + os.sep
        rows = self.db.execute(
            "select id from images where status = 'ok' and (path = ? or substr(path, 1, ?) = ?)",
            [root, len(prefix), prefix],
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self) -> tuple[np.ndarray, VectorArray]:
        """All ok vectors, ordered by id: (ids int64, vectors float32)."""
        info = self.model()
        dim = info.dim if info else 0
        rows = self.db.execute(
            "select id, vector from images where status = 'ok' order by id"
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return ids, vecs.reshape(len(rows), dim)

    def vectors_snapshot(self) -> tuple[int, np.ndarray, VectorArray]:
        """(generation, ids, vectors) read in one transaction, so they agree while a job writes."""
        with self.db.atomic():
            return (self.generation, *self.vectors())

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("select status, count(*) from images group by status").fetchall()
        return {status: n for status, n in rows}

    def failures(self) -> list[dict]:
        return list(
            self.db.query("select path, error from images where status = 'failed' order by path")
        )

    # --- writes ---------------------------------------------------------------------------------

    def write_rows(self, rows: list[ImageRow]) -> None:
        """Insert or replace rows (by path) in one transaction."""
        if not rows:
            return
        now = _now()
        records = [{**row.__dict__, "indexed_at": now} for row in rows]
        with self.transaction():
            self.db["images"].upsert_all(records, pk="path", alter=False)
            self._bump()

    def apply_moves(
        self,
        moves: list[tuple[int, str, int, int]],
        touches: list[tuple[int, int, int]],
        removals: list[int],
    ) -> None:
        """Moved rows get new paths, touched rows new stat, removed rows go; one transaction."""
        if not (moves or touches or removals):
            return
        with self.transaction():
            for image_id, path, size, mtime_ns in moves:
                self.db.execute(
                    "update images set path = ?, size = ?, mtime_ns = ? where id = ?",
                    [path, size, mtime_ns, image_id],
                )
            for image_id, size, mtime_ns in touches:
                self.db.execute(
                    "update images set size = ?, mtime_ns = ? where id = ?",
                    [size, mtime_ns, image_id],
                )
            for i in range(0, len(removals), 500):
                chunk = removals[i : i + 500]
                self.db.execute(
                    f"delete from images where id in ({','.join('?' * len(chunk))})", chunk
                )
            self._bump()

    # --- calibration ----------------------------------------------------------------------------

    def calibration(self) -> dict | None:
        rows = list(self.db.query("select * from calibration where name = 'current'"))
        return rows[0] if rows else None

    def save_calibration(
        self, model: str, images: int, params: dict, whitening: bytes | None
    ) -> None:
        record = {
            "name": "current",
            "model": model,
            "images": images,
            "created": _now(),
            "params": json.dumps(params),
            "whitening": whitening,
        }
        with self.transaction():
            self.db["calibration"].upsert(record, pk="name")

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    # --- file actions (search/actions.py): rows follow files the user moved or removed ----------

    def image_by_path(self, path: str) -> dict | None:
        rows = list(self.db.query("select * from images where path = ?", [path]))
        return rows[0] if rows else None

    def move_image(self, old: str, new: str, size: int, mtime_ns: int) -> None:
        """The row of `old` now describes `new` (a file moved without changing its content)."""
        with self.transaction():
            self.db.execute("delete from images where path = ?", [new])
            self.db.execute(
                "update images set path = ?, size = ?, mtime_ns = ? where path = ?",
                [new, size, mtime_ns, old],
            )
            self._bump()

    def touch_image(self, path: str, size: int, mtime_ns: int) -> None:
        with self.transaction():
            self.db.execute(
                "update images set size = ?, mtime_ns = ? where path = ?", [size, mtime_ns, path]
            )

    def remove_image(self, path: str) -> None:
        with self.transaction():
            self.db.execute("delete from images where path = ?", [path])
            self._bump()

    def restore_image(self, row: dict) -> None:
        """Put back a row removed earlier (same vector: no re-embedding)."""
        with self.transaction():
            self.db["images"].upsert(row, pk="path", alter=False)
            self._bump()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
