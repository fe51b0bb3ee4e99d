"""The library's vectors: one append-only file of raw float32 rows, memory-mapped to read.

SQLite stays the commit point. A row in `images` names its vector by `slot` (its row number in
the file), and `meta.vector_slots` says how many rows of the file are committed. A writer holds
SQLite's write lock, cuts the file back to the committed length (dropping what a killed batch
appended), appends, fsyncs, and only then commits the rows that point into the new part along
with the new length. A kill at any moment therefore leaves the last committed batch, and
readers never see a slot beyond what is on disk.

Why not blobs in SQLite: at 1M images the blobs were 70 % of the database, every metadata scan
paged through them, and loading all vectors built one Python object per row (3.2 GB peak for
1.5 GB of vectors); bench/results/scale_store.md. A memory map costs nothing to open and shares
the page cache with whatever reads it next (FAISS, dups).

Slots of deleted or re-embedded rows are dead until `Store.compact_vectors` rewrites the live
ones into a new file (named in `meta.vector_file`) and drops the file before the previous one.
"""

import os
import re
from pathlib import Path

import numpy as np

from indexer.atomic import sync_directory

DTYPE = np.dtype("<f4")
VECTOR_FILE_KEY = "vector_file"  # meta: the vector file in charge
VECTOR_SLOTS_KEY = "vector_slots"  # meta: its committed rows
FILE_RE = re.compile(r"^vectors-(\d+)\.f32$")


def file_name(number: int) -> str:
    return f"vectors-{number}.f32"


def file_number(name: str) -> int:
    match = FILE_RE.match(name)
    return int(match.group(1)) if match else 0


def read_map(path: Path, slots: int, dim: int) -> np.ndarray:
    """The first `slots` rows of the file, memory-mapped read-only (an empty array for none).

    Raises ValueError when the file holds fewer rows than that: the library is damaged."""
    if slots == 0 or dim == 0:
        return np.zeros((0, dim), DTYPE)
    size = path.stat().st_size if path.exists() else 0
    if size < slots * dim * DTYPE.itemsize:
        raise ValueError(
            f"{path.name} holds {size // (dim * DTYPE.itemsize)} vectors, the library commits "
            f"{slots}"
        )
    return np.memmap(path, dtype=DTYPE, mode="r", shape=(slots, dim))


def append(path: Path, committed: int, dim: int, vectors: np.ndarray) -> None:
    """Write `vectors` at row `committed` (cutting off anything after it first), durably."""
    row_bytes = dim * DTYPE.itemsize
    data = np.ascontiguousarray(vectors, dtype=DTYPE)
    if data.shape[1:] != (dim,):
        raise ValueError(f"expected {dim}-d vectors, got shape {data.shape}")
    created = not path.exists()
    if created and committed:
        raise ValueError(f"{path.name} is missing; the library commits {committed} vectors")
    with open(path, "r+b" if not created else "w+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size < committed * row_bytes:  # never pad lost rows with zeros
            raise ValueError(
                f"{path.name} holds {size // row_bytes} vectors, the library commits {committed}"
            )
        f.truncate(committed * row_bytes)
        f.seek(committed * row_bytes)
        f.write(data.data.cast("B"))  # the rows' bytes, no copy
        f.flush()
        os.fsync(f.fileno())
    if created:
        sync_directory(path.parent)


def write_new(path: Path, chunks) -> int:
    """A fresh file from an iterable of (n, dim) arrays, durably; returns the rows written."""
    rows = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=DTYPE).data.cast("B"))
            rows += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    sync_directory(path.parent)
    return rows


def gather(space: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """space[slots]: a read-only view when the slots run without gaps, else a copy."""
    if len(slots) and slots[-1] - slots[0] == len(slots) - 1 and _ascending(slots):
        return np.asarray(space[slots[0] : slots[-1] + 1])
    return np.asarray(space[slots])


def _ascending(values: np.ndarray) -> bool:
    return bool(np.all(values[1:] > values[:-1]))
