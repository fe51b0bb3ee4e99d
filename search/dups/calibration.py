"""`--threshold auto`: choose the duplicate threshold on the library's own photos.

Take a sample of the library, make known copies of each with every documented transform, embed
them, and score each copy against its source (positives) and against its nearest *distinct* library
images (negatives). The threshold is the lowest score that reaches the target precision on those
pairs; a logistic fit of the same pairs turns any score into a calibrated confidence.

"Distinct" is the hard part: the library may already hold copies of the source (a training set
where every image has ~15 variants), and those must not count as negatives, or they push the
threshold up to where nothing is found (0.99 -> recall 0.07 on such a set). So the source's
*linked set* is excluded: every library image reachable from the source or from one of its
synthetic copies through pairs at least as similar as 90 % of all synthetic copies are to their
sources (LINK_QUANTILE). A grey copy already in the library is reached through the synthetic grey
copy, a crop through the synthetic crop, and so on. Measured in bench/results/dups_research.md.
"""

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from indexer.decode import to_rgb
from indexer.errors import ImageError
from search.dups.whitening import Whitening

SOURCE_MAX_SIDE = 1024  # sources are shrunk first: transforms on 12 MP would dominate the time
NEGATIVES_PER_COPY = 3
DEFAULT_SAMPLE = 60  # sources at most; x 15 transforms = 900 copies (~2 min on 2 CPU cores)
MIN_SAMPLE = 8  # sources at least (120 copies): the 99 % precision point still holds (bench)
IMAGES_PER_SOURCE = 20  # the sample grows with the library: one source per 20 indexed images
TRANSFORMS_PER_SOURCE = 15  # all of them: each is a bridge to the library's own such copies
LINK_QUANTILE = 0.10  # link pairs scoring at least this quantile of the copies' scores
LINK_HOPS = 2  # how far a linked set grows beyond its starting images
LINK_MAX = 256  # a linked set stops growing at this size: bigger, it is leaking
LEAK_FRACTION = 0.5  # a median linked set this share of the library: linking is not working
METHOD = "linked-set-exclusion/1"  # stored with a calibration: another method refits it


