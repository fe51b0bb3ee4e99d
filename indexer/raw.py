"""Camera RAW files through LibRaw (rawpy): every format LibRaw reads.

Fast path: the preview the camera embedded (a JPEG, sometimes a bitmap) when its shorter side is
at least the model's input needs (the recipe's shortest edge); it is decoded like any JPEG (DCT
draft) and turned upright by the RAW's orientation, unless the preview carries its own. Else a
half-size demosaic (LibRaw applies the orientation itself). LibRaw is native code: like every
decoder here it runs in the decode worker processes, under their time and memory limits.
"""

import io
import os

import numpy as np
import rawpy
from PIL import Image, ImageOps

from indexer.errors import ImageError
from indexer.files import RAW_EXTENSIONS

# LibRaw's flip -> the PIL transpose that makes the picture upright (0: as stored)
FLIP_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,
    6: Image.Transpose.ROTATE_270,
}
RAW_ERRORS = (rawpy.LibRawError, OSError)


def is_raw(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in RAW_EXTENSIONS


def open_raw(
    path: str | io.BytesIO, min_side: int | None
) -> tuple[Image.Image, str, tuple[int, int]]:
    """(upright RGB picture, how it was read: "preview" or "demosaic", the upright full size);
    `path` may be the file's bytes (LibRaw reads a file object as it reads a path)."""
    try:
        with rawpy.imread(path) as raw:
            flip = raw.sizes.flip
            full = (raw.sizes.width, raw.sizes.height)
            if flip in (5, 6):
                full = full[::-1]
            preview = _preview(raw, flip, min_side or 0)
            if preview is not None:
                return preview, "preview", full
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except RAW_ERRORS as exc:
        raise ImageError(f"cannot decode RAW: {_reason(exc)}") from None
    return Image.fromarray(np.ascontiguousarray(rgb)), "demosaic", full


def _preview(raw, flip: int, min_side: int) -> Image.Image | None:
    """The embedded preview, upright, when it is large enough; else None."""
    img: Image.Image
    try:
        thumb = raw.extract_thumb()
    except RAW_ERRORS:  # none, or one LibRaw cannot unpack: demosaic instead
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        img = Image.open(io.BytesIO(thumb.data))
        if min(img.size) < min_side:
            return None
        if min_side:
            img.draft("RGB", (min_side, min_side))
        img.load()
        if img.getexif().get(274, 1) != 1:  # the preview says how to stand: trust it
            return ImageOps.exif_transpose(img).convert("RGB")
    elif thumb.format == rawpy.ThumbFormat.BITMAP:
        img = Image.fromarray(np.ascontiguousarray(thumb.data))
        if min(img.size) < min_side:
            return None
    else:
        return None
    img = img.convert("RGB")
    return img.transpose(FLIP_TRANSPOSE[flip]) if flip in FLIP_TRANSPOSE else img


def _reason(exc: BaseException) -> str:
    text = str(exc).strip("b'\"") or type(exc).__name__
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return f"not a RAW format LibRaw reads ({text})"
    return text
