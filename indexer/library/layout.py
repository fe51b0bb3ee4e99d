"""The files of a library directory: the database, the vector files, the derived FAISS files
(search/knn.py writes them) and their temp files."""

import re
from pathlib import Path

from indexer.config import DB_NAME, INDEX_PREFIX
from indexer.library import vectorfile

INDEX_FILE_RE = re.compile(rf"^{INDEX_PREFIX}\.(\d+)\.faiss$")  # vectors.<generation>.faiss
INDEX_TMP_RE = re.compile(rf"^\.{INDEX_PREFIX}\.\d+\.faiss\..*\.tmp$")  # one being written
ROTATED_VIEWS = "rotated-views.npz"  # dups --rotations: turned views by content hash (derived)
# one being written: by indexer/atomic.py (.rotated-views.npz.*.tmp), or by a dinosearch before it
VIEWS_TMP_RE = re.compile(rf"^\.(views-.*\.npz|{re.escape(ROTATED_VIEWS)}\..*\.tmp)$")


def is_library_file(name: str) -> bool:
    """The database (and its WAL files), a vector file, a FAISS file or its temp file."""
    patterns = (vectorfile.FILE_RE, INDEX_FILE_RE, INDEX_TMP_RE, VIEWS_TMP_RE)
    return name.startswith(DB_NAME) or name == ROTATED_VIEWS or any(r.match(name) for r in patterns)


def outermost_missing(directory: Path) -> Path | None:
    """The outermost of `directory` and its parents that does not exist yet; None if it does."""
    missing = None
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def remove_library(directory: Path, made: Path | None) -> None:
    """Remove a library's files, and the empty folders up to `made` (the outermost folder made
    for it; None: none were)."""
    for path in directory.iterdir():
        if is_library_file(path.name):
            path.unlink(missing_ok=True)
    for folder in (directory, *directory.parents) if made else ():
        if any(folder.iterdir()):
            break
        folder.rmdir()
        if folder == made:
            break
