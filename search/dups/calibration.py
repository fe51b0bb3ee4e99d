"""`--threshold auto`: calibrate the duplicate rule on the library's own photos.

Take a sample of the library, make known copies of each with the documented transforms, and
judge each copy's pixels against its source (search/dups/evidence.py): the share of copies pixels
confirm, and the scores of those they do not, are the copy side of the estimate that sets the
embeddings-alone threshold from the library's own pairs (search/dups/precision.py). Embedded
copies are scored against their source (positives) and against their nearest *distinct* library
images (negatives); the calibrated threshold is the lowest score that reaches the target precision
on those pairs, and a logistic fit of the same pairs turns a score into a confidence.

Embedding is what a calibration costs (a forward pass a copy), judging pixels almost nothing. So
every copy is judged, but only these are embedded (METHOD "pixel-evidence/4"): every copy that
pixels do not confirm (their scores are the estimate's `alone_scores`, as before), and
EMBEDDED_PER_SOURCE of the others drawn at random. Each drawn copy stands for the undrawn ones of
its source (its weight: others / drawn), and so do its negatives: the weighted pairs are an
unbiased estimate of the pairs all copies would give, at a quarter of the forward passes.

"Distinct" is the hard part. The library may already hold copies of the source (a training set
where every image has ~15 variants): those must not count as negatives, or they push the threshold
up to where nothing is found. They are recognised by their pixels: a library image that pixel
evidence calls the same picture as the source is not a negative (nor one with its bytes, nor one
closer to the copy than its source is). The library's look-alikes of the source — the pairs that
would become false groups — stay negatives. (An earlier method excluded every image reachable
through close pairs, which dropped exactly those look-alikes: the issue that replaced it.)
"""

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from indexer.config import DEFAULT_PRECISION
from indexer.decode import to_rgb
from indexer.errors import ImageError
from indexer.evidence import Evidence
from search.dups.evidence import judge
from search.dups.whitening import Whitening

