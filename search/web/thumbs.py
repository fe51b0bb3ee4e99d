"""JPEG thumbnails of indexed images, upright (EXIF orientation applied), cached in the library."""

import io
import os
import tempfile
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from indexer.decode import check_pixels, to_rgb
from indexer.errors import DecompressionBomb, ImageError

THUMB_DIR = "thumbs"  # under the library directory; derived data, safe to delete
THUMB_SIZES_PX = (64, 128, 256, 512, 1024)  # sizes are snapped up to one of these: a bounded cache
JPEG_QUALITY = 85


def snap_size(size: int) -> int:
    """The smallest cached size that is at least `size` (or the largest one)."""
    return next((s for s in THUMB_SIZES_PX if s >= size), THUMB_SIZES_PX[-1])


def cache_path(library: Path, content_hash: str, size: int) -> Path:
    """Keyed by content hash: a moved file keeps its thumbnail, a changed one gets a new one."""
    return library / THUMB_DIR / content_hash[:2] / f"{content_hash}-{size}.jpg"


def render(path: str, size: int, max_pixels: int | None) -> bytes:
    """Decode `path` with the indexer's guards and return an upright JPEG fitting size x size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _render(path, size, max_pixels)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (unknown or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(str(exc)) from None
    except Exception as exc:  # any decoder failure is a bad image, never a 500
        raise ImageError(f"cannot decode {os.path.basename(path)}: {exc}") from None


def _render(path: str, size: int, max_pixels: int | None) -> bytes:
    with Image.open(path) as img:
        check_pixels(img.width, img.height, max_pixels)
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # DCT-domain downscale: a 24 MP JPEG decodes at 1/8
        img.load()
        upright = to_rgb(ImageOps.exif_transpose(img))
    upright.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def store(target: Path, data: bytes) -> None:
    """Write atomically: concurrent requests for one thumbnail never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
