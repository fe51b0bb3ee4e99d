"""Atomic writes: the one way a file is replaced whole.

The new content goes to a temp file beside the target, is flushed to disk (fsync), then renamed
over the target (os.replace), and the folder's entry is synced: a reader sees the old file or the
new one, never half of either, and a crash leaves at most a `.NAME.*.tmp` beside it. On an error
the temp file is removed and the target is untouched.
"""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def sync_directory(directory: str | Path) -> None:
    """Make a file's creation, rename or removal durable (skipped where a directory cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _new_temp(target: Path) -> Path:
    """A new empty file beside `target`, made with the permissions a plain open() gives (the
    umask's; mkstemp's would be 0600)."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(target: str | Path, parents: bool = False, durable: bool = True) -> Iterator[Path]:
    """A temp path beside `target` for a writer that takes a file name (an exporter, a
    quantizer); when the block ends without an error it is synced and renamed onto `target`.
    `parents`: make the target's folder first if it is missing; `durable` False: no fsync (a
    cache that is made again if a crash loses it: still never seen half-written)."""
    target = Path(os.path.abspath(target))
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(target)
    try:
        yield tmp
        if durable:
            fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        sync_directory(target.parent)


@contextmanager
def atomic_open(
    target: str | Path,
    mode: str = "w",
    parents: bool = False,
    durable: bool = True,
    **kwargs: Any,
) -> Iterator[IO[Any]]:
    """`open(target, mode, **kwargs)` whose content replaces `target` only once it is all
    written (mode "w" or "wb")."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(target, parents, durable) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def write_bytes(
    target: str | Path, data: bytes, parents: bool = False, durable: bool = True
) -> None:
    with atomic_open(target, "wb", parents, durable) as f:
        f.write(data)
