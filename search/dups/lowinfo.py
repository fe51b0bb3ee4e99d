"""Low-information images, and pixel-level evidence that two of them are the same picture.

DINOv2 embeddings of flat colours, gradients, simple patterns and tiny images sit close together
whatever they show (a horizontal gradient and a flat orange score cosine 0.986), so the duplicate
finder groups such images as copies only when their pixels agree. Everything here works on one
small upright thumbnail per file, decoded cheaply and cached by (path, size, mtime_ns).

Low information: tiny, or the 64x64 grey thumbnail's prediction residual compresses to almost
nothing (flat, gradients, coarse patterns), or its gradients repeat (patterns too fine for the
residual). Same picture: same shape, colour layout, detail and texture energy, and no local edit.
Detail finer than about 1/100 of the picture (a pixel of the 128-pixel thumbnail) is seen only
as its mean colour: such fine patterns look like each other and like their flat mean.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# importing indexer.decode also registers the HEIF opener
from indexer.decode import to_rgb
from indexer.evidence import (  # the measures are taken there, at index time
    BASE_PX,
    COLOUR_PX,
    DETAIL_PX,
    INFO_PX,
    LUMA,
    TINY_PIXELS,
    TINY_SIDE_PX,
    Evidence,
    compressed_size,
    periodicity,
    planar_residual,
    soften,
)
from search.dups.filecache import per_file_version

REDUCING_GAP = 4.0  # JPEG DCT-draft and box-reduce only down to 4x the thumbnail, then filter:
# drafting to 2x aliases fine patterns unlike the same picture as a PNG (2 JPEG copies of
# patterns missed); a 4000x3000 JPEG still decodes at 1/4


# Measured with real photos (the 24 Kodak, 37 photos-more, imagededup's 32 decodable files, the
# pillow-heif pug) and generated graphics, each with JPEG/WebP/resized copies; see the report.
LOW_INFO_BYTES = 640  # zlib bytes of the residual: photos >= 995 (>= 841 darkened to 1/4),
# flat/gradients/coarse patterns <= 190, shapes on white <= 450, a page of small text 355
PERIODIC = 0.6  # autocorrelation of the gradients at the best repeat: photos <= 0.46 (ripples
# on a lake), patterns the residual misses >= 0.72; a photo blurred by 6 px can reach 0.62

ASPECT_TOLERANCE = 0.02  # |log aspect ratio| beyond rounding; 7:5 vs 4:3 is 0.049
COLOUR_MAD = 6.0  # grey levels: copies <= 4.6 (resized + JPEG'd colour stripes)
DETAIL_MAD = 5.0  # grey levels, after a 1-pixel blur: copies <= 4.2 (JPEG q30 text); flat
# colours 5 or more levels apart differ (4 is under 2 just-noticeable differences)
EDIT_LEVELS = 48  # a 24x24 cell this far off in any channel is a local edit (a logo, a label)
EDIT_FRACTION = 0.005  # more than 0.5% of cells so (3 of 576) is another picture: copies 0%,
# a label on 2% of a gradient 2.4%
TEXTURE_RATIO = 2.0  # (more + 1) / (less + 1) residual energy: copies <= 1.62, flat vs noise 5.0

CACHE_ENTRIES = 1024  # about 18 KB each (1.7 KB colour + 16 KB detail): under 20 MB in all

EXIF_ORIENTATION = 274


@dataclass(frozen=True)
class Signature:
    """What one file looks like at thumbnail scale: enough to judge it and compare it."""

    width: int  # of the upright original
    height: int
    info_bytes: int  # zlib size of the 64x64 grey prediction residual
    periodicity: float  # how well the picture repeats itself: 1 for a perfect, fine pattern
    texture: float  # mean |prediction residual| of the 64x64 grey, in grey levels
    colour: np.ndarray  # (24, 24, 3) uint8 RGB
    detail: np.ndarray  # (128, 128) uint8 grey, softened

    @property
    def tiny(self) -> bool:
        """Too few pixels for the model to see anything in it."""
        return self.width * self.height < TINY_PIXELS or min(self.width, self.height) < TINY_SIDE_PX

    @property
    def low_information(self) -> bool:
        """Tiny, compresses to almost nothing at 64x64, or repeats one small tile."""
        return self.tiny or self.info_bytes < LOW_INFO_BYTES or self.periodicity >= PERIODIC


def is_low_information(path: str) -> bool:
    """Too little content for embeddings to tell it apart: flat, gradient, simple pattern, tiny."""
    sig = signature(path)
    return sig is not None and sig.low_information


def low_information_flags(paths: list[str]) -> list[bool]:
    """`is_low_information` for many files, measured on a thread per core (decoding releases
    the GIL)."""
    if len(paths) < 2:
        return [is_low_information(p) for p in paths]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(is_low_information, paths, chunksize=16))


def look_alike(path_a: str, path_b: str) -> bool:
    """Pixel-level evidence that two images are the same picture, at a small common scale."""
    a, b = signature(path_a), signature(path_b)
    return a is not None and b is not None and same_picture(a, b)


def needs_pixel_evidence(path_a: str, path_b: str) -> bool:
    """Whether either image is low-information, so embeddings alone cannot call them copies."""
    return is_low_information(path_a) or is_low_information(path_b)


def same_picture(a: Signature, b: Signature) -> bool:
    """Same shape, same colour layout, no local edit, same detail and the same texture energy."""
    slack = sum(0.5 / side for side in (a.width, a.height, b.width, b.height))  # rounding
    if abs(math.log((a.width / a.height) / (b.width / b.height))) > ASPECT_TOLERANCE + slack:
        return False
    colour = np.abs(a.colour.astype(np.int16) - b.colour.astype(np.int16))
    if colour.mean() > COLOUR_MAD or (colour.max(axis=2) > EDIT_LEVELS).mean() > EDIT_FRACTION:
        return False
    if np.abs(a.detail.astype(np.int16) - b.detail.astype(np.int16)).mean() > DETAIL_MAD:
        return False
    low, high = sorted((a.texture, b.texture))
    return (high + 1.0) / (low + 1.0) <= TEXTURE_RATIO


def from_evidence(ev: Evidence, width: int, height: int) -> Signature | None:
    """The signature of a stored evidence record (indexer/evidence.py); None when it kept no
    colour and detail (a photo far from low information: never compared as one)."""
    if ev.colour is None or ev.detail is None:
        return None
    return Signature(width, height, ev.info_bytes, ev.periodicity, ev.texture, ev.colour, ev.detail)


def is_low(ev: Evidence, width: int, height: int) -> bool:
    """Signature.low_information, from stored evidence."""
    tiny = width * height < TINY_PIXELS or min(width, height) < TINY_SIDE_PX
    return tiny or ev.info_bytes < LOW_INFO_BYTES or ev.periodicity >= PERIODIC


@per_file_version(CACHE_ENTRIES)
def signature(path: str) -> Signature:
    """The file's signature, cached by (path, size, mtime_ns); None when it cannot be read."""
    return compute_signature(path)


