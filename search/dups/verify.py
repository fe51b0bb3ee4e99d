"""Pixel-level confirmation of the copies embeddings are least sure of: grey, brightness and
contrast edits, and crops.

Whitened DINOv2 scores are what tell copies from look-alikes in general, but a grey copy can score
as low as an unrelated photo (colour is much of what the whitening weights), and a 20 % crop loses
a fifth of what the model saw. At the pixel level both are easy: a grey, brightened or contrasted
copy has the same grey picture up to a linear change of intensity, and a crop is that picture
inside a window of the other. So a candidate pair that the embeddings put close (raw cosine), but
below the threshold, is confirmed when the normalised cross-correlation (NCC) of small grey
thumbnails is high over the whole frame, or over the best window at one of a few crop scales.

Distinct photos, even the nearest ones, correlate far lower (bench/results/hard_copies.md).
"""

import dataclasses
import functools
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from indexer.decode import to_rgb
from search.dups.filecache import per_file_version

THUMB_PX = 64  # long side of the grey thumbnail: enough structure, ~1 ms to compare
ASPECT_TOLERANCE = 0.04  # |log aspect ratio| for a whole-frame match (resizes round to < 0.01)
NCC_WHOLE = 0.95  # grey / brightness / contrast copies >= 0.97; nearest distinct photos <= 0.76
NCC_SQUASHED = 0.97  # a copy stretched to another aspect (imagededup's resize 640x480 -> 300x300:
# 0.998); distinct photos squashed to each other's frame <= 0.84 (61 photos' quarters)
NCC_CROP = 0.96  # the best window at half-pixel widths (_refined): crops of the near-duplicate
# set >= 0.98; the nearest distinct pictures of the look-alike sets <= 0.948
REFINE_FROM = 0.9  # a best window at whole-pixel widths this good is looked at to half a pixel
FRAME_MIN_PX = 2  # thumbnail rows and columns of one flat colour on every side: an added frame
FRAME_STD = 3.0  # grey levels within a frame line (JPEG noise on a white border: < 1)
FRAME_LEVELS = 8.0  # a frame line's mean this close to the corners' colour
# The fine detail a match also needs (same_detail): in a library of 5,200 distinct procedural
# look-alikes (one template each: a ridge under a sky, a title over a figure and text lines) the
# false crop matches had detail 0.41 at the median, false tone matches 0.28-0.55, while the
# near-duplicate set's copies in the same library had >= 0.49 (crops) and >= 0.76 (tone)
# (bench/results/dups_distractors.md)
DETAIL_NCC = 0.5  # a crop
TONE_DETAIL_NCC = 0.6  # a whole-frame match
# Every part of a crop agrees with the picture it was cut from; two pictures of one template agree
# only where the template is (a horizon, a page's blocks), not where their content differs (the
# balls on a floor, the words). So the window and the template are cut into PARTS x PARTS blocks,
# and each block with structure (MIN_STD in both) must correlate PART_NCC or better. Among 5,200
# distinct pictures, 12 of the 19 crop links left had a block below it (down to -0.31), while
# 18 of 3,038 crop links between copies did, none of them a copy's only link
PARTS = 3
PART_NCC = 0.4
PARTS_MEAN_NCC = 0.85  # ... and, for a crop of the pictures as they are (no frame taken off),
# their mean too: a crop agrees in every part nearly as well as over the whole (2,141 crop links
# of the near-duplicate set with no border copy: mean >= 0.899), while two brown ridges of one
# template, a crop at NCC 0.99 with detail 0.56 and colours agreeing, reached 0.76 (the last
# false group among 5,200 look-alikes). A border's blended edge weakens the parts it crosses
# (0.71 for a crop of a bordered copy), so the inside of a frame, matched when the pictures as
# they are do not match, keeps PART_NCC alone
# Smooth pictures (search/dups/evidence.py LOW_INFO_EDGES): on the look-alike sets, distinct pairs
# reach NCC 0.98 with detail 0.65, or NCC 1.000 with detail 0.07, never both; their copies (a
# 20 % crop of a grey wall) reach 0.997 and 0.47 (bench/results/lookalike.md)
SMOOTH_NCC = 0.99
SMOOTH_DETAIL = 0.4
CROP_PREFILTER = 0.75  # NCC of the half-size search below which no full search is made (a 10 % crop
# of a detailed 500 px photo: 0.83 at half size)
PREFILTER_MIN_STD = 2.0  # grey levels a half-size window needs: halving flattens a low-contrast
# picture below MIN_STD (a 10 % crop of a dim wall: 4.2 whole, under 4 in every window)
MIN_CROP_SCALE = 0.74  # the narrowest window looked for: a crop keeping 75 % of the width
MIN_CROP_HEIGHT = 0.66  # ... and, at the full width, two thirds of the height. The window takes
# the other picture's aspect, so without it a landscape picture matched a band across 23 % of a
# portrait one: 65 of 174 false crop links among 5,200 distinct pictures, while copies' windows
# keep >= 0.70 of each side (bench/results/dups_distractors.md)
DESCRIPTOR_PX = 16  # the grey layout that finds tone candidates (squashed: aspect checked later)
DESCRIPTOR_MIN = 0.85  # NCC at 16 px: tone copies >= 0.97 (they pass 0.95 at 64 px too)
GREY_CHROMA = 8  # levels between channels in 99 % of a thumbnail's pixels: no colour (JPEG noise)
MIN_STD = 4.0  # grey levels: a window flatter than this has no structure to correlate
CACHE_ENTRIES = 8192  # thumbnails of <= 64x64 bytes: 32 MB at most
FRAME_CACHE = 4096  # half-size thumbnails (~1 KB each)
FULL_FRAME_CACHE = 512  # whole thumbnails prepared for window searches: 120 KB each, and up to
# ~350 KB more of window statistics as they meet other shapes (_Frame._statistics)
UPSAMPLED_CACHE = 64  # ... and twice their size, for near-matches (_refined): 0.5-2 MB each
TEMPLATE_CACHE = 16384  # half-size thumbnails resized to a window width: ~3 KB each
# A picture turned or mirrored in its pixels (not by EXIF), as PIL's Image.transpose names it:
# rot90 is 90 degrees anticlockwise (ROTATE_90), mirror is left-right (FLIP_LEFT_RIGHT).
TURNS = {
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "mirror": lambda a: a[:, ::-1],
}
UNDO_TURN = {"rot90": "rot270", "rot180": "rot180", "rot270": "rot90", "mirror": "mirror"}


