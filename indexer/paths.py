"""Whether a path lies under a folder: the one spelling of it.

Paths are compared as the strings they are (absolute, not resolved through symlinks: the path the
user sees), so `/photos/2019-old` is not under `/photos/2019`. A caller that must see through
symlinks or `..` (the web page's --root guard) resolves both sides first.
"""

import os
from collections.abc import Iterable


def folder_prefix(folder: str) -> str:
    """`folder` with one trailing separator: what every path inside it starts with."""
    return folder.rstrip(os.sep) + os.sep


def is_under(path: str, folder: str) -> bool:
    """`path` is `folder` itself or lies inside it."""
    return path == folder or path.startswith(folder_prefix(folder))


def under_any(path: str, folders: Iterable[str]) -> bool:
    """`path` is one of `folders` or lies inside one."""
    return any(is_under(path, f) for f in folders)
