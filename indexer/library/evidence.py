"""The `evidence` table: each content's pixel evidence (indexer/evidence.py), by content hash.

Written at index time beside the vectors; a library from before the table (or rows embedded on a
Ray cluster) gets its evidence from the next `dups`, which measures the files that lack it and
stores what it measured, so the run after decodes nothing.
"""

from collections.abc import Iterable

import numpy as np

from indexer.evidence import Evidence
from indexer.library.store import Store

COLUMNS = "hash, thumb_w, thumb_h, thumb, greyscale, info_bytes, periodicity, texture, looks, tint"
LOAD_CHUNK = 900  # hashes per query (SQLite's host-parameter limit is 999 on old builds)


def write(store: Store, measured: Iterable[tuple[str, Evidence]]) -> None:
    """Store (hash, evidence) pairs in one transaction; a hash measured before is replaced."""
    records = [ev.to_record(digest) for digest, ev in measured]
    if not records:
        return
    with store.transaction():
        store.db.table("evidence").upsert_all(records, pk="hash", alter=False)


def write_tints(store: Store, tints: Iterable[tuple[str, np.ndarray]]) -> None:
    """Store the colours of contents whose evidence was stored before they were kept."""
    values = [(colours.tobytes(), digest) for digest, colours in tints]
    if values:
        with store.transaction():
            store.db.conn.executemany("update evidence set tint = ? where hash = ?", values)


def load(store: Store, hashes: Iterable[str]) -> dict[str, Evidence]:
    """The stored evidence of these contents (those that have none are left out)."""
    wanted = sorted({h for h in hashes if h})
    out: dict[str, Evidence] = {}
    with store.snapshot():
        for start in range(0, len(wanted), LOAD_CHUNK):
            chunk = wanted[start : start + LOAD_CHUNK]
            marks = ",".join("?" * len(chunk))
            cursor = store.db.execute(
                f"select {COLUMNS} from evidence where hash in ({marks})", chunk
            )
            names = [d[0] for d in cursor.description]
            for values in cursor.fetchall():
                row = dict(zip(names, values, strict=True))
                out[row["hash"]] = Evidence.from_record(row)
    return out


def count(store: Store) -> int:
    """Contents of ok rows that have evidence stored."""
    query = (
        "select count(distinct i.hash) from images i join evidence e on e.hash = i.hash "
        "where i.status = 'ok'"
    )
    return int(store.db.execute(query).fetchone()[0])