def turned(pixels: np.ndarray, turn: str | None) -> np.ndarray:
    """`pixels` (H x W or H x W x C) turned or mirrored by `turn` (None: as they are)."""
    return pixels if turn is None else np.ascontiguousarray(TURNS[turn](pixels))


def descriptors(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Grey layout of each file as a unit vector (DESCRIPTOR_PX squared, mean removed), so that
    inner products are whole-frame NCCs at that scale: (vectors, rows that have one). Flat or
    unreadable files have none."""
    warm(paths)
    rows, out = [], []
    for row, path in enumerate(paths):
        grey = thumbnail(path)
        vector = None if grey is None else descriptor(grey)
        if vector is not None:
            rows.append(row)
            out.append(vector)
    dim = DESCRIPTOR_PX * DESCRIPTOR_PX
    return np.array(out, np.float32).reshape(-1, dim), np.array(rows, np.int64)


def descriptor(grey: np.ndarray) -> np.ndarray | None:
    """The grey layout of one thumbnail as a unit vector, or None when it is flat."""
    small = _resized(grey, (DESCRIPTOR_PX, DESCRIPTOR_PX)).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm >= MIN_STD * DESCRIPTOR_PX else None


def warm(paths: list[str]) -> None:
    """Decode the thumbnails of many files ahead, a thread per core (decoding releases the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(thumbnail, paths, chunksize=16))


def confirm(path_a: str, path_b: str, crops: bool = True, turn: str | None = None) -> str | None:
    """How the two files are the same picture at the pixel level: "tone" (the same grey picture
    up to gain and offset: grey, brightness, contrast, colour edits) or "crop"; else None. With
    `turn`, b is taken as a turned by it (rot90, mirror: TURNS), and a is turned first."""
    a, b = thumbnail(path_a), thumbnail(path_b)
    if a is None or b is None:
        return None
    return match(a, b, crops, turn)


Box = tuple[float, float, float, float]  # (left, top, right, bottom), fractions of a thumbnail
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Found:
    """How two thumbnails show one picture ("tone" or "crop"), and where: the part of each that
    shows the same scene (box_a of a, box_b of b), so that what the grey thumbnails do not keep
    (colour: search/dups/tint.py) can be compared there."""

    how: str
    box_a: Box = WHOLE
    box_b: Box = WHOLE

    def within(self, outer_a: Box, outer_b: Box) -> "Found":
        """This match of two parts, as boxes of the wholes that the parts are `outer_a`, `_b` of."""
        return Found(self.how, _inside(outer_a, self.box_a), _inside(outer_b, self.box_b))


def _inside(outer: Box, box: Box) -> Box:
    left, top, right, bottom = outer
    w, h = right - left, bottom - top
    return (left + box[0] * w, top + box[1] * h, left + box[2] * w, top + box[3] * h)


def match(
    a: np.ndarray, b: np.ndarray, crops: bool = True, turn: str | None = None, smooth: bool = False
) -> str | None:
    """`locate`, without the where: "tone", "crop" or None."""
    found = locate(a, b, crops, turn, smooth)
    return None if found is None else found.how


def locate(
    a: np.ndarray,
    b: np.ndarray,
    crops: bool = True,
    turn: str | None = None,
    smooth: bool = False,
    coarse: float | None = None,
) -> Found | None:
    """`confirm` on two grey thumbnails (long side THUMB_PX): "tone", "crop" or None. Either
    needs the fine detail to agree too (same_detail): two neighbouring parts of one scene (a
    treeline beside the next) share the coarse layout that dominates a correlation. `smooth`
    pictures (few edges: a sky, a wall) correlate with any other smooth picture, so for them
    both must be near perfect (SMOOTH_NCC, SMOOTH_DETAIL).

    Frames (a border of one flat colour on every side, unframed): when both pictures have one
    (two pages with margins, a bordered photo and its re-save), the frames dominate every
    correlation, so only the insides are compared, as one whole picture: among 5,200 distinct
    pictures, 113 of 113 crops found between two framed pictures were false (pages of one
    layout). When one has a frame (a border added to a copy), its blended edge keeps the best
    window at 0.956, so the picture inside it is matched too; all 35 such copies of the
    near-duplicate set had one frame (bench/results/dups_distractors.md).

    `coarse`: the half-size crop search of the two whole thumbnails, when coarse_crop_scores
    already took it (for `a` as it is: no `turn`)."""
    assert coarse is None or turn is None
    a = turned(a, turn)
    inner_a, inner_b = unframed(a), unframed(b)
    if inner_a is not None and inner_b is not None:
        found = _matched(inner_a, inner_b, False, smooth)
        return None if found is None else found.within(_inner_box(a), _inner_box(b))
    found = _matched(a, b, crops, smooth, coarse, PARTS_MEAN_NCC)
    if found is not None or not crops or (inner_a is None and inner_b is None):
        return found
    inner = _matched(
        a if inner_a is None else inner_a, b if inner_b is None else inner_b, crops, smooth
    )
    if inner is None:
        return None
    box_a = WHOLE if inner_a is None else _inner_box(a)
    box_b = WHOLE if inner_b is None else _inner_box(b)
    return Found("crop", inner.box_a, inner.box_b).within(box_a, box_b)


def _matched(
    a: np.ndarray,
    b: np.ndarray,
    crops: bool,
    smooth: bool,
    coarse: float | None = None,
    parts_mean: float = -1.0,
) -> Found | None:
    """`locate` on the pictures as they are, frames and all (a crop's parts: same_parts)."""
    b_on_a = _resized(b, a.shape)
    whole = ncc(a.astype(np.float32), b_on_a)
    floor = SMOOTH_NCC if smooth else NCC_WHOLE if _same_frame(a, b) else NCC_SQUASHED
    tone_detail = SMOOTH_DETAIL if smooth else TONE_DETAIL_NCC
    if whole >= floor and same_detail(a.astype(np.float32), b_on_a, tone_detail):
        return Found("tone")
    # (a 10 % crop can correlate over the whole frame, 0.96, while its detail lies shifted)
    if not crops:
        return None
    score, window, template, where = best_crop(a, b, coarse)
    floor = SMOOTH_NCC if smooth else NCC_CROP
    detail = SMOOTH_DETAIL if smooth else DETAIL_NCC
    if (
        score >= floor
        and same_detail(window, template, detail)
        and same_parts(window, template, parts_mean)
    ):
        return Found("crop", *where)
    return None


def same_parts(a: np.ndarray, b: np.ndarray, mean_floor: float = -1.0) -> bool:
    """Every block of a PARTS x PARTS grid over the two equal-shape arrays that has structure
    in both correlates PART_NCC or better, and those blocks' mean is `mean_floor` or better (a
    picture with no such block passes)."""
    h, w = a.shape
    ys, xs = np.linspace(0, h, PARTS + 1).astype(int), np.linspace(0, w, PARTS + 1).astype(int)
    scores = []
    for y0, y1 in itertools.pairwise(ys):
        for x0, x1 in itertools.pairwise(xs):
            pa = np.asarray(a[y0:y1, x0:x1], np.float64)
            pb = np.asarray(b[y0:y1, x0:x1], np.float64)
            if pa.std() >= MIN_STD and pb.std() >= MIN_STD:
                scores.append(ncc(pa, pb))
    return not scores or (min(scores) >= PART_NCC and float(np.mean(scores)) >= mean_floor)


def unframed(grey: np.ndarray) -> np.ndarray | None:
    """The picture inside a frame of one flat colour on all four sides (FRAME_MIN_PX or more),
    with one more pixel trimmed for the blend at its edge; None when there is no such frame.
    (Read-only: cached by content, as every pair looks at both of its pictures.)"""
    found = _unframed_of(_key(grey))
    return None if found is None else found[0]


def _inner_box(grey: np.ndarray) -> Box:
    """Where `unframed` finds the inside of a framed thumbnail, as a box of the thumbnail."""
    found = _unframed_of(_key(grey))
    return WHOLE if found is None else found[1]


@functools.lru_cache(maxsize=FRAME_CACHE)
def _unframed_of(key) -> tuple[np.ndarray, Box] | None:
    grey = _unkey(key)
    g = grey.astype(np.float32)
    colour = float(np.median([g[0, 0], g[0, -1], g[-1, 0], g[-1, -1]]))
    k = FRAME_MIN_PX  # most pictures have no frame: their outer lines say so, at a tenth the cost
    if not all(_flat(side, colour).all() for side in (g[:k], g[-k:], g[:, :k].T, g[:, -k:].T)):
        return None
    sides = []
    for flat in (_flat(g, colour), _flat(g.T, colour)):  # rows (top, bottom), then columns
        for lines in (flat, flat[::-1]):
            sides.append(len(lines) if lines.all() else int(np.argmin(lines)))  # leading flat lines
    if min(sides) < FRAME_MIN_PX or max(sides) >= min(g.shape) // 3:
        return None  # no frame on some side, or a flat picture
    top, bottom, left, right = (n + 1 for n in sides)
    h, w = grey.shape
    inner = np.ascontiguousarray(grey[top : h - bottom, left : w - right])
    inner.flags.writeable = False
    return inner, (left / w, top / h, (w - right) / w, (h - bottom) / h)


def _flat(lines: np.ndarray, colour: float) -> np.ndarray:
    """Which rows of `lines` are a frame line: one flat colour, the corners' (FRAME_STD,
    FRAME_LEVELS)."""
    return (lines.std(axis=1) <= FRAME_STD) & (np.abs(lines.mean(axis=1) - colour) <= FRAME_LEVELS)


def same_detail(a: np.ndarray, b: np.ndarray, floor: float = DETAIL_NCC) -> bool:
    """The pictures' fine detail (a Laplacian of the equal-shape grey arrays) correlates:
    copies >= 0.51 (a 20 % crop, matched at 64 px), two neighbouring tiles of one photo 0.07."""
    la, lb = laplacian(a), laplacian(b)
    la, lb = la - la.mean(), lb - lb.mean()
    denom = float(np.sqrt((la * la).sum() * (lb * lb).sum()))
    return denom > 0 and float((la * lb).sum()) / denom >= floor


def laplacian(x: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian of a grey array (its inner part)."""
    x = np.asarray(x, np.float32)
    return 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]


def _same_frame(a: np.ndarray, b: np.ndarray) -> bool:
    return abs(np.log((a.shape[1] / a.shape[0]) / (b.shape[1] / b.shape[0]))) <= ASPECT_TOLERANCE


def best_crop_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """The best NCC of either thumbnail shrunk to a window of the other (best_crop)."""
    return best_crop(a, b)[0]


def best_crop(
    a: np.ndarray, b: np.ndarray, coarse: float | None = None
) -> tuple[float, np.ndarray, np.ndarray, tuple[Box, Box]]:
    """(NCC, window, template, (box of a, box of b)) of the best match of either thumbnail,
    shrunk to a window of the other at any whole-pixel width between MIN_CROP_SCALE and all of
    it (if it would cover at least MIN_CROP_HEIGHT of the height at the full width), over every
    offset.
    (Six fixed scales missed crops by rounding: a 20 % crop scored 0.92 at scale 0.80 and 0.98
    one pixel wider.) Every third width first, then the widths beside the best of them; and
    only where the same search at half the size (every other width) comes within
    CROP_PREFILTER (distinct photos: 0.2 % of pairs reach 0.8; crops at 32 px >= 0.83); `coarse`:
    that search's score, when coarse_crop_scores already took it."""
    none = (-1.0, np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32), (WHOLE, WHOLE))
    if coarse is None:
        coarse = float(coarse_crop_scores([(a, b)])[0])
    if coarse < CROP_PREFILTER:
        return none
    best: tuple[_Window, np.ndarray, np.ndarray, bool] | None = None  # (found, frame, template,
    # whether the frame is a)
    for a_is_big, (big, small) in ((True, (a, b)), (False, (b, a))):
        frame = _full_frame_of(_key(big))
        widths = range(max(8, int(frame.W * MIN_CROP_SCALE)), frame.W + 1)
        spaced = frame.windows(small, widths[::3])
        if not spaced:
            continue
        top = max(spaced, key=lambda found: found.score).w
        near = [w for w in range(top - 2, top + 3) if w in widths and (w - widths[0]) % 3]
        for found in spaced + frame.windows(small, near):
            if best is None or found.score > best[0].score:
                best = found, big, small, a_is_big
    if best is None:
        return none
    found, big, small, a_is_big = best
    score = found.score
    if score >= REFINE_FROM:  # the window's width to half a pixel (only near-matches get here)
        score = max(score, _refined(big, small, found.w))
    H, W = big.shape
    h, w = found.window.shape
    window_box = (found.x / W, found.y / H, (found.x + w) / W, (found.y + h) / H)
    where = (window_box, WHOLE) if a_is_big else (WHOLE, window_box)
    return score, found.window, found.template, where  # detail is compared at 64 px, as everywhere


def _refined(big: np.ndarray, small: np.ndarray, w: int) -> float:
    """The best NCC of `small` over `big` upsampled twice, at widths within 1.5 px of w: the
    same search at half-pixel widths. A 5 % crop of a detailed photo lands 0.8 px off every
    whole width at 64 px and scores 0.94; at half-pixel widths 0.99, while distinct pictures gain
    nothing (look-alike sets: 0.948 stays 0.948)."""
    frame = _upsampled_frame_of(_key(big))
    found = frame.windows(small, range(2 * w - 3, min(2 * w + 4, frame.W + 1)))
    return max((window.score for window in found), default=-1.0)


def coarse_crop_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The half-size search of best_crop for many pairs of thumbnails at once: for each pair, the
    best NCC of either half-size thumbnail shrunk to a window of the other, at every other width
    from MIN_CROP_SCALE up and every offset (windows flatter than PREFILTER_MIN_STD left out).
    Pairs of the same shapes share one batched FFT per width: a duplicate run puts nearly every
    candidate pair through this search, and one pair at a time it was most of the run."""
    halves = [(_halved(a), _halved(b)) for a, b in pairs]
    best = np.full(len(pairs), -1.0)
    for big_is_a in (True, False):
        groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
        for k, (x, y) in enumerate(halves):
            big, small = (x, y) if big_is_a else (y, x)
            groups.setdefault((big.shape, small.shape), []).append(k)
        for members in groups.values():
            bigs = [halves[k][0 if big_is_a else 1] for k in members]
            smalls = [halves[k][1 if big_is_a else 0] for k in members]
            found = _batched_best_windows(np.stack(bigs).astype(np.float64), smalls)
            best[members] = np.maximum(best[members], found)
    return best


def _batched_best_windows(bigs: np.ndarray, smalls: list[np.ndarray]) -> np.ndarray:
    """For frames `bigs` (N x H x W) and same-shape pictures `smalls`, the best NCC of each small
    over its frame (_Frame.windows at best_crop's half-size widths, PREFILTER_MIN_STD)."""
    out = np.full(len(smalls), -1.0)
    _, H, W = bigs.shape
    hs, ws = smalls[0].shape
    if (hs / ws) / (H / W) < MIN_CROP_HEIGHT:
        return out  # even at the full width, the small one would be too low a band
    spectra = np.fft.rfft2(bigs)
    sums = np.pad(bigs, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    squares = np.pad(bigs**2, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    keys = [_key(small) for small in smalls]
    for w in range(max(8, int(W * MIN_CROP_SCALE)), W + 1, 2):
        h = max(8, round(w * hs / ws))
        if h > H:
            continue
        templates = [_template_of(key, h, w, PREFILTER_MIN_STD) for key in keys]
        shaped = [(k, t) for k, t in enumerate(templates) if t is not None]
        if not shaped:
            continue
        have = [k for k, _ in shaped]
        flipped = np.zeros((len(have), H, W))
        for row, (_, (centred, _)) in enumerate(shaped):
            flipped[row, :h, :w] = centred[::-1, ::-1]
        norms = np.array([t_norm for _, (_, t_norm) in shaped])
        correlations = np.fft.irfft2(spectra[have] * np.fft.rfft2(flipped), s=(H, W))
        n = h * w
        mean = _windows(sums[have], h, w) / n
        std = np.sqrt(np.maximum(_windows(squares[have], h, w) / n - mean**2, 0.0))
        scores = correlations[:, h - 1 :, w - 1 :] / (
            np.maximum(std, 1e-6) * np.sqrt(n) * norms[:, None, None]
        )
        scores = np.where(std >= PREFILTER_MIN_STD, scores, -1.0).reshape(len(have), -1)
        out[have] = np.maximum(out[have], scores.max(axis=1))
    return out


@functools.lru_cache(maxsize=UPSAMPLED_CACHE)
def _upsampled_frame_of(key) -> "_Frame":
    big = Image.fromarray(_unkey(key))
    return _Frame(np.asarray(big.resize((big.width * 2, big.height * 2), Image.Resampling.BICUBIC)))


def _halved(grey: np.ndarray) -> np.ndarray:
    return _halved_of(_key(grey))


def _key(grey: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """A thumbnail by its content, for the caches below: a pair search meets each picture in
    several pairs (its ~8 nearest neighbours), and a duplicate run judges ~9 pairs per image."""
    return grey.dtype.str, grey.shape, np.ascontiguousarray(grey).tobytes()


def _unkey(key: tuple[str, tuple[int, ...], bytes]) -> np.ndarray:
    return np.frombuffer(key[2], np.dtype(key[0])).reshape(key[1])


@functools.lru_cache(maxsize=FRAME_CACHE)
def _halved_of(key) -> np.ndarray:
    grey = _unkey(key)
    h, w = grey.shape
    small = Image.fromarray(grey).resize((max(8, w // 2), max(8, h // 2)), Image.Resampling.BOX)
    return np.asarray(small)


@functools.lru_cache(maxsize=FULL_FRAME_CACHE)
def _full_frame_of(key) -> "_Frame":
    """A whole thumbnail prepared for the full window search (a picture meets ~9 others)."""
    return _Frame(_unkey(key))


@functools.lru_cache(maxsize=TEMPLATE_CACHE)
def _template_of(key, h: int, w: int, min_std: float) -> tuple[np.ndarray, float] | None:
    """The picture resized to h x w with its mean removed, and its norm; None when flatter
    than `min_std` grey levels."""
    centred = _resized(_unkey(key), (h, w))
    centred -= centred.mean()
    t_norm = float(np.linalg.norm(centred))
    return (centred, t_norm) if t_norm >= min_std * np.sqrt(centred.size) else None


@dataclasses.dataclass
class _Window:
    """The best offset of a template at one width: its NCC and the two arrays compared."""

    score: float
    w: int
    window: np.ndarray
    template: np.ndarray  # mean removed: same_detail compares Laplacians, blind to an offset
    y: int = 0  # where the window is in the frame
    x: int = 0


class _Frame:
    """One thumbnail prepared for window searches: its spectrum and integral images."""

    def __init__(self, big: np.ndarray):
        self.H, self.W = big.shape
        image = big.astype(np.float64)
        self.image = image.astype(np.float32)
        self.image.flags.writeable = False  # windows of it are handed out; frames are cached
        self.spectrum = np.fft.rfft2(image)
        self.sums = np.pad(image, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        self.squares = np.pad(image**2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        self._stats: dict[tuple[int, int, float], tuple[np.ndarray, np.ndarray]] = {}

    def _statistics(self, h: int, w: int, min_std: float) -> tuple[np.ndarray, np.ndarray]:
        """For every h x w window: whether it has structure (min_std), and the factor that
        turns its correlation with a unit-norm zero-mean template into an NCC (1/(std sqrt n))."""
        if (h, w, min_std) not in self._stats:
            n = h * w
            mean, square = _windows(self.sums, h, w) / n, _windows(self.squares, h, w) / n
            std = np.sqrt(np.maximum(square - mean**2, 0.0))
            scale = 1.0 / (np.maximum(std, 1e-6) * np.sqrt(n))
            self._stats[h, w, min_std] = std >= min_std, scale
        return self._stats[h, w, min_std]

    def best_window(self, small: np.ndarray, w: int) -> tuple[float, np.ndarray, np.ndarray]:
        """`small` taken as the part of the frame that is `w` pixels wide: (best NCC over every
        offset, the frame's window there, the template)."""
        found = self.windows(small, [w])
        if not found:
            empty = np.zeros((3, 3), np.float32)
            return -1.0, empty, empty
        return found[0].score, found[0].window, found[0].template

    def windows(self, small: np.ndarray, widths, min_std: float = MIN_STD) -> list[_Window]:
        """`small` taken as the part of the frame that is w pixels wide, for each of `widths`:
        the best offset of each (widths too big, too small or flat at that size are left out;
        none when `small` is too much wider in aspect to be a crop: MIN_CROP_HEIGHT).
        One cross-correlation by FFT for all the widths together (a batched transform), with
        window statistics from integral images."""
        H, W = self.H, self.W
        if (small.shape[0] / small.shape[1]) / (H / W) < MIN_CROP_HEIGHT:
            return []  # even at the full width, `small` would be too low a band of the frame
        key, shaped = _key(small), []
        for w in widths:
            h = max(8, round(w * small.shape[0] / small.shape[1]))
            if h > H or w > W or w < 8:
                continue
            found = _template_of(key, h, w, min_std)
            if found is not None:
                shaped.append((w, h, *found))
        if not shaped:
            return []
        flipped = np.zeros((len(shaped), H, W))
        for k, (w, h, centred, _) in enumerate(shaped):
            flipped[k, :h, :w] = centred[::-1, ::-1]
        correlations = np.fft.irfft2(self.spectrum * np.fft.rfft2(flipped), s=(H, W))
        out = []
        for k, (w, h, centred, t_norm) in enumerate(shaped):
            valid, scale = self._statistics(h, w, min_std)
            sums = correlations[k, h - 1 :, w - 1 :]  # zero-mean template: no mean term
            scores = np.where(valid, sums * (scale / t_norm), -1.0)
            y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
            window = self.image[y : y + h, x : x + w]
            out.append(_Window(float(scores[y, x]), w, window, centred, int(y), int(x)))
        return out


def _windows(s: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum over every h x w window (valid positions), from an integral image `s` (or a stack of
    them: the last two axes)."""
    return s[..., h:, w:] - s[..., :-h, w:] - s[..., h:, :-w] + s[..., :-h, :-w]


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equal-shape arrays (1: same up to gain and offset)."""
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float((a * b).sum() / denom) if denom > MIN_STD**2 * a.size else -1.0


def _resized(grey: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if grey.shape == shape:  # what Pillow returns at the same size: a copy
        return grey.astype(np.float32)
    img = Image.fromarray(grey).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32)


def thumbnail(path: str) -> np.ndarray | None:
    """Upright grey thumbnail (long side THUMB_PX), cached by (path, size, mtime); None if the
    file cannot be read."""
    seen = _seen(path)
    return None if seen is None else seen[0]


def is_greyscale(path: str) -> bool:
    """Whether the picture has no colour (a grey copy, a black-and-white photo or scan)."""
    seen = _seen(path)
    return seen is not None and seen[1]


@per_file_version(CACHE_ENTRIES)
def _seen(path: str) -> tuple[np.ndarray, bool]:
    """The grey thumbnail and whether the picture has no colour, from one small decode."""
    with Image.open(path) as opened:
        opened.draft("RGB", (THUMB_PX * 4, THUMB_PX * 4))
        img = to_rgb(ImageOps.exif_transpose(opened))
        img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR, reducing_gap=2.0)
        rgb = np.asarray(img, np.int16)
        chroma = rgb.max(axis=2) - rgb.min(axis=2)
        grey = float(np.percentile(chroma, 99)) <= GREY_CHROMA
        return np.asarray(img.convert("L"), np.uint8), grey