def sample_for(images: int) -> int:
    """Sources to calibrate on for a library of this many images: the cost grows with the
    library (a first `dups` on 120 photos embeds 120 copies, not 900) up to DEFAULT_SAMPLE."""
    return max(MIN_SAMPLE, min(DEFAULT_SAMPLE, -(-images // IMAGES_PER_SOURCE)))


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _scale(img: Image.Image, factor: float) -> Image.Image:
    size = (max(16, round(img.width * factor)), max(16, round(img.height * factor)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _crop(img: Image.Image, keep: float, rng: np.random.Generator) -> Image.Image:
    w, h = round(img.width * keep), round(img.height * keep)
    left = int(rng.integers(0, img.width - w + 1))
    top = int(rng.integers(0, img.height - h + 1))
    return img.crop((left, top, left + w, top + h))


def _border(img: Image.Image, fraction: float, colour) -> Image.Image:
    pad = max(2, round(min(img.size) * fraction))
    return ImageOps.expand(img, border=pad, fill=colour)


def _colour_shift(img: Image.Image) -> Image.Image:
    warmer = np.asarray(ImageEnhance.Color(img).enhance(0.8), dtype=np.int16)
    warmer = warmer + np.array([12, 0, -12], dtype=np.int16)
    return Image.fromarray(np.clip(warmer, 0, 255).astype(np.uint8))


# name -> transform(img, rng); each is a copy a person would call "the same photo"
TRANSFORMS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "jpeg-q30": lambda im, rng: _jpeg(im, 30),
    "jpeg-q60": lambda im, rng: _jpeg(im, 60),
    "downscale-50": lambda im, rng: _scale(im, 0.5),
    "downscale-25": lambda im, rng: _scale(im, 0.25),
    "crop-05": lambda im, rng: _crop(im, 0.95, rng),
    "crop-10": lambda im, rng: _crop(im, 0.90, rng),
    "crop-20": lambda im, rng: _crop(im, 0.80, rng),
    "brighter-20": lambda im, rng: ImageEnhance.Brightness(im).enhance(1.2),
    "darker-20": lambda im, rng: ImageEnhance.Brightness(im).enhance(0.8),
    "contrast-25": lambda im, rng: ImageEnhance.Contrast(im).enhance(1.25),
    "grey": lambda im, rng: im.convert("L").convert("RGB"),
    "border-white": lambda im, rng: _border(im, 0.06, (255, 255, 255)),
    "border-black": lambda im, rng: _border(im, 0.08, (0, 0, 0)),
    "colour-shift": lambda im, rng: _colour_shift(im),
    "exif-rotate": lambda im, rng: im,  # pixels rotated, EXIF tag set: see _encode
}


@dataclass
class Calibration:
    model: str
    images: int
    normalisation: str  # "pca-whitening" or "none"
    threshold: float
    precision_target: float
    precision: float
    recall: float
    similar_threshold: float
    confidence: dict  # logistic fit: confidence = 1 / (1 + exp(-(a * score + b)))
    sample: int
    positives: int
    negatives: int
    per_transform_recall: dict = field(default_factory=dict)
    table: list = field(default_factory=list)
    seconds: float = 0.0
    method: str = ""  # METHOD when it was fitted ("" = an older method: refit)
    link_threshold: float | None = None  # pairs at least this similar link a source's set
    linked_median: float = 0.0  # median library images excluded per source as its copies
    seed: int = 0  # which images were sampled and how they were copied

    def confidence_of(self, scores: np.ndarray | float) -> np.ndarray | float:
        a, b = self.confidence["a"], self.confidence["b"]
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(scores) + b)))

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """What `info` shows of it."""
        return {
            "threshold": round(self.threshold, 4),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "precision_target": self.precision_target,
            "normalisation": self.normalisation,
            "sample": self.sample,
            "images": self.images,
        }


def confidence(
    calibration: Calibration | None, similarity: float, whitening: Whitening | None
) -> float | None:
    """The calibrated probability that a pair at this similarity is a duplicate; None without a
    calibration, or when the scores are not taken in the space it was fitted in."""
    if calibration is None or (whitening is None) != (calibration.normalisation == "none"):
        return None
    return float(calibration.confidence_of(similarity))


def _encode(img: Image.Image, name: str) -> bytes:
    buf = io.BytesIO()
    if name == "exif-rotate":  # stored rotated, displayed upright: the decoder must undo it
        exif = Image.Exif()
        exif[274] = 6
        img.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=92, exif=exif)
    else:
        img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def load_source(path: str) -> Image.Image:
    with Image.open(path) as img:
        img.draft("RGB", (SOURCE_MAX_SIDE, SOURCE_MAX_SIDE))
        img = to_rgb(ImageOps.exif_transpose(img))
    img.thumbnail((SOURCE_MAX_SIDE, SOURCE_MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def make_copies(path: str, rng: np.random.Generator, per_source: int) -> list[tuple[str, bytes]]:
    """Encoded copies of one library image under randomly chosen transforms."""
    img = load_source(path)
    names = rng.choice(sorted(TRANSFORMS), size=min(per_source, len(TRANSFORMS)), replace=False)
    return [(str(n), _encode(TRANSFORMS[str(n)](img, rng), str(n))) for n in names]


def choose_threshold(pos: np.ndarray, neg: np.ndarray, target: float) -> tuple[float, float, float]:
    """Lowest threshold whose precision on (pos, neg) reaches target: (t, precision, recall)."""
    candidates = np.unique(np.concatenate([pos, neg]))
    best = (float(candidates.max()) + 1e-6 if len(candidates) else 1.0, 1.0, 0.0)
    for t in candidates[::-1]:  # descending: precision falls as t falls
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        if precision < target:
            break
        best = (float(t), precision, tp / max(len(pos), 1))
    return best


def precision_recall_table(pos: np.ndarray, neg: np.ndarray, steps: int = 21) -> list[dict]:
    lo = float(min(pos.min(initial=1), neg.max(initial=0)))
    rows = []
    for t in np.linspace(lo, float(pos.max(initial=1)), steps):
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        rows.append(
            {
                "threshold": round(float(t), 4),
                "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                "recall": round(tp / max(len(pos), 1), 4),
            }
        )
    return rows


def fit_logistic(pos: np.ndarray, neg: np.ndarray, iterations: int = 50) -> dict:
    """1-D logistic regression (Newton's method, small ridge) of label on score."""
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    if not len(x) or y.min() == y.max():
        return {"a": 0.0, "b": 0.0}
    centre, scale = x.mean(), x.std() or 1.0
    z = (x - centre) / scale
    w = np.zeros(2)
    design = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(design @ w)))
        grad = design.T @ (p - y) + 1e-3 * w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    a = w[0] / scale
    return {"a": float(a), "b": float(w[1] - a * centre)}


