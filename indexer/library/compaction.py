"""Compaction of the vector file: slots of deleted and re-embedded rows are dead until the live
vectors are rewritten into a new file (the store's friend: it holds the store's write lock)."""

import contextlib
import errno
import logging
import shutil
from pathlib import Path

import numpy as np

from indexer.library import vectorfile
from indexer.library.vectorfile import VECTOR_FILE_KEY, VECTOR_SLOTS_KEY

log = logging.getLogger(__name__)
COMPACT_DEAD_FRACTION = 0.25  # rewrite the vector file once this share of its rows is dead
COMPACT_MIN_DEAD = 1024  # ... and at least this many (small libraries: never worth it)


def compact(store, force: bool = False) -> bool:
    """Rewrite the live vectors into a new file once enough rows are dead; True if it did.

    The new file is written and synced first, then one transaction points every row at its
    new slot and names the file; a kill before the commit leaves the old file in charge.
    The file before the previous one is removed once that commit is checkpointed (readers
    map a file only briefly). Without room for the new file it is skipped with a warning:
    the library stays as it was. The write lock is held while it runs (~15 GB at 10M)."""
    with store.transaction():
        store._hold_write_lock()
        dead = store.dead_vector_slots()
        total = store.vector_slots()
        if not force and (dead < COMPACT_MIN_DEAD or dead < COMPACT_DEAD_FRACTION * total):
            return False
        if dead == 0:
            return False
        old = store._vector_path()
        # in id order: afterwards `vectors()` is a view of the map again, not a copy
        slots = np.array(
            [
                r[0]
                for r in store.db.execute(
                    "select slot from images where slot is not null order by id"
                )
            ],
            dtype=np.int64,
        )
        space = store.vector_map()
        new = store.directory / vectorfile.file_name(vectorfile.file_number(old.name) + 1)
        step = 65536
        try:
            if out_of_space(store.directory, margin=2 * space[:1].nbytes * len(slots)):
                raise OSError(errno.ENOSPC, "not enough free space")
            vectorfile.write_new(
                new, (space[slots[i : i + step]] for i in range(0, len(slots), step))
            )
        except OSError as exc:
            new.unlink(missing_ok=True)
            log.warning("vector file not compacted (%s); the library is unchanged", exc)
            return False
        store.db.execute(
            "create temp table if not exists moved (old integer primary key, new integer)"
        )
        store.db.execute("delete from moved")
        store.db.conn.executemany(
            "insert into moved values (?, ?)", ((int(s), i) for i, s in enumerate(slots))
        )
        store.db.execute(
            "update images set slot = (select new from moved where old = images.slot) "
            "where slot is not null"
        )
        store.db.execute("delete from moved")
        store.set_meta(VECTOR_FILE_KEY, new.name)
        store.set_meta(VECTOR_SLOTS_KEY, str(len(slots)))
    # WAL commits are durable only once checkpointed (synchronous=NORMAL): until then a power
    # cut could bring back a database naming an older file, so keep it
    busy = store.db.execute("pragma wal_checkpoint(full)").fetchone()[0]
    if busy:
        return True
    keep = {new.name, old.name}
    for path in store.directory.iterdir():
        if vectorfile.FILE_RE.match(path.name) and path.name not in keep:
            with contextlib.suppress(OSError):  # still mapped (Windows): the next time
                path.unlink()
    return True


def out_of_space(directory: Path, margin: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(directory).free < margin
    except OSError:
        return False
