"""Pixel evidence of one image, measured once at index time from the pixels the decode worker
already holds, so that `dinosearch dups` decodes nothing (search/dups/evidence.py uses it).

What is kept of each content (about 3 KB for a photo):
- a grey thumbnail, long side THUMB_PX, upright: whole-frame and crop correlations between copies
  (search/dups/verify.py);
- whether the picture has no colour (grey copies are believed only with pixel evidence);
- its colours, as a TINT_STEP times smaller RGB thumbnail (about 200 B): two pictures drawn from
  one template (a ridge under a sky, balls on a floor) can agree in every grey part and differ in
  every colour (search/dups/tint.py);
- the low-information measures of search/dups/lowinfo.py (residual bytes, periodicity, texture);
- for pictures that are low-information or close to it, the colour layout and the softened detail
  that decide whether two of them are the same picture (lowinfo.same_picture). Photos far from
  low-information never need them, so they are not stored (16 KB each).

The measures are the ones the path-based code in search/dups takes from a fresh small decode; the
module imports nothing from search/ (the arrow runs from search to indexer).
"""

import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

THUMB_PX = 64  # long side of the grey thumbnail compared by correlation (verify.THUMB_PX)
BASE_PX = 128  # the low-information measures start from an RGB thumbnail fitting 128 x 128
INFO_PX = 64  # ... squashed to 64 x 64 grey for the residual
INFO_STEP = 2.0  # grey levels of the residual's quantisation (lowinfo.INFO_STEP)
TINT_STEP = 4  # the colour thumbnail is the grey one's size over this (16 px long side)
COLOUR_PX = 24
DETAIL_PX = 128
FINE_PX = 192  # grey, squashed: text and UI detail that 128 px blurs (near-low-information only)
GREY_CHROMA = 8  # levels between channels in 99 % of the thumbnail's pixels: no colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
# Colour and detail are kept when a picture is within this factor of the low-information limits
# (lowinfo.LOW_INFO_BYTES, PERIODIC), so a pair with one low-information member can be compared.
NEAR_LOW_INFO_BYTES = 1280
NEAR_PERIODIC = 0.45
TINY_PIXELS = 64 * 64
TINY_SIDE_PX = 32
EXIF_ORIENTATION = 274
JPEG_DRAFT_PX = 512  # a file decoded for its evidence alone is DCT-drafted to about this


@dataclass
class Evidence:
    thumb: np.ndarray  # (h, w) uint8 grey, long side THUMB_PX
    greyscale: bool
    info_bytes: int
    periodicity: float
    texture: float
    colour: np.ndarray | None = None  # (24, 24, 3) uint8, for near-low-information pictures
    detail: np.ndarray | None = None  # (128, 128) uint8 softened grey, likewise
    fine: np.ndarray | None = None  # (192, 192) uint8 grey, likewise: two screenshots of one
    # app with other text agree at 128 px (Laplacian correlation 0.94) and differ here (<= 0.79)
    tint: np.ndarray | None = None  # (tint_shape(thumb), 3) uint8 RGB; None: stored before it was

    def to_record(self, digest: str) -> dict:
        h, w = self.thumb.shape
        return {
            "hash": digest,
            "thumb_w": w,
            "thumb_h": h,
            "thumb": self.thumb.tobytes(),
            "greyscale": int(self.greyscale),
            "info_bytes": self.info_bytes,
            "periodicity": round(self.periodicity, 5),
            "texture": round(self.texture, 5),
            "looks": None if self.colour is None else _pack(self.colour, self.detail, self.fine),
            "tint": None if self.tint is None else self.tint.tobytes(),
        }

    @classmethod
    def from_record(cls, row: dict) -> "Evidence":
        thumb = np.frombuffer(row["thumb"], np.uint8).reshape(row["thumb_h"], row["thumb_w"])
        colour = detail = fine = tint = None
        if row.get("looks"):
            colour, detail, fine = _unpack(row["looks"])
        shape = (*tint_shape(row["thumb_h"], row["thumb_w"]), 3)
        if row.get("tint") and len(row["tint"]) == np.prod(shape):  # else: measured again
            tint = np.frombuffer(row["tint"], np.uint8).reshape(shape)
        return cls(
            thumb,
            bool(row["greyscale"]),
            int(row["info_bytes"]),
            float(row["periodicity"]),
            float(row["texture"]),
            colour,
            detail,
            fine,
            tint,
        )


def tint_shape(h: int, w: int) -> tuple[int, int]:
    """(height, width) of the colour thumbnail of a grey thumbnail of h x w."""
    return max(1, round(h / TINT_STEP)), max(1, round(w / TINT_STEP))


def _pack(colour: np.ndarray, detail: np.ndarray | None, fine: np.ndarray | None) -> bytes:
    assert detail is not None and fine is not None
    return zlib.compress(colour.tobytes() + detail.tobytes() + fine.tobytes(), 6)


