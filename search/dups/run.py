"""The duplicate job over a library: calibration management, tiers, --within (the pixel evidence
in search/dups/evidence.py, --against/--of in search/dups/against.py)."""

import dataclasses
import functools
import json
import time
from dataclasses import dataclass

import numpy as np

from indexer.decode import decode_bytes
from indexer.errors import BadQuery, ImageError
from search.dups import bursts, rotations
from search.dups import calibration as cal
from search.dups.against import against
from search.dups.decisions import respect_decisions
from search.dups.evidence import (
    VERIFY_MIN_COSINE,
    confirmed_pairs,
    grey_pairs_with_evidence,
    pixel_pairs,
    with_pixel_evidence,
)
from search.dups.groups import (
    TIERS,
    DupReport,
    Group,
    Library,
    Member,
    keep_reference,
    leader_groups,
    twin_units,
)
from search.dups.pairs import neighbour_pairs
from search.dups.ray import ray_neighbour_pairs
from search.dups.whitening import Whitening, fit_whitening

VERIFY_MAX_IMAGES = 5_000  # pixel checks decode a thumbnail per image (~10 ms a core) each run
REFIT_GROWTH = 2.0  # recalibrate when the library has grown or shrunk by this factor


@dataclass
class DupOptions:
    threshold: str | float = "auto"  # "auto" (calibrated) or a raw cosine
    precision: float = 0.99
    within: str | None = None
    against: tuple[str, ...] = ()
    of: str | None = None
    include_similar: bool = False
    similar_threshold: float | None = None
    sample: int | None = None  # calibration sources; None: grows with the library
    ray: str | None = None  # Ray cluster address or "auto": neighbour search on Ray tasks
    reference: tuple[str, ...] = ()  # folders whose files are kept, never planned for removal
    burst_window: str | float | None = None  # '10s': `similar` only when taken this close
    rotations: bool = False  # also copies turned 90/180/270 degrees or mirrored in their pixels


def load_library(coll, within: str | None = None) -> Library:
    store = coll.store()
    ids, vectors = store.vectors()
    meta = store.images_by_ids(ids, "id, path, hash, width, height, size, taken")
    # a writer (apply, an index sweep) may have removed rows between the two reads: leave them out
    keep = np.fromiter((int(i) in meta for i in ids), bool, len(ids))
    if within:
        keep &= np.isin(ids, store.ids_under(within))
    if not keep.all():
        ids, vectors = ids[keep], vectors[keep]
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


def calibration_due(coll, options: DupOptions) -> int | None:
    """Known copies the next `dups` run must embed to calibrate, or None (nothing to do)."""
    if options.threshold != "auto" or stored_calibration(coll) is not None:
        return None
    images = coll.store().counts().get("ok", 0)
    return (
        None
        if images < 2
        else min(options.sample or cal.sample_for(images), images) * cal.TRANSFORMS_PER_SOURCE
    )


def embed_encoded(embedder, recipe, datas: list[bytes]) -> tuple[np.ndarray, list[int]]:
    """Embed encoded images in one batch: (vectors, indices of those that decoded)."""
    pixels, ok = [], []
    for i, data in enumerate(datas):
        try:
            pixels.append(decode_bytes(data, recipe, None).pixels)
            ok.append(i)
        except ImageError:
            continue
    if not pixels:
        return np.zeros((0, embedder.dim), np.float32), []
    return embedder.embed(np.stack(pixels)), ok