SOURCE_MAX_SIDE = 768  # sources are shrunk first: transforms on 12 MP would dominate the time
NEGATIVES_PER_COPY = 3
# The sample is small: pixel evidence admits most copies, and the embeddings-alone threshold is
# set from the library's own pairs (precision.py); the sample gives the copy side of that
# estimate. 30 sources x 8 transforms = 240 copies judged at most, of which about 2 a source
# plus those pixels miss are embedded: a first `dups` costs a fraction of its `index`
# (bench/first_dups.py).
DEFAULT_SAMPLE = 30  # sources at most
MIN_SAMPLE = 8  # sources at least (64 copies)
IMAGES_PER_SOURCE = 40  # the sample grows with the library: one source per 40 indexed images
TRANSFORMS_PER_SOURCE = 8  # of the 15, drawn per source: every transform is seen across sources
EMBEDDED_PER_SOURCE = 2  # copies embedded per source besides those pixels do not confirm
NEGATIVE_CANDIDATES = 12  # nearest library images looked at per copy for its negatives
METHOD = "pixel-evidence/4"  # stored with a calibration: another method refits it


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
    seed: int = 0  # which images were sampled and how they were copied
    # the copies' pixels judged against their sources (precision.py): {"rate": share confirmed,
    # "positives": copies judged, "alone_scores": scores of those not confirmed, "per_transform"}
    evidence: dict = field(default_factory=dict)
    library_copies_excluded: int = 0  # library images pixels call copies of a source
    embedded: int = 0  # copies embedded (forward passes); `positives` counts every copy judged

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
    with Image.open(path) as opened:
        opened.draft("RGB", (SOURCE_MAX_SIDE, SOURCE_MAX_SIDE))
        img = to_rgb(ImageOps.exif_transpose(opened))
    img.thumbnail((SOURCE_MAX_SIDE, SOURCE_MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def make_copies(path: str, rng: np.random.Generator, per_source: int) -> list[tuple[str, bytes]]:
    """Encoded copies of one library image under randomly chosen transforms."""
    img = load_source(path)
    names = rng.choice(sorted(TRANSFORMS), size=min(per_source, len(TRANSFORMS)), replace=False)
    return [(str(n), _encode(TRANSFORMS[str(n)](img, rng), str(n))) for n in names]


def _weights(scores: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)


def choose_threshold(
    pos: np.ndarray,
    neg: np.ndarray,
    target: float,
    pos_w: np.ndarray | None = None,
    neg_w: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Lowest threshold whose precision on (pos, neg) reaches target: (t, precision, recall).
    Each pair counts with its weight (the copies it stands for; 1 without weights)."""
    pos_w, neg_w = _weights(pos, pos_w), _weights(neg, neg_w)
    candidates = np.unique(np.concatenate([pos, neg]))
    best = (float(candidates.max()) + 1e-6 if len(candidates) else 1.0, 1.0, 0.0)
    total = float(pos_w.sum()) or 1.0
    for t in candidates[::-1]:  # descending: precision falls as t falls
        tp, fp = float(pos_w[pos >= t].sum()), float(neg_w[neg >= t].sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        if precision < target:
            break
        best = (float(t), precision, tp / total)
    return best


def precision_recall_table(
    pos: np.ndarray,
    neg: np.ndarray,
    steps: int = 21,
    pos_w: np.ndarray | None = None,
    neg_w: np.ndarray | None = None,
) -> list[dict]:
    pos_w, neg_w = _weights(pos, pos_w), _weights(neg, neg_w)
    lo = float(min(pos.min(initial=1), neg.max(initial=0)))
    total = float(pos_w.sum()) or 1.0
    rows = []
    for t in np.linspace(lo, float(pos.max(initial=1)), steps):
        tp, fp = float(pos_w[pos >= t].sum()), float(neg_w[neg >= t].sum())
        rows.append(
            {
                "threshold": round(float(t), 4),
                "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                "recall": round(tp / total, 4),
            }
        )
    return rows


def fit_logistic(
    pos: np.ndarray,
    neg: np.ndarray,
    iterations: int = 50,
    pos_w: np.ndarray | None = None,
    neg_w: np.ndarray | None = None,
) -> dict:
    """1-D logistic regression (Newton's method, small ridge) of label on score, each pair
    counted with its weight."""
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    weight = np.concatenate([_weights(pos, pos_w), _weights(neg, neg_w)])
    if not len(x) or y.min() == y.max():
        return {"a": 0.0, "b": 0.0}
    centre, scale = x.mean(), x.std() or 1.0
    z = (x - centre) / scale
    w = np.zeros(2)
    design = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(design @ w)))
        grad = design.T @ (weight * (p - y)) + 1e-3 * w
        hess = design.T @ (design * (weight * p * (1 - p))[:, None]) + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    a = w[0] / scale
    return {"a": float(a), "b": float(w[1] - a * centre)}


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(np.asarray(weights, np.float64)[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


@dataclass
class Decoded:
    """A copy decoded as `index` decodes a file: the model input and the pixel evidence."""

    pixels: np.ndarray
    evidence: Evidence | None
    dims: tuple[int, int]  # upright width, height


@dataclass
class Codec:
    """How a calibration turns a copy's bytes into what `index` would store of it: `decode`
    (None when it does not decode) and `embed` (a batch of model inputs -> raw vectors)."""

    decode: Callable[[bytes], Decoded | None]
    embed: Callable[[np.ndarray], np.ndarray]


def calibrate(
    ids: np.ndarray,
    space: np.ndarray,
    paths: dict[int, str],
    hash_codes: np.ndarray,
    codec: Codec,
    whitening: Whitening | None,
    model: str,
    precision_target: float = DEFAULT_PRECISION,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    keep_scores: dict | None = None,
    seen=None,
    embedded_per_source: int = EMBEDDED_PER_SOURCE,
) -> Calibration:
    """Calibrate on the library: `space` holds its vectors in the space scores are taken in;
    `hash_codes` numbers equal file contents equally (aligned with ids); `seen` is the library's
    pixel evidence (evidence.Seen, aligned with ids), None to calibrate on embeddings only."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)  # the sample and its copies (as pixel-evidence/3 drew them)
    draw = np.random.default_rng([seed, 1])  # which copies are embedded: a stream of its own
    chosen = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    judged = _Judged(seen)
    picked = []  # (library row, transform names, model inputs, weights) of the copies to embed
    judged_copies = 0
    for done, row in enumerate(chosen, 1):
        copies = _copies_of(paths[int(ids[row])], codec, rng)
        if copies:
            verdicts = [judged.verdict(int(row), d) for _, d in copies]
            for (name, _), verdict in zip(copies, verdicts, strict=True):
                judged.tally(name, verdict)
            pick, weights = _to_embed(verdicts, draw, embedded_per_source)
            inputs = [copies[i][1].pixels for i in pick]
            picked.append((int(row), [copies[i][0] for i in pick], inputs, weights, verdicts, pick))
            judged_copies += len(copies)
        if progress:  # counted in copies made and judged
            progress("calibrate", done * TRANSFORMS_PER_SOURCE, len(chosen) * TRANSFORMS_PER_SOURCE)
    everything = [x for _, _, inputs, *_ in picked for x in inputs]
    vectors = _embed_all(codec, everything)
    if whitening is not None and len(vectors):
        vectors = whitening.apply(vectors)
    sources = []  # (library row, transform names, copies in `space`, their weights)
    at = 0
    for row, names, inputs, weights, verdicts, pick in picked:
        mine = vectors[at : at + len(inputs)]
        at += len(inputs)
        for i, score in zip(pick, mine @ space[row], strict=True):
            judged.record(verdicts[i], float(score))
        sources.append((row, names, mine, weights))
    embedded = len(everything)
    pos_parts = [vecs @ space[row] for row, _, vecs, _ in sources]
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0)
    pos_w = np.concatenate([w for *_, w in sources]) if sources else np.zeros(0)
    negatives, neg_weights, excluded = [], [], 0
    by_transform: dict[str, list[tuple[float, float]]] = {}
    for (row, names, vecs, weights), p in zip(sources, pos_parts, strict=True):
        neg, of_copy, dropped = _negatives(row, vecs, p, space, hash_codes, judged)
        negatives.append(neg)
        neg_weights.append(weights[of_copy])  # a copy's negatives stand for what it stands for
        excluded += dropped
        for name, score, weight in zip(names, p, weights, strict=True):
            by_transform.setdefault(name, []).append((float(score), float(weight)))
    neg = np.concatenate(negatives) if negatives else np.zeros(0)
    neg_w = np.concatenate(neg_weights) if neg_weights else np.zeros(0)
    if keep_scores is not None:  # kept so another --precision needs no new embeddings
        keep_scores.update(
            pos=[round(float(x), 5) for x in pos],
            neg=[round(float(x), 5) for x in neg],
            pos_w=[round(float(x), 4) for x in pos_w],
            neg_w=[round(float(x), 4) for x in neg_w],
        )
    threshold, precision, recall = choose_threshold(pos, neg, precision_target, pos_w, neg_w)
    median_neg = weighted_median(neg, neg_w) if len(neg) else threshold
    return Calibration(
        model=model,
        images=len(ids),
        normalisation="pca-whitening" if whitening is not None else "none",
        threshold=threshold,
        precision_target=precision_target,
        precision=precision,
        recall=recall,
        similar_threshold=threshold - 0.5 * (threshold - median_neg),
        confidence=fit_logistic(pos, neg, pos_w=pos_w, neg_w=neg_w),
        sample=len(chosen),
        positives=judged_copies,
        negatives=len(neg),
        per_transform_recall={
            k: round(sum(w for s, w in v if s >= threshold) / sum(w for _, w in v), 4)
            for k, v in sorted(by_transform.items())
        },
        table=precision_recall_table(pos, neg, pos_w=pos_w, neg_w=neg_w),
        seconds=time.perf_counter() - started,
        method=METHOD,
        seed=seed,
        evidence=judged.summary() if seen is not None else {},
        library_copies_excluded=excluded,
        embedded=embedded,
    )


EMBED_BATCH = 16  # copies a forward pass takes (int8 vectors do not depend on their batch)


def _embed_all(codec: Codec, inputs: list[np.ndarray]) -> np.ndarray:
    parts = [
        codec.embed(np.stack(inputs[k : k + EMBED_BATCH]))
        for k in range(0, len(inputs), EMBED_BATCH)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _to_embed(verdicts: Sequence[bool | None], rng: np.random.Generator, k: int):
    """Which of a source's copies to embed, and the weight of each: every copy pixels do not
    confirm (False: its score is needed as it is), and EMBEDDED_PER_SOURCE of the rest drawn at
    random, each standing for rest / drawn copies."""
    must = [i for i, v in enumerate(verdicts) if v is False]
    rest = [i for i, v in enumerate(verdicts) if v is not False]
    drawn = sorted(rng.choice(rest, size=min(k, len(rest)), replace=False))
    weight = len(rest) / len(drawn) if drawn else 0.0
    pick = must + [int(i) for i in drawn]
    return pick, np.array([1.0] * len(must) + [weight] * len(drawn))


class _Judged:
    """The copies' pixels judged against their sources, and library images against sources."""

    def __init__(self, seen):
        self.seen = seen
        self.confirmed: dict[str, list[bool]] = {}
        self.alone: list[float] = []
        self.cache: dict[tuple[int, int], bool] = {}

    def verdict(self, row: int, copy: Decoded) -> bool | None:
        """One synthetic copy's pixels against its source's: confirmed (True) or not (False)
        where embeddings alone could admit it (a colour picture with information), else None."""
        if self.seen is None or self.seen.needs_evidence(row) or copy.evidence is None:
            return None
        if copy.evidence.greyscale:
            return None  # grey pictures enter only with evidence: not an embeddings-alone case
        return (
            judge(self.seen.evidence[row], self.seen.dims[row], copy.evidence, copy.dims)
            is not None
        )

    def record(self, verdict: bool | None, score: float) -> None:
        """Count an embedded copy's verdict; an unconfirmed one's score is the estimate's."""
        if verdict is False:
            self.alone.append(round(score, 5))

    def tally(self, name: str, verdict: bool | None) -> None:
        """Count a copy's verdict (every copy judged, embedded or not)."""
        if verdict is not None:
            self.confirmed.setdefault(name, []).append(verdict)

    def same_picture(self, row: int, other: int) -> bool:
        """Pixels call library images `row` and `other` one picture (a copy already there)."""
        if self.seen is None:
            return False
        key = (min(row, other), max(row, other))
        if key not in self.cache:
            self.cache[key] = self.seen.judge_coloured(row, other) is not None
        return self.cache[key]

    def summary(self) -> dict:
        flat = [ok for oks in self.confirmed.values() for ok in oks]
        return {
            "rate": round(float(np.mean(flat)), 5) if flat else 0.0,
            "positives": len(flat),
            "alone_scores": sorted(self.alone),
            "per_transform": {
                k: round(float(np.mean(v)), 4) for k, v in sorted(self.confirmed.items())
            },
        }


def _copies_of(path: str, codec: Codec, rng: np.random.Generator) -> list[tuple[str, Decoded]]:
    """A source's copies decoded as `index` decodes files: (transform name, decoded)."""
    try:
        copies = make_copies(path, rng, TRANSFORMS_PER_SOURCE)
    except (OSError, ImageError, ValueError):
        return []  # the file changed or vanished since indexing: skip it
    out = []
    for name, data in copies:
        decoded = codec.decode(data)
        if decoded is not None:
            out.append((name, decoded))
    return out


def _negatives(row, copies, pos, space, hash_codes, judged: _Judged):
    """Each copy's NEGATIVES_PER_COPY nearest library images that are not the source's copies:
    never one with the source's content hash, one pixels call the source's picture, nor one
    closer to the copy than its source is. (negative scores, the copy each belongs to, how many
    library images were left out as copies by their pixels)."""
    sims = copies @ space.T
    sims[:, hash_codes == hash_codes[row]] = -np.inf
    sims[sims >= pos[:, None]] = -np.inf  # e.g. the library's grey version of a grey copy
    k = min(NEGATIVE_CANDIDATES, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    out, of_copy, dropped = [], [], set()
    for c in range(len(copies)):
        taken = 0
        for j in sorted(top[c].tolist(), key=lambda j: -sims[c, j]):
            if taken == NEGATIVES_PER_COPY or not np.isfinite(sims[c, j]):
                break
            if judged.same_picture(row, j):
                dropped.add(j)
                continue
            out.append(float(sims[c, j]))
            of_copy.append(c)
            taken += 1
    return np.array(out, np.float64), np.array(of_copy, np.int64), len(dropped)
