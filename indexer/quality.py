"""Quality measures of one decoded image, and the flags they raise (`dinosearch flags`).

The measures are taken in the decode worker from the image it has just decoded (a JPEG's
DCT-drafted pixels, a HEIC's thumbnail), on a fixed-size downscale, so that they do not depend on
the file's resolution: no second decode. They are stored by content hash (indexer/library/
flags.py); the flags are worked out from them when asked, so a changed threshold needs no
re-measuring. Thresholds and their false-positive rate on the shared real photos:
bench/results/perf_flags_thresholds.md (bench/flags_thresholds.py).
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from indexer.errors import BadQuery

MEASURE_SIDE_PX = 256  # the longer side of the downscale every measure is taken on
CLIPPED_LEVEL = 250  # a grey level (of 255) this bright counts as blown out
FLAT_VARIANCE = 1.0  # grey levels squared: below it an image has no detail to be sharp with
MIN_STRETCH_RANGE = 32.0  # grey levels: stretching a narrower range would amplify noise
MEASURES = ("brightness", "clipped", "contrast", "sharpness", "information", "colourfulness")
Values = dict[str, float]

# name -> (the value it reads, "<" or ">", threshold); see the module docstring for the source.
THRESHOLDS: dict[str, tuple[str, str, float]] = {
    "dark": ("brightness", "<", 0.15),  # mean grey level, 0..1
    "overexposed": ("brightness", ">", 0.85),
    "blurry": ("sharpness", "<", 20.0),  # Laplacian variance / grey variance x 1000, at 256 px
    "low-information": ("information", "<", 2.0),  # bits: entropy of the grey residual
    "grayscale": ("colourfulness", "<", 0.02),  # mean channel spread / mean brightest channel
    "odd-aspect-ratio": ("aspect_ratio", ">", 2.0),  # longer side over shorter side
    "tiny": ("shorter_side", "<", 128),  # pixels, of the upright original
}
FLAGS = tuple(THRESHOLDS)


def measure(img: Image.Image) -> Values:
    """The measures of an RGB image (any size), on its downscale to 256 px."""
    small = _downscale(img)
    bands = [np.asarray(band, dtype=np.float32) for band in small.split()]
    grey = 0.299 * bands[0] + 0.587 * bands[1] + 0.114 * bands[2]  # ITU-R 601 luma, unrounded
    return {
        "brightness": round(float(grey.mean()) / 255, 4),
        "clipped": round(float((grey >= CLIPPED_LEVEL).mean()), 4),
        "contrast": round(float(grey.std()) / 255, 4),
        "sharpness": round(_sharpness(grey), 2),
        "information": round(_residual_entropy(_stretched(grey)), 3),
        "colourfulness": round(_colourfulness(bands), 4),
    }


def _downscale(img: Image.Image) -> Image.Image:
    scale = MEASURE_SIDE_PX / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the image's own variance (x 1000): the share
    of fine detail, so that a dark or flat-lit photo is not taken for a blurred one."""
    if min(grey.shape) < 3 or grey.var() < FLAT_VARIANCE:
        return 0.0
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return 1000 * float(lap.var()) / float(grey.var())


def _stretched(grey: np.ndarray) -> np.ndarray:
    """Levels spread over 0..255 (1st to 99th percentile, by at most 8x): a dark photo keeps
    its detail, a flat image's noise stays small."""
    cdf = np.cumsum(np.bincount(np.round(grey).astype(np.uint8).ravel(), minlength=256))
    low, high = np.searchsorted(cdf, (0.01 * cdf[-1], 0.99 * cdf[-1]))
    return np.clip((grey - low) * (255 / max(high - low, MIN_STRETCH_RANGE)), 0, 255)


def _colourfulness(bands: list[np.ndarray]) -> float:
    """Mean channel spread (max - min) over the mean brightest channel: 0 for grey, the same
    for a photo and its darkened copy."""
    r, g, b = bands
    brightest = np.maximum(np.maximum(r, g), b)
    mean = float(brightest.mean())
    spread = brightest - np.minimum(np.minimum(r, g), b)
    return float(spread.mean()) / mean if mean else 0.0


def _residual_entropy(grey: np.ndarray) -> float:
    """Entropy (bits) of each pixel minus its left neighbour: ~0 for a flat colour, a gradient
    or a clean graphic, 4-6 for a photo."""
    if grey.shape[1] < 2:
        return 0.0
    residual = np.round(grey[:, 1:] - grey[:, :-1]).astype(np.int32) + 255
    counts = np.bincount(residual.ravel(), minlength=511)
    p = counts[counts > 0] / residual.size
    return float(-(p * np.log2(p)).sum())


def shape_values(width: int, height: int) -> Values:
    short, long = sorted((max(1, width), max(1, height)))
    return {"aspect_ratio": round(long / short, 3), "shorter_side": short}


def flags_of(values: Values) -> list[str]:
    """The flags `values` (measures and shape_values) raise, in FLAGS order; an image with
    hardly any information (a flat colour, a gradient) is not also called blurry."""
    out = []
    for name, (key, op, limit) in THRESHOLDS.items():
        value = values.get(key)
        if value is not None and (value < limit if op == "<" else value > limit):
            out.append(name)
    if "low-information" in out and "blurry" in out:
        out.remove("blurry")
    return out


@dataclass
class FlagReport:
    flags: list[dict]  # {"path", "id", "flags", "values"} of each flagged image
    images: int  # ok images considered
    measured: int  # of them, with stored measures
    counts: dict[str, int]  # images raising each flag
    flagged: int  # images raising any flag (`flags` holds those a filter kept)

    def to_json(self) -> dict:
        thresholds = {
            name: f"{key} {op} {limit:g}" for name, (key, op, limit) in THRESHOLDS.items()
        }
        stats = {"images": self.images, "measured": self.measured, "flagged": self.flagged}
        stats["shown"] = len(self.flags)
        return {
            "flags": self.flags,
            "stats": {**stats, "counts": self.counts, "thresholds": thresholds},
        }


def parse_flags(text: str | None) -> tuple[str, ...]:
    """`dark,blurry` -> ("dark", "blurry"); an unknown name is a BadQuery naming the known."""
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    if unknown := [n for n in names if n not in THRESHOLDS]:
        raise BadQuery(f"unknown flag {', '.join(unknown)}: choose from {', '.join(FLAGS)}")
    return names


def report(rows, only: tuple[str, ...] = ()) -> FlagReport:
    """Rows of (id, path, width, height, measures or None) -> the flagged images, by path."""
    flagged, counts = [], dict.fromkeys(FLAGS, 0)
    images = measured = any_flag = 0
    for image_id, path, width, height, measures in rows:
        images += 1
        values = {**(measures or {}), **shape_values(width or 0, height or 0)}
        measured += measures is not None
        names = flags_of(values)
        for name in names:
            counts[name] += 1
        any_flag += bool(names)
        if names and (not only or set(names) & set(only)):
            flagged.append({"path": path, "id": image_id, "flags": names, "values": values})
    flagged.sort(key=lambda f: f["path"])
    return FlagReport(flagged, images, measured, counts, any_flag)