def run_calibration(
    coll, precision: float, sample: int | None, progress=None, seed: int = 0
) -> tuple[cal.Calibration, Whitening | None]:
    """Fit whitening on all library vectors and calibrate the threshold; store both."""
    lib = load_library(coll)
    if len(lib.ids) < 2:
        raise BadQuery("calibration needs at least two indexed images")
    sample = sample or cal.sample_for(len(lib.ids))
    whitening = fit_whitening(lib.vectors)
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    embedder = coll.embedder()

    embed_bytes = functools.partial(embed_encoded, embedder, embedder.recipe)

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
    coll, precision: float, sample: int | None, progress=None, force=False
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
    options = dataclasses.replace(options, burst_window=bursts.parse_window(options.burst_window))
    calibration, whitening, threshold, mode = _thresholds(coll, options, progress)
    if options.against or options.of:
        report = against(coll, options, calibration, whitening, threshold, progress)
        if options.rotations:  # the query files that found nothing, looked up turned
            scoring = (calibration, whitening, threshold)
            rotations.against_turned(coll, report, options, *scoring, progress)
    else:
        report = _whole_library(coll, options, calibration, whitening, threshold, progress)
    report = respect_decisions(coll.store(), report)  # "not duplicates" / "keep both" stick
    report = keep_reference(report, options.reference)
    for g in report.groups:  # a burst is a stack with its best shot, not duplicates to delete
        if g.tier == "similar":
            g.best = bursts.best_shot([m.path for m in g.members], _pixels(g))
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
    """Groups over the library under the one-file-one-group rule (see search/dups/groups.py)."""
    lib = load_library(coll, options.within)
    report = DupReport(
        threshold, calibration.to_json() if calibration else None, images=len(lib.ids)
    )
    if options.within and not len(lib.ids):
        raise BadQuery(f"--within {options.within}: no indexed image lies under that folder")
    if len(lib.ids) < 2:
        return report  # nothing to compare (a one-image library)
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    include_similar = options.include_similar or options.burst_window is not None
    low = _similar_threshold(options, calibration, threshold) if include_similar else threshold
    verifying = whitening is not None and len(lib.ids) <= VERIFY_MAX_IMAGES
    band = min(calibration.similar_threshold, threshold) if verifying else threshold
    rows, cols, sims = _pairs(space, min(low, threshold, band), options.ray, progress)
    units = twin_units(lib.hashes, pixel_pairs(lib, rows, cols, sims >= threshold), lib.sizes)
    twins = units.twins_of()
    is_twin = units.rep != np.arange(len(lib.ids))  # grouped through their representative
    raw = np.einsum("ij,ij->i", lib.vectors[rows], lib.vectors[cols])
    banded = (sims < threshold) & (raw >= VERIFY_MIN_COSINE) & ~(is_twin[rows] | is_twin[cols])
    crop_candidates = list(zip(rows[banded].tolist(), cols[banded].tolist(), strict=True))
    keep = sims >= min(low, threshold)
    rows, cols, sims = with_pixel_evidence(lib, rows[keep], cols[keep], sims[keep], is_twin)
    confirmed: dict[tuple[int, int], tuple[float, str]] = {}
    if verifying:  # the calibrated default: confirm hard copies by their pixels
        rows, cols, sims = grey_pairs_with_evidence(lib, rows, cols, sims, is_twin)
        above = sims >= threshold
        linked = set(zip(rows[above].tolist(), cols[above].tolist(), strict=True))
        confirmed = confirmed_pairs(lib, space, linked, is_twin, crop_candidates)
        extra = np.array(sorted(confirmed), np.int64).reshape(-1, 2)
        rows, cols = np.concatenate([rows, extra[:, 0]]), np.concatenate([cols, extra[:, 1]])
        sims = np.concatenate([sims, np.full(len(extra), threshold, np.float32)])
    turns: dict = {}
    if options.rotations:  # copies turned or mirrored in their pixels (search/dups/rotations.py)
        level, prune = band if verifying else threshold, options.within is None
        turned, report.rotations = rotations.turned_pairs(
            coll, lib, space, whitening, is_twin, level, prune, progress
        )
        rows, cols, sims, turns = rotations.with_turned(
            lib, (rows, cols, sims), turned, threshold, confirmed if verifying else None, whitening
        )
        report.rotations["matches"] = len(turns)
    priority = np.array(
        [(r["width"] or 0) * (r["height"] or 0) + (r["size"] or 0) / 1e12 for r in lib.rows]
    )  # resolution, then file size (less compressed)
    taken = is_twin.copy()
    near = []  # (tier, leader, [(member, similarity)], {attached member: the member it copies})
    tiers = [("copy", threshold)] + ([("similar", low)] if include_similar else [])
    if include_similar and options.burst_window is not None:  # bursts: taken close together
        times = [bursts.seconds(r["taken"]) for r in lib.rows]
        close = bursts.within_window(times, rows, cols, options.burst_window)
        rows, cols, sims = (a[close | (sims >= threshold)] for a in (rows, cols, sims))
    for tier, level in tiers:
        for leader, members in leader_groups(
            len(lib.ids), rows, cols, sims, level, priority, taken
        ):
            near.append((tier, leader, members, {}))
            taken[[leader] + [m for m, _ in members]] = True
        if tier == "copy":
            _attach_confirmed(near, confirmed, taken)
    alone = [rep for rep in twins if not taken[rep]]  # twin sets in no near group
    report.groups = [_identical_group(lib, rep, twins[rep]) for rep in alone] + [
        _near_group(lib, *g, calibration, whitening, twins, confirmed, turns) for g in near
    ]
    report.groups.sort(key=lambda g: TIERS.index(g.tier))  # stable: exact, pixels, copy, similar
    report.pixel_checks = verifying
    return report