def calibrate(
    ids: np.ndarray,
    space: np.ndarray,
    paths: dict[int, str],
    hash_codes: np.ndarray,
    embed_bytes: Callable[[list[bytes]], tuple[np.ndarray, list[int]]],
    whitening: Whitening | None,
    model: str,
    precision_target: float = 0.99,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    keep_scores: dict | None = None,
) -> Calibration:
    """Calibrate on the library: `space` holds its vectors in the space scores are taken in;
    `hash_codes` numbers equal file contents equally (aligned with ids)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    sources = []  # (library row, transform names, copies in `space`)
    for done, row in enumerate(chosen, 1):
        embedded = _embed_copies(paths[int(ids[row])], embed_bytes, whitening, rng)
        if embedded is not None:
            sources.append((int(row), *embedded))
        if progress:  # counted in copies: what costs the time
            progress("calibrate", done * TRANSFORMS_PER_SOURCE, len(chosen) * TRANSFORMS_PER_SOURCE)
    pos_parts = [copies @ space[row] for row, _, copies in sources]
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0)
    link = float(np.quantile(pos, LINK_QUANTILE)) if len(pos) else None
    linked = [
        linked_set(row, copies, space, link) if link is not None else np.array([row])
        for row, _, copies in sources
    ]
    if linked and np.median([len(x) for x in linked]) > LEAK_FRACTION * len(ids):
        # Copies and distinct images score alike (e.g. untrained weights): linking would
        # swallow the library. Exclude only each copy's own closer-than-its-source images.
        link, linked = None, [np.array([row]) for row, _, _ in sources]
    negatives, by_transform = [], {}
    for (row, names, copies), p, rows in zip(sources, pos_parts, linked, strict=True):
        negatives.append(_negatives(row, copies, p, space, hash_codes, rows))
        for name, score in zip(names, p, strict=True):
            by_transform.setdefault(name, []).append(float(score))
    neg = np.concatenate(negatives) if negatives else np.zeros(0)
    if keep_scores is not None:  # kept so another --precision needs no new embeddings
        keep_scores.update(
            pos=[round(float(x), 5) for x in pos], neg=[round(float(x), 5) for x in neg]
        )
    threshold, precision, recall = choose_threshold(pos, neg, precision_target)
    median_neg = float(np.median(neg)) if len(neg) else threshold
    return Calibration(
        model=model,
        images=len(ids),
        normalisation="pca-whitening" if whitening is not None else "none",
        threshold=threshold,
        precision_target=precision_target,
        precision=precision,
        recall=recall,
        similar_threshold=threshold - 0.5 * (threshold - median_neg),
        confidence=fit_logistic(pos, neg),
        sample=len(chosen),
        positives=len(pos),
        negatives=len(neg),
        per_transform_recall={
            k: round(float(np.mean(np.array(v) >= threshold)), 4)
            for k, v in sorted(by_transform.items())
        },
        table=precision_recall_table(pos, neg),
        seconds=time.perf_counter() - started,
        method=METHOD,
        link_threshold=None if link is None else round(link, 5),
        linked_median=float(np.median([len(x) - 1 for x in linked])) if linked else 0.0,
        seed=seed,
    )


def _embed_copies(path, embed_bytes, whitening, rng):
    """(transform names, copy vectors in the scoring space) for one source, or None."""
    try:
        copies = make_copies(path, rng, TRANSFORMS_PER_SOURCE)
    except (OSError, ImageError, ValueError):
        return None  # the file changed or vanished since indexing: skip it
    vectors, ok = embed_bytes([data for _, data in copies])  # one batch per source
    if not ok:
        return None
    if whitening is not None:
        vectors = whitening.apply(vectors)
    return [copies[i][0] for i in ok], vectors


def linked_set(row: int, copies: np.ndarray, space: np.ndarray, link: float) -> np.ndarray:
    """Library rows reachable from the source or its copies through pairs scoring >= link, at
    most LINK_HOPS beyond those first reached; it stops growing once it holds LINK_MAX rows
    (a set that big is leaking into distinct images). See the module doc."""
    reached = {row}
    frontier = [row, *np.flatnonzero((copies @ space.T >= link).any(axis=0)).tolist()]
    reached.update(frontier)
    for _ in range(LINK_HOPS):
        if len(reached) >= LINK_MAX or not frontier:
            break
        near = np.zeros(len(space), bool)
        for start in range(0, len(frontier), 16):  # 16 rows of scores at a time
            near |= (space[frontier[start : start + 16]] @ space.T >= link).any(axis=0)
        frontier = [int(x) for x in np.flatnonzero(near) if x not in reached]
        reached.update(frontier)
    return np.fromiter(reached, np.int64)


def _negatives(row, copies, pos, space, hash_codes, linked) -> np.ndarray:
    """Each copy's NEGATIVES_PER_COPY nearest library images outside the source's linked set,
    never one with the source's content hash nor one closer to the copy than its source is."""
    excluded = hash_codes == hash_codes[row]
    excluded[linked] = True
    sims = copies @ space.T
    sims[:, excluded] = -np.inf
    sims[sims >= pos[:, None]] = -np.inf  # e.g. the library's grey version of a grey copy
    k = min(NEGATIVES_PER_COPY, sims.shape[1])
    top = -np.partition(-sims, k - 1, axis=1)[:, :k]
    return top[np.isfinite(top)]
