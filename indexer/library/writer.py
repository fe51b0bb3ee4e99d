"""One writer per library: `index`, `apply`, `undo`, `check --repair` and the page's jobs take a
lock on `library.db.writer` before they change anything; a second writer waits (`--wait`) or
stops at once with one line saying who holds the library and since when.

The lock is an flock(2) on the file, so it dies with its holder (a killed process leaves no
stale lock) and two threads of one server conflict like two processes do (each takes its own
open file description). The holder writes who it is into the file; that text is only read while
the lock is held, so a stale one is never believed.
"""

import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from indexer.config import DB_NAME
from indexer.errors import LibraryBusy

LOCK_NAME = f"{DB_NAME}.writer"
POLL_S = 0.25


def lock_path(directory: Path) -> Path:
    return Path(directory) / LOCK_NAME


@contextmanager
def writing(
    directory: Path,
    doing: str,
    wait: float | None = 0.0,
    on_wait: Callable[[dict], None] | None = None,
) -> Iterator[None]:
    """Hold the library's writer lock for `doing` (e.g. "index ~/Pictures").

    wait: 0 = fail at once with LibraryBusy, None = wait as long as it takes, else seconds.
    on_wait(holder) is called once when we start waiting. A library on read-only media (the
    lock file cannot be made) is not locked: its own writes are refused with their own line.
    """
    fd = _open(Path(directory))
    if fd is None:
        yield
        return
    try:
        _acquire(fd, Path(directory), wait, on_wait)
        _record(fd, doing)
        yield
    finally:
        os.close(fd)  # releases the flock


def holder(directory: Path) -> dict | None:
    """Who holds the library's writer lock now, or None (also when it is free)."""
    fd = _open(Path(directory), create=False)
    if fd is None:
        return None
    try:
        if _try_lock(fd):
            return None
        return _read(fd)
    finally:
        os.close(fd)


def describe(directory: Path, who: dict | None) -> str:
    """The one line a second writer is told."""
    if not who:
        return f"library {directory} is being written by another process; try again shortly"
    since = who.get("since", "?")
    where = "" if who.get("host") in (None, socket.gethostname()) else f" on {who['host']}"
    same = " (this process)" if who.get("pid") == os.getpid() else ""
    return (
        f"library {directory} is busy: pid {who.get('pid', '?')}{where}{same} "
        f"({who.get('doing', '?')}) has been writing it since {since}; "
        "wait for it to finish, or re-run with --wait"
    )


def _open(directory: Path, create: bool = True) -> int | None:
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        return os.open(lock_path(directory), flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return None
        raise


def _try_lock(fd: int) -> bool:
    try:
        import fcntl  # POSIX only; on Windows the library is not locked
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _acquire(fd: int, directory: Path, wait: float | None, on_wait) -> None:
    if _try_lock(fd):
        return
    if wait is not None and wait <= 0:
        raise LibraryBusy(describe(directory, _read(fd)))
    if on_wait:
        on_wait(_read(fd) or {})
    deadline = None if wait is None else time.monotonic() + wait
    while not _try_lock(fd):
        if deadline is not None and time.monotonic() >= deadline:
            raise LibraryBusy(describe(directory, _read(fd)))
        time.sleep(POLL_S)


def _record(fd: int, doing: str) -> None:
    who = {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "host": socket.gethostname(),
        "doing": doing,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
        "since": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    data = json.dumps(who).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data else None
    except (OSError, ValueError):
        return None