def _unpack(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    raw = np.frombuffer(zlib.decompress(blob), np.uint8)
    split = COLOUR_PX * COLOUR_PX * 3
    cut = split + DETAIL_PX * DETAIL_PX
    colour = raw[:split].reshape(COLOUR_PX, COLOUR_PX, 3)
    fine = raw[cut:].reshape(FINE_PX, FINE_PX) if len(raw) > cut else None
    return colour, raw[split:cut].reshape(DETAIL_PX, DETAIL_PX), fine


def measure(rgb: Image.Image, width: int, height: int) -> Evidence:
    """The evidence of an upright RGB image (any size; `width` x `height` is the original's)."""
    small = rgb.copy()
    small.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(small, np.int16)
    chroma = arr.max(axis=2) - arr.min(axis=2)
    greyscale = float(np.percentile(chroma, 99)) <= GREY_CHROMA
    thumb = np.asarray(small.convert("L"), np.uint8).copy()
    th, tw = tint_shape(*thumb.shape)
    tint = np.asarray(small.resize((tw, th), Image.Resampling.BOX), np.uint8).copy()

    base = rgb.copy()
    base.thumbnail((BASE_PX, BASE_PX), Image.Resampling.BILINEAR, reducing_gap=4.0)
    f = np.asarray(base, dtype=np.float32)
    grey = Image.fromarray(np.ascontiguousarray(f @ LUMA), "F")
    info = np.asarray(grey.resize((INFO_PX, INFO_PX), Image.Resampling.BILINEAR), np.float64)
    residual = planar_residual(info)
    detail_img = grey.resize((DETAIL_PX, DETAIL_PX), Image.Resampling.BILINEAR)
    detail = np.asarray(detail_img, dtype=np.float64)
    info_bytes = compressed_size(residual)
    period = periodicity(detail)
    texture = float(np.abs(residual[1:, 1:]).mean())
    ev = Evidence(thumb, greyscale, info_bytes, period, texture, tint=tint)
    tiny = width * height < TINY_PIXELS or min(width, height) < TINY_SIDE_PX
    if tiny or info_bytes < NEAR_LOW_INFO_BYTES or period >= NEAR_PERIODIC:
        colour = base.resize((COLOUR_PX, COLOUR_PX), Image.Resampling.BILINEAR)
        ev.colour = np.asarray(colour, dtype=np.uint8).copy()
        ev.detail = np.clip(soften(detail).round(), 0, 255).astype(np.uint8)
        sharp = rgb.convert("L").resize(
            (FINE_PX, FINE_PX), Image.Resampling.BILINEAR, reducing_gap=2.0
        )
        ev.fine = np.asarray(sharp, np.uint8).copy()
    return ev


def from_file(path: str) -> tuple[Evidence, int, int]:
    """Decode a file small (a JPEG in the DCT domain) and measure it: (evidence, width, height)
    of the upright original. Raises what Pillow raises for an unreadable file."""
    with Image.open(path) as img:
        width, height = img.size
        if img.format == "JPEG":
            img.draft("RGB", (JPEG_DRAFT_PX, JPEG_DRAFT_PX))
        img.load()
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        from indexer.decode import to_rgb  # decode imports this module

        upright = to_rgb(ImageOps.exif_transpose(img) if orientation != 1 else img)
        return measure(upright, width, height), width, height


def planar_residual(grey: np.ndarray) -> np.ndarray:
    """Error of predicting each pixel as left + above - above-left: zero on any linear gradient."""
    pred = np.zeros_like(grey)
    pred[1:, 1:] = grey[1:, :-1] + grey[:-1, 1:] - grey[:-1, :-1]
    pred[0, 1:] = grey[0, :-1]
    pred[1:, 0] = grey[:-1, 0]
    return grey - pred


def compressed_size(residual: np.ndarray) -> int:
    """zlib bytes of the residual quantised to INFO_STEP grey levels: little content, few bytes."""
    steps = np.round(residual / INFO_STEP).astype(np.int64) % 256
    return len(zlib.compress(steps.astype(np.uint8).tobytes(), 9))


PERIOD_MIN_SHIFT_PX = 3


def periodicity(grey: np.ndarray) -> float:
    """Highest secondary peak of the autocorrelation of the image's gradients (1 = periodic).

    Catches patterns too fine for the residual (a checkerboard of 50 squares aliases to noise at
    64x64); a photo's edges line up with themselves only near zero shift, or along a ridge.
    """
    n = grey.shape[0]
    window = np.hanning(n)
    spectrum = np.fft.rfft2((grey - grey.mean()) * window[:, None] * window[None, :])
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    auto = np.fft.irfft2(np.abs(spectrum) ** 2 * (fx**2 + fy**2), s=grey.shape)  # of gradients
    if auto[0, 0] <= 1e-9:
        return 0.0  # flat: no edges at all (the residual already calls it low-information)
    auto = np.fft.fftshift(auto / auto[0, 0])
    neighbours = [np.roll(auto, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    peaks = auto >= np.max(neighbours, axis=0)
    yy, xx = np.mgrid[:n, :n] - n // 2
    peaks &= yy**2 + xx**2 >= PERIOD_MIN_SHIFT_PX**2
    return float(auto[peaks].max()) if peaks.any() else 0.0


def soften(grey: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 blur across and down: edges a fraction of a pixel apart compare as close."""
    for axis in (0, 1):
        padded = np.pad(grey, [(1, 1) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        lo, mid, hi = (np.take(padded, range(i, i + grey.shape[axis]), axis) for i in (0, 1, 2))
        grey = (lo + 2 * mid + hi) / 4
    return grey
