"""Reading a library without ever writing to it: on read-only media, and for `check`, which must
see the files exactly as a crash left them (no migration, no WAL recovery by a writer)."""

import contextlib
import os
import sqlite3
from pathlib import Path

from indexer import config
from indexer.errors import LibraryError, NoLibrary

BUSY_TIMEOUT_S = 30  # how long a reader waits for a writer's transaction


def read_only_reason(directory: Path) -> str | None:
    """Why the library directory cannot be written (read-only media, permissions), else None;
    asks the system, writes nothing."""
    with contextlib.suppress(OSError, AttributeError):  # no statvfs (Windows)
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "read-only file system"
    for target in (directory, directory / config.DB_NAME):
        if target.exists() and not os.access(target, os.W_OK):
            return f"no write permission on {target}"
    return None


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes: `mode=ro`, or `immutable=1` where WAL mode's shared-memory
    file cannot be made (a read-only directory the library was closed cleanly in)."""
    wal = path.with_name(path.name + "-wal")
    failure: sqlite3.Error | None = None
    for flags in ("mode=ro", "immutable=1"):
        if flags == "immutable=1" and wal.exists() and wal.stat().st_size:
            # immutable would ignore the commits still in the log: never answer from stale data
            raise LibraryError(
                f"cannot open library {path} read-only ({failure}): its log {wal.name} holds "
                "commits only a writable copy can fold in; open the library once where it can "
                "be written"
            )
        conn = sqlite3.connect(
            f"{path.as_uri()}?{flags}",
            uri=True,
            timeout=BUSY_TIMEOUT_S,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            conn.execute("select count(*) from sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:  # e.g. WAL's -shm file cannot be made
            conn.close()
            failure = exc
        except sqlite3.DatabaseError:
            return conn  # not a database, or damaged: the caller's first query says so
    raise LibraryError(f"cannot open library {path} read-only: {failure}")


def open_library(directory: Path) -> sqlite3.Connection:
    """A read-only connection to the library at `directory` (also on read-only media)."""
    path = directory / config.DB_NAME
    if not path.exists():
        raise NoLibrary(f"no library at {directory}: nothing to check")
    return connect_read_only(path)


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's own integrity check: [] when the database is sound."""
    lines = [r[0] for r in conn.execute("pragma integrity_check").fetchall()]
    return [] if lines == ["ok"] else lines


def meta_and_images(conn: sqlite3.Connection) -> tuple[dict, str, list[tuple]]:
    """(meta, column, rows) from one snapshot, so the vector file and the rows agree even while
    an index job commits or compacts. Rows are (id, path, size, mtime_ns, hash, status, x) by
    id, where x is the `slot` in the vector file, or the `vector` blob itself in a library not
    opened since vectors moved out of SQLite (schema m004): `column` says which."""
    conn.execute("begin")
    try:
        meta = dict(conn.execute("select key, value from meta").fetchall())
        columns = {r[1] for r in conn.execute("pragma table_info(images)")}
        column = "slot" if "slot" in columns else "vector"
        query = f"select id, path, size, mtime_ns, hash, status, {column} from images order by id"
        return meta, column, conn.execute(query).fetchall()
    finally:
        conn.execute("commit")
