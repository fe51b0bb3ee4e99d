"""Real DNG files made from real photos: the photo's pixels as an RGGB Bayer mosaic (12-bit, a
CFA sub-IFD with the DNG colour tags LibRaw needs), optionally with an embedded RGB preview and
an orientation. Written with tifffile; LibRaw (rawpy) reads them as it reads a camera's DNG."""

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

DNG_TAGS = [  # (code, dtype, count, value, writeonce)
    (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
    (50707, "B", 4, (1, 2, 0, 0), True),  # DNGBackwardVersion
    (50708, "s", 0, "dinosearch test mosaic", True),  # UniqueCameraModel
    (271, "s", 0, "dinosearch", True),  # Make
    (272, "s", 0, "test mosaic", True),  # Model
    (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),  # ColorMatrix1
    (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
    (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
]
CFA_TAGS = [
    (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
    (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
    (50714, "H", 1, 0, True),  # BlackLevel
    (50717, "H", 1, 4095, True),  # WhiteLevel
]
EXIF_ORIENTATION = 274


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """RGGB Bayer samples of an RGB picture (even size), 12-bit."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = rgb[:h, :w].astype(np.uint16) * 16
    bayer = np.empty((h, w), np.uint16)
    bayer[0::2, 0::2] = rgb[0::2, 0::2, 0]
    bayer[0::2, 1::2] = rgb[0::2, 1::2, 1]
    bayer[1::2, 0::2] = rgb[1::2, 0::2, 1]
    bayer[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return bayer


def write_dng(
    source: Path, target: Path, preview_px: int | None = None, orientation: int = 1
) -> Path:
    """`source` (a photo) as a DNG at `target`. `orientation` is the EXIF value the file says to
    display it with (6: turn 90° clockwise), so the mosaic is stored turned the other way."""
    with Image.open(source) as img:
        upright = img.convert("RGB")
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(undo[orientation]) if orientation in undo else upright
    bayer = mosaic(np.asarray(stored))
    tags = [*DNG_TAGS, (EXIF_ORIENTATION, "H", 1, orientation, True)]
    with tifffile.TiffWriter(target) as tif:
        if preview_px:
            preview = stored.copy()
            preview.thumbnail((preview_px, preview_px))
            tif.write(
                np.asarray(preview), photometric="rgb", subfiletype=1, subifds=1, extratags=tags
            )
            tif.write(bayer, photometric=32803, subfiletype=0, extratags=CFA_TAGS)
        else:
            tif.write(bayer, photometric=32803, subfiletype=0, extratags=[*tags, *CFA_TAGS])
    return target
