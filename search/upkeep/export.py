"""The library as Parquet for other engines (Spark, DuckDB, pandas, vector databases).

Output: a directory of `part-NNNNN.parquet` files, one row per indexed image (status 'ok'):

    id          int64     the library's image id (stable across runs)
    path        string    absolute path as indexed
    size        int64     bytes
    mtime_ns    int64     modification time, ns since the epoch
    hash        string    SHA-256 of the file's bytes, hex
    width       int32     upright (EXIF orientation applied)
    height      int32
    format      string    Pillow's format name (JPEG, PNG, HEIF, ...)
    taken       string    EXIF capture time, ISO 8601 (+ zone if the camera wrote one), or null
    indexed_at  string    ISO 8601 UTC
    vector      fixed_size_list<float32>[dim]   L2-normalised CLS embedding
    keep        bool      in the default keep-list (`dups --keep-list`: not a duplicate, or
                          the file kept of its group), from the library's stored calibration;
                          null for every row when the library has none (run `dinosearch dups`)

Each file's schema metadata holds `dinosearch.model`, `dinosearch.dim` and `dinosearch.recipe`
(and `dinosearch.keep`: how the keep column was made, as JSON).
The directory is written under a temporary name beside DIR and renamed into place, so DIR is
either absent, the previous export, or complete.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import BadQuery, DinosearchError
from indexer.library.store import Store

ROWS_PER_CHUNK = 50_000  # rows read from SQLite and written as one row group (~80 MB at 384-d)
CHUNKS_PER_FILE = 20  # 1M rows per part file: big enough for engines, small enough to list
COLUMNS = "id, path, size, mtime_ns, hash, width, height, format, taken, indexed_at, slot"


@dataclass
class ExportSummary:
    directory: str
    rows: int
    files: int
    model: str
    dim: int
    bytes: int
    keep: dict | None = None  # the keep column's summary (kept, dropped, why), None: all null

    def to_json(self) -> dict:
        return self.__dict__.copy()

    def describe(self) -> str:
        """One line for humans."""
        return (
            f"exported {self.rows} images ({self.model}, {self.dim}-d) to "
            f"{self.directory} in {self.files} parquet files, {self.bytes / 1e6:.1f} MB; "
            + (
                f"keep column: {self.keep['kept']} kept, {self.keep['dropped']} duplicates out"
                if self.keep
                else "keep column empty (no stored calibration: run `dinosearch dups` once)"
            )
        )


def schema(dim: int, model: str, recipe: str, keep: dict | None = None):
    """The Arrow schema of an export (see the module docstring)."""
    import pyarrow as pa  # optional extra (dinosearch[ray])

    fields = [
        ("id", pa.int64()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("hash", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("taken", pa.string()),
        ("indexed_at", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)),
        ("keep", pa.bool_()),
    ]
    meta = {"dinosearch.model": model, "dinosearch.dim": str(dim), "dinosearch.recipe": recipe}
    meta["dinosearch.keep"] = json.dumps(keep)
    return pa.schema(fields, metadata=meta)


def _table(rows: list[tuple], space: np.ndarray, arrow_schema, dim: int, kept: set | None):
    """SQLite rows (COLUMNS order) and the vector file's map -> one Arrow table; `kept` the
    ids of the keep column (None: null)."""
    import pyarrow as pa  # optional extra (dinosearch[ray])

    columns = list(zip(*rows, strict=True)) if rows else [()] * 11
    flat = space[np.array(columns[10], dtype=np.int64)].reshape(-1)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
    arrays = [pa.array(col, arrow_schema.field(i).type) for i, col in enumerate(columns[:10])]
    keep = [None if kept is None else i in kept for i in columns[0]]
    return pa.Table.from_arrays([*arrays, vectors, pa.array(keep, pa.bool_())], schema=arrow_schema)


def _write_parts(
    store: Store, directory: Path, arrow_schema, dim: int, kept: set | None = None
) -> tuple[int, int]:
    """Write part files into directory; returns (rows, files)."""
    import pyarrow.parquet as pq  # optional extra

    rows = files = 0
    writer: Any = None  # a pyarrow ParquetWriter (untyped) from the first chunk on
    with store.snapshot():  # rows and vectors agree while a job writes
        space = store.vector_map()
        for number, chunk in enumerate(store.ok_rows_in_chunks(COLUMNS, ROWS_PER_CHUNK)):
            if number % CHUNKS_PER_FILE == 0:
                if writer:
                    writer.close()
                writer = pq.ParquetWriter(directory / f"part-{files:05d}.parquet", arrow_schema)
                files += 1
            writer.write_table(_table(chunk, space, arrow_schema, dim, kept))
            rows += len(chunk)
    if writer is None:  # an empty library still exports its schema
        writer = pq.ParquetWriter(directory / "part-00000.parquet", arrow_schema)
        files = 1
    writer.close()
    return rows, files


def _replace(tmp: Path, target: Path) -> None:
    """Move tmp into place as target; an existing export is swapped out, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def export_parquet(
    store: Store,
    directory: str | Path,
    overwrite: bool = False,
    keep: Callable[[], tuple[set[int], dict] | None] | None = None,
) -> ExportSummary:
    """Write the library's ok rows as Parquet under directory, atomically; `keep()` gives the
    keep column's ids and summary (or None: a null column)."""
    info = store.model()
    if info is None:
        raise BadQuery(f"library {store.directory} has no vectors yet: index a folder first")
    target = Path(directory).expanduser().absolute()
    if target.exists() and not overwrite:
        raise BadQuery(f"{target} exists: choose a new directory or pass --overwrite")
    kept, summary = (keep() if keep else None) or (None, None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        arrow_schema = schema(info.dim, info.id, info.recipe, summary)
        rows, files = _write_parts(store, tmp, arrow_schema, info.dim, kept)
        _replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DinosearchError(f"cannot write export to {target}: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in target.iterdir())
    return ExportSummary(str(target), rows, files, info.id, info.dim, size, summary)
