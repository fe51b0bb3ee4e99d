"""The duplicate job over a library: calibration management, tiers, --within/--against/--of."""

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from indexer.decode import pixel_digest
from indexer.errors import BadQuery, ImageError

from . import calibrate as cal
from .decisions import respect_decisions
from .duplicates import DupReport, Group, Member, exact_groups, leader_groups, neighbour_pairs
from .normalise import Whitening, fit_whitening

REFIT_GROWTH = 2.0  # recalibrate when the library has grown or shrunk by this factor
AGAINST_CANDIDATES = 32  # library neighbours looked at per --against image


@dataclass
class DupOptions:
    threshold: str | float = "auto"  # "auto" (calibrated) or a raw cosine
    precision: float = 0.99
    within: str | None = None
    against: tuple[str, ...] = ()
    of: str | None = None
    include_similar: bool = False
    similar_threshold: float | None = None
    sample: int = cal.DEFAULT_SAMPLE
    ray: str | None = None  # Ray cluster address or "auto": neighbour search on Ray tasks


@dataclass
class Library:
    """The rows a duplicate run looks at, aligned by position."""

    ids: np.ndarray
    vectors: np.ndarray
    rows: list[dict] = field(default_factory=list)

    @property
    def hashes(self) -> list[str | None]:
        return [r["hash"] for r in self.rows]


def load_library(coll, within: str | None = None) -> Library:
    store = coll.store()
    ids, vectors = store.vectors()
    meta = store.images_by_ids(ids, "id, path, hash, width, height, size")
    if within:
        inside = np.isin(ids, store.ids_under(within))
        ids, vectors = ids[inside], vectors[inside]
    return Library(ids, vectors, [meta[int(i)] for i in ids])


# --- calibration ---------------------------------------------------------------------------------


def stored_calibration(coll) -> tuple[cal.Calibration, dict, Whitening | None] | None:
    """The library's calibration if still valid for its model and size, else None."""
    store = coll.store()
    row = store.calibration()
    model = store.model()
    if not row or not model or row["model"] != model.id:
        return None
    count = store.counts().get("ok", 0)
    if not count or not (1 / REFIT_GROWTH <= count / max(row["images"], 1) <= REFIT_GROWTH):
        return None
    params = json.loads(row["params"])
    if params["calibration"].get("method") != cal.METHOD:
        return None  # fitted by an older method: refit
    whitening = Whitening.from_bytes(row["whitening"]) if row["whitening"] else None
    return cal.Calibration(**params["calibration"]), params["scores"], whitening


def run_calibration(
    coll, precision: float, sample: int, progress=None, seed: int = 0
) -> tuple[cal.Calibration, Whitening | None]:
    """Fit whitening on all library vectors and calibrate the threshold; store both."""
    lib = load_library(coll)
    if len(lib.ids) < 2:
        raise BadQuery("calibration needs at least two indexed images")
    whitening = fit_whitening(lib.vectors)
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    embedder = coll.embedder()

    def embed_bytes(datas: list[bytes]) -> tuple[np.ndarray, list[int]]:
        """Embed encoded images in one batch: (vectors, indices of those that decoded)."""
        from indexer.decode import decode_bytes

        pixels, ok = [], []
        for i, data in enumerate(datas):
            try:
                pixels.append(decode_bytes(data, embedder.recipe, None).pixels)
                ok.append(i)
            except ImageError:
                continue
        if not pixels:
            return np.zeros((0, embedder.dim), np.float32), []
        return embedder.embed(np.stack(pixels)), ok

    _, codes = np.unique(np.array([h or "" for h in lib.hashes]), return_inverse=True)
    paths = {int(i): r["path"] for i, r in zip(lib.ids, lib.rows, strict=True)}
    scores: dict = {}
    calibration = cal.calibrate(
        lib.ids,
        space,
        paths,
        codes,
        embed_bytes,
        whitening,
        embedder.id,
        precision,
        sample,
        seed=seed,
        progress=progress,
        keep_scores=scores,
    )
    coll.store().save_calibration(
        embedder.id,
        len(lib.ids),
        {"calibration": calibration.to_json(), "scores": scores},
        whitening.to_bytes() if whitening else None,
    )
    return calibration, whitening


def ensure_calibration(
    coll, precision: float, sample: int, progress=None, force=False
) -> tuple[cal.Calibration, Whitening | None]:
    stored = None if force else stored_calibration(coll)
    if stored is None:
        return run_calibration(coll, precision, sample, progress)
    calibration, scores, whitening = stored
    if calibration.precision_target != precision:  # re-choose from the kept pair scores
        pos, neg = np.array(scores["pos"]), np.array(scores["neg"])
        t, p, r = cal.choose_threshold(pos, neg, precision)
        calibration.threshold, calibration.precision, calibration.recall = t, p, r
        calibration.precision_target = precision
    return calibration, whitening