def _attach_confirmed(near: list, confirmed: dict, taken: np.ndarray) -> None:
    """An image left out of every group but confirmed by pixels as a copy of a group's member
    joins that group (a grey copy of the original that a phone export leads): a pixel-level copy
    of a copy is the same picture, so this one step is not chaining."""
    home = {
        row: k for k, (_, leader, members, _) in enumerate(near) for row in [leader, *dict(members)]
    }
    for (i, j), (similarity, _) in sorted(confirmed.items(), key=lambda c: -c[1][0]):
        for row, via in ((i, j), (j, i)):
            if not taken[row] and via in home:
                _, _, members, attached = near[home[via]]
                members.append((row, similarity))
                attached[row] = via
                taken[row] = True


def _pairs(space: np.ndarray, threshold: float, ray: str | None, progress):
    """Neighbour pairs, on Ray tasks with --ray (the same pairs either way)."""
    if ray:
        return ray_neighbour_pairs(space, threshold, ray, progress)
    return neighbour_pairs(space, threshold, progress)


def _member(lib: Library, row, score, confidence, similarity, match, twin_of=None) -> Member:
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
        twin_of,
    )


def _identical_group(lib: Library, rep: int, twins: list[int]) -> Group:
    """A set of identical files (bytes or pixels) in no near group: its own exact/pixels group."""
    members = [_member(lib, rep, 1.0, 1.0, 1.0, "first")]
    members += _twin_members(lib, rep, twins, lib.vectors[rep], 1.0, 1.0)
    tier = "pixels" if any(m.match == "pixels" for m in members) else "exact"
    return Group(tier, members)


def _twin_members(lib, rep, twins, lead_vec, confidence, similarity) -> list[Member]:
    """The identical twins of a group member, each marked with whom it is identical to."""
    out = []
    for t in twins:
        match = "exact" if lib.rows[t]["hash"] == lib.rows[rep]["hash"] else "pixels"
        cosine = float(lib.vectors[t] @ lead_vec)
        out.append(_member(lib, t, cosine, confidence, similarity, match, lib.rows[rep]["path"]))
    return out


def _pixels(group: Group) -> list[int]:
    return [(m.width or 0) * (m.height or 0) for m in group.members]


def _near_group(
    lib, tier, leader, members, attached, calibration, whitening, twins, confirmed, turns
) -> Group:
    lead_vec = lib.vectors[leader]
    out = [_member(lib, leader, 1.0, None, 1.0, "first")]
    out += _twin_members(lib, leader, twins.get(leader, []), lead_vec, 1.0, 1.0)
    for row, similarity in members:
        via = attached.get(row, leader)
        how = confirmed.get((min(via, row), max(via, row)))
        if how:  # below the threshold, confirmed by pixels: no calibrated confidence applies
            similarity, confidence = how[0], None
        else:
            confidence = cal.confidence(calibration, similarity, whitening)
        member = _member(lib, row, float(lib.vectors[row] @ lead_vec), confidence, similarity, tier)
        member.verified = how[1] if how else None
        member.via = lib.rows[via]["path"] if row in attached else None
        if turn := rotations.oriented(turns, via, row):  # the raw cosine once turned back
            member.transform, member.score = turn[0], turn[1] if via == leader else member.score
        out.append(member)
        twin_members = _twin_members(lib, row, twins.get(row, []), lead_vec, confidence, similarity)
        for twin in twin_members:  # the same pixels: turned alike
            twin.transform = member.transform
        out += twin_members
    return Group(tier, out)
