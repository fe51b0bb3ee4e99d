"""The library on disk: SQLite (via sqlite-utils) is the source of truth for files and vectors.

Every write goes through one Store in one process at a time (the indexing job), each batch in one
transaction, so a kill at any moment leaves the last committed batch and nothing half-written.
WAL mode lets readers (queries, the API) go on while a job writes. The vectors themselves live in
a memory-mapped file beside the database, committed through it (vectorfile.py).
"""

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import sqlite_utils

from indexer import config
from indexer.errors import DiskFull, LibraryError, ModelMismatch, NoLibrary, ReadOnlyLibrary
from indexer.library import compaction, connection, schema, vectorfile
from indexer.library.rows import ImageRow, Known, ModelInfo
from indexer.library.snapshot import connect_read_only, read_only_reason
from indexer.library.vectorfile import VECTOR_FILE_KEY, VECTOR_SLOTS_KEY, gather
from indexer.paths import folder_prefix

log = logging.getLogger(__name__)
VectorArray = np.ndarray  # (N, D) float32, rows L2-normalised
BUSY_TIMEOUT_S = 30  # how long a reader or writer waits for another's transaction
LIBRARY_ID_KEY = "library_id"  # meta: the id plans are bound to (Store.library_id)


class Store:
    def __init__(self, directory: Path, db: sqlite_utils.Database, read_only: str | None = None):
        self.directory, self.db = directory, db
        self.read_only = read_only  # why the library cannot be written; None: it can
        self._map: tuple | None = None  # ((path, slots, dim, size), memory map) of vector_map()

    @classmethod
    def open(cls, directory: str | Path, create: bool = False) -> "Store":
        """The library at `directory`; on read-only storage opened read-only (`read_only` says
        why), so every reading command works and every write raises ReadOnlyLibrary."""
        directory = Path(directory).expanduser().absolute()
        path = directory / config.DB_NAME
        if not path.exists():
            if not create:
                raise NoLibrary(
                    f"no library at {directory}: index a folder first (dinosearch index PATH), "
                    "or point --index / DINOSEARCH_INDEX at an existing library"
                )
            connection.make_directory(directory)
        if why := read_only_reason(directory):
            if not path.exists():
                raise ReadOnlyLibrary(directory, why, "creating a library")
            return cls._open_read_only(directory, why)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        error: sqlite3.DatabaseError
        while True:
            try:
                return cls(directory, connection.connect(path, directory, BUSY_TIMEOUT_S))
            except sqlite3.OperationalError as exc:
                # two processes making one new library: switching to WAL or migrating lost the
                # race to the other; try again and find its work done
                racing = "locked" in str(exc) or "already exists" in str(exc)
                if racing and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                error = exc
            except sqlite3.DatabaseError as exc:
                error = exc
            if compaction.out_of_space(directory):  # WAL's shared-memory file could not be made
                raise DiskFull(directory) from None
            raise LibraryError(f"cannot open library {path}: {error}") from None

    @classmethod
    def _open_read_only(cls, directory: Path, why: str) -> "Store":
        path = directory / config.DB_NAME
        db = sqlite_utils.Database(connect_read_only(path))
        try:
            current = schema.version(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise LibraryError(f"cannot open library {path}: {exc}") from None
        if current < len(schema.MIGRATIONS):
            db.close()
            raise ReadOnlyLibrary(directory, why, "upgrading it to this version of dinosearch")
        return cls(directory, db, why)

    def close(self) -> None:
        self.db.close()

    def require_writable(self, doing: str, way_out: str | None = None) -> None:
        """Refuse, before starting, a command that would write into a read-only library."""
        if self.read_only:
            raise ReadOnlyLibrary(self.directory, self.read_only, doing, way_out)

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction; a full disk becomes one readable error, nothing half-written."""
        self.require_writable("this command")
        try:
            with self.db.atomic():
                yield
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise DiskFull(self.directory) from None
            if "readonly" in str(exc):
                raise ReadOnlyLibrary(self.directory, str(exc), "this command") from None
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
        self.db.table("meta").upsert({"key": key, "value": value}, pk="key")

    def library_id(self, create: bool = True) -> str | None:
        """This library's stable id (meta `library_id`), made the first time a plan asks for it
        and kept for good: plans record it, so a plan acts only through the library it was made
        for. None: none yet and `create` is false, or the library is read-only."""
        found = self.get_meta(LIBRARY_ID_KEY)
        if found or self.read_only or not create:
            return found
        with self.transaction():  # two first askers: the first id stands
            self.db.execute(
                "insert or ignore into meta (key, value) values (?, ?)",
                [LIBRARY_ID_KEY, uuid.uuid4().hex],
            )
        return self.get_meta(LIBRARY_ID_KEY)

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
        if current.precision != info.precision:
            raise ModelMismatch(
                f"library {self.directory} holds {current.precision} vectors; cannot add "
                f"{info.precision} ones. Drop --dtype/--runtime to keep the library's own"
            )

    # --- reads ----------------------------------------------------------------------------------

    def known_under(self, roots: Iterable[str]) -> dict[str, Known]:
        """Rows whose path is one of roots or lies below one."""
        out: dict[str, Known] = {}
        cols = "id, path, size, mtime_ns, hash, status"
        for root in roots:
            root = os.path.abspath(root)
            prefix = folder_prefix(root)
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
        with self.db.atomic():  # rows and vector file from one snapshot
            query = "select * from images where status = 'ok' and hash in"
            for row in self._rows_in(query, hashes):
                out.setdefault(row["hash"], row)
            self._attach_vectors(out.values())
        return out

    def image(self, image_id: int) -> dict | None:
        """The row with its vector (bytes, or None), as `images_by_ids` gives them."""
        return self.images_by_ids([image_id]).get(image_id)

    def images_by_ids(self, ids: Iterable[int], columns: str = "*") -> dict[int, dict]:
        """Rows by id; `vector` may be among the columns (read from the vector file)."""
        names = [c.strip() for c in columns.split(",")]
        with_vector = "*" in names or "vector" in names
        sql_columns = ", ".join("slot" if c == "vector" else c for c in names)
        ids = [int(i) for i in ids]
        out: dict[int, dict] = {}
        with self.db.atomic():
            for row in self._rows_in(f"select {sql_columns} from images where id in", ids):
                out[row["id"]] = row
            if with_vector:
                self._attach_vectors(out.values())
        return out

    def _rows_in(self, query: str, values: list, chunk: int = 500):
        """Rows of `query ... in (values)`, 500 values per statement (SQLite's variable limit)."""
        for i in range(0, len(values), chunk):
            part = values[i : i + chunk]
            yield from self.db.query(f"{query} ({','.join('?' * len(part))})", part)

    def all_images(self) -> list[dict]:
        """Every row with its vector (bytes, or None), by id: for tests and benchmarks."""
        ids = [r[0] for r in self.db.execute("select id from images order by id")]
        found = self.images_by_ids(ids)
        return [found[i] for i in ids if i in found]

    def _attach_vectors(self, rows: Iterable[dict]) -> None:
        """Replace each row's `slot` by its `vector` bytes (None without one)."""
        rows = list(rows)
        if not rows:
            return
        space = self.vector_map()
        for row in rows:
            slot = row.pop("slot")
            row["vector"] = None if slot is None else space[slot].tobytes()

    def id_for_path(self, path: str) -> int | None:
        row = self.db.execute(
            "select id from images where path = ? and status = 'ok'", [os.path.abspath(path)]
        ).fetchone()
        return row[0] if row else None

    def ids_under(self, root: str) -> np.ndarray:
        root = os.path.abspath(root)
        prefix = folder_prefix(root)
        rows = self.db.execute(
            "select id from images where status = 'ok' and (path = ? or substr(path, 1, ?) = ?)",
            [root, len(prefix), prefix],
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self) -> tuple[np.ndarray, VectorArray]:
        """All ok vectors, ordered by id: (ids int64, vectors float32, read-only).

        When the rows' slots run in id order without gaps (a library written once, or just
        compacted) the vectors are a view of the memory map: no copy, nothing read until used.
        """
        ids, slots, space = self.vector_rows()
        return ids, gather(space, slots)

    def vector_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, slots, map) of all ok vectors, by id: vector i is map[slots[i]]; no copy."""
        with self.db.atomic():
            rows = self.db.execute(
                "select id, slot from images where status = 'ok' and slot is not null order by id"
            )
            pairs = np.fromiter(rows, dtype=[("id", np.int64), ("slot", np.int64)])
            space = self.vector_map()
        return pairs["id"].copy(), pairs["slot"].copy(), space

    def changed_since(self, generation: int) -> np.ndarray:
        """Ids of rows whose vector (or status) was written after `generation`."""
        rows = self.db.execute("select id from images where generation > ?", [generation])
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vector_slots(self) -> int:
        """Rows of the vector file committed so far (live or dead)."""
        return int(self.get_meta(VECTOR_SLOTS_KEY) or 0)

    def _vector_path(self) -> Path:
        return self.directory / (self.get_meta(VECTOR_FILE_KEY) or vectorfile.file_name(0))

    def _dim(self) -> int:
        info = self.model()
        return info.dim if info else 0

    def vector_map(self) -> np.ndarray:
        """The committed rows of the vector file (call inside a transaction: one snapshot).

        Kept while the file, its size and its committed length stay the same: a query's lookups
        do not reopen the map each time, and a file cut short is still caught."""
        path, slots, dim = self._vector_path(), self.vector_slots(), self._dim()
        try:
            key = (path, slots, dim, path.stat().st_size if slots else 0)
            if self._map is None or self._map[0] != key:
                self._map = (key, vectorfile.read_map(path, slots, dim))
        except (OSError, ValueError) as exc:
            raise self._damaged(exc) from None
        return self._map[1]

    def vectors_by_ids(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of ids, in order (a copy); an id without one gets zeros."""
        ids = [int(i) for i in ids]
        slot_of: dict[int, int] = {}
        with self.db.atomic():
            query = "select id, slot from images where slot is not null and id in"
            slot_of.update((r["id"], r["slot"]) for r in self._rows_in(query, ids))
            space = self.vector_map()
        out = np.zeros((len(ids), space.shape[1]), np.float32)
        found = [n for n, i in enumerate(ids) if i in slot_of]
        out[found] = space[[slot_of[ids[n]] for n in found]]
        return out

    def _damaged(self, exc: Exception) -> LibraryError:
        return LibraryError(
            f"the vectors of library {self.directory} are damaged ({exc}); "
            "`dinosearch check --repair` drops the rows without one, `dinosearch index` "
            "embeds their files again"
        )

    def stat_of(self, path: str) -> dict | None:
        """The row's id, status, hash, size, mtime_ns (no vector); None for a path not indexed."""
        query = "select id, status, hash, size, mtime_ns from images where path = ?"
        rows = list(self.db.query(query, [path]))
        return rows[0] if rows else None

    def ids_for_paths(self, paths: Iterable[str]) -> list[int]:
        query = "select id from images where path = ?"
        return [r[0] for p in paths for r in self.db.execute(query, [p]).fetchall()]

    @contextlib.contextmanager
    def snapshot(self):
        """Several reads that must agree (rows, meta and the vector file): one read transaction."""
        with self.db.atomic():
            yield

    def ok_rows_in_chunks(self, columns: str, size: int):
        """Tuples of `columns` of the ok rows with a vector, by id, `size` at a time (keyset
        pagination: flat memory); call inside `snapshot()` for one consistent view."""
        last = -1
        query = (
            f"select {columns} from images where status = 'ok' and slot is not null and id > ? "
            "order by id limit ?"
        )
        while rows := self.db.execute(query, [last, size]).fetchall():
            yield rows
            last = rows[-1][0]

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("select status, count(*) from images group by status").fetchall()
        return {status: n for status, n in rows}

    # --- writes ---------------------------------------------------------------------------------

    def write_rows(self, rows: list[ImageRow]) -> None:
        """Insert or replace rows (by path) in one transaction, their vectors appended first."""
        if not rows:
            return
        now = _now()
        records = [{**row.__dict__, "indexed_at": now} for row in rows]
        with self.transaction():
            self._hold_write_lock()
            self._store_vectors(records)
            self.db.table("images").upsert_all(records, pk="path", alter=False)
            self._bump()

    def _hold_write_lock(self) -> None:
        """Take SQLite's write lock now: the vector file is ours until the commit."""
        self.db.execute(
            "insert or ignore into meta (key, value) values (?, '0')", [VECTOR_SLOTS_KEY]
        )

    def _store_vectors(self, records: list[dict]) -> None:
        """Append the records' `vector` bytes to the file, durably; each record gets its `slot`.

        Call with the write lock held. Every record gets a slot key (None without a vector), so
        an upsert never leaves a path pointing at the vector of its previous content."""
        with_vector = [r for r in records if r.get("vector") is not None]
        committed, dim = self.vector_slots(), self._dim()
        written = self.generation + 1  # the generation this transaction's bump makes
        if with_vector:
            block = np.frombuffer(b"".join(r["vector"] for r in with_vector), dtype="<f4")
            try:
                vectorfile.append(self._vector_path(), committed, dim, block.reshape(-1, dim))
            except ValueError as exc:
                raise self._damaged(exc) from None
            self.set_meta(VECTOR_SLOTS_KEY, str(committed + len(with_vector)))
        slots = iter(range(committed, committed + len(with_vector)))
        for record in records:
            record["slot"] = next(slots) if record.pop("vector", None) is not None else None
            record["generation"] = written

    def trim_vector_slots(self) -> int:
        """After damage (`check --repair`): commit only the rows the vector file still holds.

        Rows pointing past them must be gone already; returns the new count."""
        with self.transaction():
            self._hold_write_lock()
            path, dim = self._vector_path(), self._dim()
            held = path.stat().st_size // (4 * dim) if dim and path.exists() else 0
            slots = min(held, self.vector_slots())
            self.set_meta(VECTOR_SLOTS_KEY, str(slots))
        return slots

    def compact_vectors(self, force: bool = False) -> bool:
        """Rewrite the live vectors into a new file once enough rows are dead (compaction.py)."""
        return compaction.compact(self, force)

    def dead_vector_slots(self) -> int:
        live = self.db.execute(
            "select count(distinct slot) from images where slot is not null"
        ).fetchone()[0]
        return self.vector_slots() - live

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
            self.db.table("calibration").upsert(record, pk="name")

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    # --- file actions (search/actions.py): rows follow files the user moved or removed ----------

    def image_by_path(self, path: str) -> dict | None:
        """The row with its vector (bytes, or None)."""
        with self.db.atomic():
            rows = list(self.db.query("select * from images where path = ?", [path]))
            self._attach_vectors(rows)
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
        record = {k: v for k, v in row.items() if k != "slot"}
        with self.transaction():
            self._hold_write_lock()
            self._store_vectors([record])
            self.db.table("images").upsert(record, pk="path", alter=False)
            self._bump()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
