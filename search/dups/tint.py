"""Whether two pictures that their grey thumbnails match (search/dups/verify.py) also agree in
colour, where they show the same scene.

Pictures drawn from one template (a ridge under a sky, balls on a floor, a page of one layout)
can agree in every grey part, detail and all, and still be two pictures: a yellow sky over a
green field and a purple one over a brown field. Their colours tell them apart; a copy's colours
are the original's up to an edit that acts on the whole picture:
- brightness and contrast scale every channel alike, so the chroma of each part scales by one
  gain (ImageEnhance: chroma x gain, with no offset);
- a white-balance shift (red x1.08, blue x0.92) adds a cast in proportion to each part's light;
- a grey copy has no colour at all, and is left to the grey evidence (greyscale pictures are not
  compared here).

So the chroma (two opponent channels) of GRID x GRID blocks of one picture's matched part is
fitted, by least squares, as gain x the other's chroma + light x cast, with the gain held to
GAIN and the cast to MAX_CAST; what the fit leaves, relative to the chroma there is, is the
disagreement. Blocks near white count for little: a brightened copy clips there and loses its
colour (HEADROOM). Both directions are fitted and the worse one counts.

Measured on the 5,200 distinct procedural pictures beside the near-duplicate set
(bench/results/dups_distractors.md): the 6,125 pairs of copies that the grey evidence matched
disagree by 0.31 at most (0.05 at the median), while 7 of the 8 false links left disagree by
0.58 to 1.65 (the eighth, two brown ridges under grey skies, by 0.15).
"""

import numpy as np
from PIL import Image

from search.dups.verify import Box

GRID = 4  # blocks a side over the matched part of each picture
MAX_DISAGREEMENT = 0.45  # copies <= 0.31, look-alikes of one template >= 0.58 (see above)
GAIN = (0.5, 2.0)  # chroma gain of a copy's edit: contrast 0.75..1.25 and brightness 0.8..1.2
MAX_CAST = 40.0  # opponent levels at full light: white balance red x1.08, blue x0.92 is ~29
HEADROOM = (250.0, 40.0)  # blocks whose brightest channel is within 40 levels of 250 count less
MIN_CHROMA = 4.0  # opponent levels: the disagreement of two near-grey parts is relative to this
OPPONENT = np.array(
    [[1 / np.sqrt(2), 1 / np.sqrt(6)], [-1 / np.sqrt(2), 1 / np.sqrt(6)], [0.0, -2 / np.sqrt(6)]]
)  # RGB -> (red-green, yellow-blue)


def same_colours(tint_a: np.ndarray, box_a: Box, tint_b: np.ndarray, box_b: Box) -> bool:
    """Whether the colour thumbnails (indexer/evidence.py Evidence.tint) agree over the boxes
    that show the same scene (verify.Found)."""
    return disagreement(tint_a, box_a, tint_b, box_b) <= MAX_DISAGREEMENT


def disagreement(tint_a: np.ndarray, box_a: Box, tint_b: np.ndarray, box_b: Box) -> float:
    """What a copy's edit cannot explain of the colour difference, relative to the colour (0: the
    same colours up to gain and cast)."""
    a, b = _blocks(tint_a, box_a), _blocks(tint_b, box_b)
    weight = np.clip((HEADROOM[0] - np.maximum(a.max(1), b.max(1))) / HEADROOM[1], 0.05, 1.0)
    return max(_residual(a, b, weight), _residual(b, a, weight))


def _blocks(tint: np.ndarray, box: Box) -> np.ndarray:
    """Mean RGB of GRID x GRID blocks over `box` of the thumbnail, as (GRID * GRID, 3)."""
    h, w = tint.shape[:2]
    left, top, right, bottom = box
    part = Image.fromarray(np.ascontiguousarray(tint)).resize(
        (GRID, GRID), Image.Resampling.BOX, box=(left * w, top * h, right * w, bottom * h)
    )
    return np.asarray(part, np.float64).reshape(-1, 3)


def _residual(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> float:
    """The weighted fit of dst's chroma as gain x src's + light x cast: what it leaves (RMS)
    over the chroma of the two (RMS, at least MIN_CHROMA)."""
    x, y = src @ OPPONENT, dst @ OPPONENT  # (n, 2) each
    light = src.mean(1) / 255.0
    root = np.sqrt(weight)[:, None]
    xw, yw, lw = x * root, y * root, light[:, None] * root
    # unconstrained least squares over (gain, cast_1, cast_2), then held to the bounds
    design = np.zeros((2 * len(x), 3))
    design[:, 0] = xw.T.ravel()
    design[: len(x), 1] = lw[:, 0]
    design[len(x) :, 2] = lw[:, 0]
    target = yw.T.ravel()
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    gain = float(np.clip(solution[0], *GAIN))
    rest = target - gain * design[:, 0]
    cast = np.linalg.lstsq(design[:, 1:], rest, rcond=None)[0]
    norm = float(np.linalg.norm(cast))
    if norm > MAX_CAST:
        cast *= MAX_CAST / norm
    left = rest - design[:, 1:] @ cast
    chroma = np.sqrt(((target**2).mean() + ((gain * design[:, 0]) ** 2).mean()) / 2)
    return float(np.sqrt((left**2).mean()) / max(chroma, MIN_CHROMA))
