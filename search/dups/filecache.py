"""What is measured from an image file, cached per version of the file."""

import os
import warnings
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import TypeVar

from indexer.decode import IMAGE_ERRORS

T = TypeVar("T")


def per_file_version(
    entries: int | None,
) -> Callable[[Callable[[str], T]], Callable[[str], T | None]]:
    """Decorate `measure(path)` to be cached by (path, size, mtime_ns), so a changed file is
    measured again (a long-running server never sees a stale result), keeping the last `entries`
    (None: all). The decorated function returns None for a file that cannot be read or decoded."""

    def decorate(measure: Callable[[str], T]) -> Callable[[str], T | None]:
        @lru_cache(maxsize=entries)
        def at_version(path: str, size: int, mtime_ns: int) -> T | None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # EXIF/ICC chatter from odd but decodable files
                    return measure(path)
            except IMAGE_ERRORS:
                return None

        @wraps(measure)
        def cached(path: str) -> T | None:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                return None
            return at_version(path, st.st_size, st.st_mtime_ns)

        return cached

    return decorate