# --- the job -------------------------------------------------------------------------------------


def find_duplicates(coll, options: DupOptions, progress=None) -> DupReport:
    started = time.perf_counter()
    calibration, whitening, threshold, mode = _thresholds(coll, options, progress)
    if options.against or options.of:
        report = _against(coll, options, calibration, whitening, threshold, progress)
    else:
        report = _whole_library(coll, options, calibration, whitening, threshold, progress)
    report = respect_decisions(coll.store(), report)  # "not duplicates" / "keep both" stick
    report.mode = mode
    report.seconds = time.perf_counter() - started
    return report


def _thresholds(coll, options: DupOptions, progress):
    if options.threshold == "auto":
        calibration, whitening = ensure_calibration(
            coll, options.precision, options.sample, progress
        )
        return calibration, whitening, calibration.threshold, "auto"
    try:
        threshold = float(options.threshold)
    except ValueError:
        raise BadQuery(f"--threshold: 'auto' or a number, not {options.threshold!r}") from None
    if not -1 <= threshold <= 1:
        raise BadQuery("--threshold is a cosine between -1 and 1")
    stored = stored_calibration(coll)
    calibration = stored[0] if stored else None
    return calibration, None, threshold, "cosine"


def _similar_threshold(options, calibration, threshold) -> float:
    if options.similar_threshold is not None:
        return options.similar_threshold
    if calibration is not None and calibration.threshold == threshold:
        return calibration.similar_threshold
    return threshold - 0.05


def _whole_library(coll, options, calibration, whitening, threshold, progress) -> DupReport:
    lib = load_library(coll, options.within)
    report = DupReport(
        threshold, calibration.to_json() if calibration else None, images=len(lib.ids)
    )
    exact = exact_groups(lib.hashes)
    report.groups += [_identical_group(lib, rows, "exact") for rows in exact]
    twins = np.zeros(len(lib.ids), bool)  # identical files after the first: grouped already
    for rows in exact:
        twins[rows[1:]] = True
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    low = (
        _similar_threshold(options, calibration, threshold)
        if options.include_similar
        else threshold
    )
    rows, cols, sims = _pairs(space, min(low, threshold), options.ray, progress)
    for same in _pixel_identical(lib, rows, cols, sims >= threshold, twins):
        report.groups.append(_identical_group(lib, same, "pixels"))
        twins[same[1:]] = True
    priority = np.array(
        [(r["width"] or 0) * (r["height"] or 0) + (r["size"] or 0) / 1e12 for r in lib.rows]
    )  # resolution, then file size (less compressed)
    copy = leader_groups(len(lib.ids), rows, cols, sims, threshold, priority, twins)
    taken = twins.copy()
    for leader, members in copy:
        report.groups.append(_near_group(lib, leader, members, "copy", calibration, whitening))
        taken[[leader] + [m for m, _ in members]] = True
    if options.include_similar:
        for leader, members in leader_groups(len(lib.ids), rows, cols, sims, low, priority, taken):
            report.groups.append(
                _near_group(lib, leader, members, "similar", calibration, whitening)
            )
    return report


def _pairs(space: np.ndarray, threshold: float, ray: str | None, progress):
    """Neighbour pairs, on Ray tasks with --ray (the same pairs either way)."""
    if ray:
        from .ray_dups import ray_neighbour_pairs

        return ray_neighbour_pairs(space, threshold, ray, progress)
    return neighbour_pairs(space, threshold, progress)


def _member(lib: Library, row: int, score: float, confidence, similarity, match) -> Member:
    r = lib.rows[row]
    return Member(
        int(lib.ids[row]),
        r["path"],
        float(score),
        confidence,
        r["width"],
        r["height"],
        r["size"],
        similarity,
        match,
    )


def _identical_group(lib: Library, rows: list[int], tier: str) -> Group:
    first = lib.vectors[rows[0]]
    out = [_member(lib, rows[0], 1.0, 1.0, 1.0, "first")]
    for r in rows[1:]:
        out.append(_member(lib, r, float(lib.vectors[r] @ first), 1.0, 1.0, tier))
    return Group(tier, out)


