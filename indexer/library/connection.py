"""Opening a library's database for writing: its directory made, WAL mode, migrations."""

import errno
import sqlite3
from pathlib import Path

import sqlite_utils

from indexer.errors import ReadOnlyLibrary
from indexer.library import schema


def make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise ReadOnlyLibrary(directory, exc.strerror or str(exc), "creating a library") from None


def connect(path: Path, directory: Path, timeout_s: float) -> sqlite_utils.Database:
    """A writable connection in WAL mode, migrated to the current schema."""
    conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False, isolation_level=None)
    try:
        db = sqlite_utils.Database(conn)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: consistent after any crash
        schema.migrate(db, directory)
        return db
    except BaseException:
        conn.close()
        raise