def compute_signature(path: str) -> Signature:
    """Decode a small upright thumbnail and measure it (raises on an unreadable file)."""
    thumb, (width, height) = _thumbnail(path)
    rgb = np.asarray(thumb, dtype=np.float32)
    grey = Image.fromarray(np.ascontiguousarray(rgb @ LUMA), "F")
    small = np.asarray(grey.resize((INFO_PX, INFO_PX), Image.Resampling.BILINEAR), np.float64)
    residual = planar_residual(small)
    detail = grey.resize((DETAIL_PX, DETAIL_PX), Image.Resampling.BILINEAR)
    colour = thumb.resize((COLOUR_PX, COLOUR_PX), Image.Resampling.BILINEAR)
    return Signature(
        width=width,
        height=height,
        info_bytes=compressed_size(residual),
        periodicity=periodicity(np.asarray(detail, dtype=np.float64)),
        texture=float(np.abs(residual[1:, 1:]).mean()),
        colour=np.asarray(colour, dtype=np.uint8),
        detail=np.clip(soften(np.asarray(detail)).round(), 0, 255).astype(np.uint8),
    )


def _thumbnail(path: str) -> tuple[Image.Image, tuple[int, int]]:
    """Upright RGB thumbnail fitting BASE_PX, and the upright original's size."""
    with Image.open(path) as img:
        width, height = img.size  # before a draft shrinks it
        if img.format == "JPEG":
            img.draft("RGB", (int(BASE_PX * REDUCING_GAP),) * 2)  # DCT-domain downscale
        img.load()
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)  # after load: PNG eXIf may follow
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        thumb = to_rgb(ImageOps.exif_transpose(img) if orientation != 1 else img)
        thumb.thumbnail((BASE_PX, BASE_PX), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
        return (thumb.copy() if thumb is img else thumb), (width, height)  # img dies on close