def _pixel_identical(lib: Library, rows, cols, close, twins) -> list[list[int]]:
    """Sets of images with the same decoded pixels, among close same-size pairs (a full decode
    of each candidate, once)."""
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    for a, b in zip(rows[close], cols[close], strict=True):
        a, b = int(a), int(b)
        if twins[a] or twins[b] or not _same_pixels(lib.rows[a], lib.rows[b]):
            continue
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        parent[root(b)] = root(a)
    sets: dict[int, list[int]] = {}
    for i in parent:
        sets.setdefault(root(i), []).append(i)
    return [
        sorted(v, key=lambda r: -(lib.rows[r]["size"] or 0)) for v in sets.values() if len(v) > 1
    ]


def _near_group(lib, leader, members, tier, calibration, whitening) -> Group:
    out = [_member(lib, leader, 1.0, None, 1.0, "first")]
    lead_vec = lib.vectors[leader]
    for row, similarity in members:
        cosine = float(lib.vectors[row] @ lead_vec)
        confidence = _confidence(calibration, similarity, whitening)
        out.append(_member(lib, row, cosine, confidence, similarity, tier))
    return Group(tier, out)


def _confidence(calibration, similarity, whitening) -> float | None:
    if calibration is None or (whitening is None) != (calibration.normalisation == "none"):
        return None
    return float(calibration.confidence_of(similarity))


def _same_pixels(a: dict, b: dict) -> bool:
    """Identical decoded pixels (checked only for same-size candidates: a full decode each)."""
    if (a["width"], a["height"]) != (b["width"], b["height"]):
        return False
    try:
        return _digest(a["path"]) == _digest(b["path"])
    except (OSError, ImageError, ValueError):
        return False


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: str) -> str:
    """Pixel digest, cached by (path, size, mtime): a long-running server never sees a stale one."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = pixel_digest(path)
    return _DIGESTS[key]


# --- --against / --of ----------------------------------------------------------------------------


def _against(coll, options, calibration, whitening, threshold, progress) -> DupReport:
    """Which images under the given paths already have a duplicate in the library.

    Time grows with the number of query images: each is looked up in the library's index.
    """
    from indexer.job import sha256_file
    from indexer.walk import walk

    roots = list(options.against) + ([options.of] if options.of else [])
    files = [f.path for f in walk(roots)]
    if not files:
        raise BadQuery(f"no images under {', '.join(roots)}")
    store = coll.store()
    outside = set(files)
    report = DupReport(
        threshold,
        calibration.to_json() if calibration else None,
        images=store.counts().get("ok", 0),
    )
    for done, path in enumerate(files, 1):
        group = _match_one(
            coll, path, sha256_file(path), outside, calibration, whitening, threshold, options
        )
        if group:
            report.groups.append(group)
        if progress:
            progress("dups", done, len(files))
    return report


def _match_one(coll, path, digest, outside, calibration, whitening, threshold, options):
    store = coll.store()
    query = coll.vector_for_file(path)
    scores, found = coll.vector_index().search(query[None], AGAINST_CANDIDATES)
    ids = [int(i) for i in found[0] if i >= 0]
    rows = store.images_by_ids(ids, "id, path, hash, width, height, size, vector")
    rows = {i: r for i, r in rows.items() if r["path"] not in outside}
    if options.within:
        inside = set(store.ids_under(options.within).tolist())
        rows = {i: r for i, r in rows.items() if i in inside}
    st = os.stat(path)
    members = []
    for i, r in rows.items():
        vec = np.frombuffer(r["vector"], np.float32)
        cosine = float(vec @ query)
        sim = (
            float(whitening.apply(vec[None]) @ whitening.apply(query[None]).T)
            if whitening
            else cosine
        )
        if r["hash"] == digest:
            match, conf = "exact", 1.0
        elif sim >= threshold:
            match = "pixels" if _same_pixels({"path": path, **_dims(coll, path)}, r) else "copy"
            conf = 1.0 if match == "pixels" else _confidence(calibration, sim, whitening)
        else:
            continue
        members.append(
            Member(i, r["path"], cosine, conf, r["width"], r["height"], r["size"], sim, match)
        )
    if not members:
        return None
    members.sort(key=lambda m: (-(m.match == "exact"), -m.score))
    first = Member(-1, os.path.abspath(path), 1.0, None, None, None, st.st_size, 1.0, "first")
    tiers = {m.match for m in members}
    tier = next(t for t in ("copy", "pixels", "exact") if t in tiers)
    return Group(tier, [first] + members)


def _dims(coll, path: str) -> dict:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        w, h = ImageOps.exif_transpose(img).size if img.getexif().get(274, 1) != 1 else img.size
    return {"width": w, "height": h}
