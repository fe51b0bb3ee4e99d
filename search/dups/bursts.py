"""Bursts: the `similar` tier limited by capture time, shown as one stack with its best shot.

A burst is several shots of one moment, not copies to delete: with `--burst-window 10s` two
images join a `similar` group only when both carry an EXIF capture time (DateTimeOriginal with
SubSecTimeOriginal: frames of one second told apart) and were taken within the window of each
other. The stack's best shot is the sharpest one (variance of the Laplacian of a 512 px grey
rendering, the usual focus measure), then the larger.
"""

import datetime as dt
import re

import numpy as np
from PIL import Image, ImageOps

from indexer import raw
from indexer.decode import IMAGE_ERRORS, parse_capture_time
from indexer.errors import BadQuery

SHARPNESS_PX = 512  # long side the focus measure is taken at: detail survives, noise averages
WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_window(text: str | float | None) -> float | None:
    """'10s', '1.5m', '500ms', '2h' or a number of seconds -> seconds."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    m = WINDOW_RE.match(text)
    if not m:
        raise BadQuery(f"--burst-window: a duration such as 10s, 2m or 500ms, not {text!r}")
    return float(m.group(1)) * UNIT_S[m.group(2)]


EPOCH = dt.datetime(1970, 1, 1)


def seconds(taken: str | None) -> float | None:
    """An EXIF capture time as stored (`2024-05-01T10:00:03`, `...T10:00:03.25+02:00`) -> seconds
    on the camera's clock (no zone applied, no local-time shift: frames of a burst share both);
    None without one."""
    when = parse_capture_time(taken)
    return None if when is None else (when - EPOCH).total_seconds()


def within_window(times: list[float | None], rows, cols, window: float) -> np.ndarray:
    """Which pairs were both taken, within `window` seconds of each other."""
    t = np.array([np.nan if x is None else x for x in times], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.abs(t[rows] - t[cols]) <= window  # NaN (no capture time) compares False


def sharpness(path: str) -> float:
    """Variance of the Laplacian of the upright grey picture at SHARPNESS_PX (0: unreadable)."""
    try:
        if raw.is_raw(path):
            grey = raw.open_raw(path, SHARPNESS_PX)[0].convert("L")
        else:
            with Image.open(path) as img:
                img.draft("L", (SHARPNESS_PX, SHARPNESS_PX))
                grey = ImageOps.exif_transpose(img).convert("L")
        grey.thumbnail((SHARPNESS_PX, SHARPNESS_PX))
    except IMAGE_ERRORS:
        return 0.0
    g = np.asarray(grey, dtype=np.float32)
    if min(g.shape) < 3:
        return 0.0
    laplacian = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(laplacian.var())


def best_shot(paths: list[str], pixels: list[int]) -> str:
    """The sharpest of a burst; a tie goes to the larger picture, then the first."""
    scores = [(sharpness(p), n, -i) for i, (p, n) in enumerate(zip(paths, pixels, strict=True))]
    return paths[-max(scores)[2]]
