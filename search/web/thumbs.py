"""The page's thumbnail cache in the library (thumbnail_jpeg in indexer/decode.py renders them)."""

from pathlib import Path

from indexer import atomic
from indexer.decode import thumbnail_jpeg

THUMB_DIR = "thumbs"  # under the library directory; derived data, safe to delete
THUMB_SIZES_PX = (64, 128, 256, 512, 1024)  # sizes are snapped up to one of these: a bounded cache


def snap_size(size: int) -> int:
    """The smallest cached size that is at least `size` (or the largest one)."""
    return next((s for s in THUMB_SIZES_PX if s >= size), THUMB_SIZES_PX[-1])


def cache_path(library: Path, content_hash: str, size: int) -> Path:
    """Keyed by content hash: a moved file keeps its thumbnail, a changed one gets a new one."""
    return library / THUMB_DIR / content_hash[:2] / f"{content_hash}-{size}.jpg"


def cached_or_rendered(
    library: Path, content_hash: str, path: str, size: int, max_pixels: int | None
) -> Path | bytes:
    """The cached thumbnail's file, or the JPEG just rendered (and cached for the next time)."""
    cached = cache_path(library, content_hash, snap_size(size))
    if cached.is_file():
        return cached
    data = thumbnail_jpeg(path, snap_size(size), max_pixels)
    store(cached, data)
    return data


def store(target: Path, data: bytes) -> None:
    """Write atomically: concurrent requests for one thumbnail never see half a file."""
    atomic.write_bytes(target, data, parents=True, durable=False)  # a cache: made again
