"""The duplicate job over a library: tiers, --within (the calibration's lifecycle in
search/dups/calibrated.py, the pixel evidence in search/dups/evidence.py, --against/--of in
search/dups/against.py)."""

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from indexer.config import DEFAULT_PRECISION
from indexer.errors import BadQuery
from search.dups import bursts, rotations
from search.dups import calibration as cal
from search.dups.against import against
from search.dups.calibrated import calibration_due as calibration_due  # re-exported (facade)
from search.dups.calibrated import ensure_calibration, stored_calibration
from search.dups.calibrated import run_calibration as run_calibration
from search.dups.decisions import respect_decisions
from search.dups.evidence import VERIFY_MIN_COSINE, Seen, pixel_pairs
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
from search.dups.pairs import components, nearest_pairs, neighbour_pairs, pair_scores
from search.dups.precision import EVIDENCE_PRECISION, Estimate, from_calibration
from search.dups.ray import ray_neighbour_pairs
from search.dups.verify import DESCRIPTOR_MIN
from search.parts import Parts

RAW_NEIGHBOURS = 8  # nearest images by raw cosine whose pixels are looked at, per image
LAYOUT_MIN_COSINE = 0.6  # raw cosine a pair found by its grey layout needs (a grey copy: >= 0.8)


@dataclass
class DupOptions:
    threshold: str | float = "auto"  # "auto" (calibrated) or a raw cosine
    precision: float = DEFAULT_PRECISION
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


def load_library(parts: Parts, within: str | None = None) -> Library:
    store = parts.store()
    ids, vectors = store.vectors()
    meta = store.images_by_ids(ids, "id, path, hash, width, height, size, taken")
    # a writer (apply, an index sweep) may have removed rows between the two reads: leave them out
    keep = np.fromiter((int(i) in meta for i in ids), bool, len(ids))
    if within:
        keep &= np.isin(ids, store.ids_under(within))
    if not keep.all():
        ids, vectors = ids[keep], vectors[keep]
    return Library(ids, vectors, [meta[int(i)] for i in ids])


# --- the job -------------------------------------------------------------------------------------


def find_duplicates(parts: Parts, options: DupOptions, progress=None) -> DupReport:
    started = time.perf_counter()
    options = dataclasses.replace(options, burst_window=bursts.parse_window(options.burst_window))
    calibration, whitening, threshold, mode = _thresholds(parts, options, progress)
    report: DupReport
    if options.against or options.of:
        report = against(parts, options, calibration, whitening, threshold, progress)
        if options.rotations:  # the query files that found nothing, looked up turned
            scoring = (calibration, whitening, threshold)
            rotations.against_turned(parts, report, options, *scoring, progress)
    else:
        report = _whole_library(parts, options, calibration, whitening, threshold, progress)
    report = respect_decisions(parts.store(), report)  # "not duplicates" / "keep both" stick
    report = keep_reference(report, options.reference)
    for g in report.groups:  # a burst is a stack with its best shot, not duplicates to delete
        if g.tier == "similar":
            g.best = bursts.best_shot([m.path for m in g.members], _pixels(g))
    report.mode = mode
    report.seconds = time.perf_counter() - started
    return report


def _thresholds(parts: Parts, options: DupOptions, progress):
    if options.threshold == "auto":
        calibration, whitening = ensure_calibration(
            parts, options.precision, options.sample, progress
        )
        return calibration, whitening, calibration.threshold, "auto"
    try:
        threshold = float(options.threshold)
    except ValueError:
        raise BadQuery(f"--threshold: 'auto' or a number, not {options.threshold!r}") from None
    if not -1 <= threshold <= 1:
        raise BadQuery("--threshold is a cosine between -1 and 1")
    stored = stored_calibration(parts)
    return (stored[0] if stored else None), None, threshold, "cosine"


def _similar_threshold(options, calibration, threshold) -> float:
    if options.similar_threshold is not None:
        return options.similar_threshold
    if calibration is not None and calibration.threshold == threshold:
        return calibration.similar_threshold
    return threshold - 0.05


def _whole_library(parts: Parts, options, calibration, whitening, threshold, progress) -> DupReport:
    """Groups over the library under the one-file-one-group rule (see search/dups/groups.py),
    each `copy` link admitted by the rule of search/dups/precision.py."""
    lib = load_library(parts, options.within)
    report = DupReport(
        threshold, calibration.to_json() if calibration else None, images=len(lib.ids)
    )
    if options.within and not len(lib.ids):
        raise BadQuery(f"--within {options.within}: no indexed image lies under that folder")
    if len(lib.ids) < 2:
        return report  # nothing to compare (a one-image library)
    auto = options.threshold == "auto"
    estimate = from_calibration(calibration, options.precision) if auto else None
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    include_similar = options.include_similar or options.burst_window is not None
    low = _similar_threshold(options, calibration, threshold) if include_similar else threshold
    band = min(calibration.similar_threshold, threshold) if auto and calibration else threshold
    rows, cols, sims = _pairs(space, min(low, threshold, band), options.ray, progress)
    seen = Seen.of_library(parts.store(), lib, progress)
    units = twin_units(lib.hashes, pixel_pairs(lib, rows, cols, sims >= threshold), lib.sizes)
    twins = units.twins_of()
    is_twin = units.rep != np.arange(len(lib.ids))  # grouped through their representative
    keep = ~(is_twin[rows] | is_twin[cols])
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    if auto:  # copies the whitened band misses: by raw cosine, and by grey layout
        pairs = _with_raw_neighbours(lib, space, is_twin, (rows, cols, sims), threshold)
        rows, cols, sims = _with_layout_pairs(lib, space, seen, is_twin, pairs)
    links = _judged(lib, seen, (rows, cols, sims), threshold, estimate, progress)
    report.estimate = estimate.to_json() if estimate else None
    turns: dict = {}
    if options.rotations:  # copies turned or mirrored in their pixels (search/dups/rotations.py)
        level, prune = band if auto else threshold, options.within is None
        turned, report.rotations = rotations.turned_pairs(
            parts, lib, space, whitening, is_twin, level, prune, progress
        )
        links, turns = rotations.with_turned(lib, links, turned, seen)
        report.rotations["matches"] = len(turns)
    rows, cols, sims, admitted, how = links
    times = [bursts.seconds(r["taken"]) for r in lib.rows]
    if options.burst_window is not None:  # frames of one burst: a stack, never copies to delete
        close = bursts.within_window(times, rows, cols, options.burst_window)
        instant = bursts.within_window(times, rows, cols, 0.0)  # a copy keeps its capture time
        admitted = admitted & ~(close & ~instant)
    priority = np.array(
        [(r["width"] or 0) * (r["height"] or 0) + (r["size"] or 0) / 1e12 for r in lib.rows]
    )  # resolution, then file size (less compressed)
    evidence = {
        (int(i), int(j)): (float(s), str(h))
        for i, j, s, h, ok in zip(rows, cols, sims, how, admitted, strict=True)
        if h and ok
    }
    taken = is_twin.copy()
    # (tier, leader, [(member, similarity)], {attached member: the member it copies})
    near: list[tuple[str, int, list[tuple[int, float]], dict[int, int]]] = []
    copy_links = (rows[admitted], cols[admitted], sims[admitted])
    for leader, members in leader_groups(len(lib.ids), *copy_links, -np.inf, priority, taken):
        near.append(("copy", leader, members, {}))
        taken[[leader] + [m for m, _ in members]] = True
    _attach_confirmed(near, evidence, taken)
    if include_similar:
        rest = ~admitted & (sims >= low)
        if options.burst_window is not None:  # bursts: taken close together
            rest &= bursts.within_window(times, rows, cols, options.burst_window)
        similar = (rows[rest], cols[rest], sims[rest])
        for leader, members in leader_groups(len(lib.ids), *similar, low, priority, taken):
            near.append(("similar", leader, members, {}))
            taken[[leader] + [m for m, _ in members]] = True
    alone = [rep for rep in twins if not taken[rep]]  # twin sets in no near group
    # a fixed cosine is taken raw; its members' confidences are the calibration's, in its space
    stored = None if auto or calibration is None else stored_calibration(parts)
    scoring = (calibration, whitening if auto else (stored[2] if stored else None), estimate)
    report.groups = [_identical_group(lib, rep, twins[rep]) for rep in alone] + [
        _near_group(lib, *g, scoring, twins, evidence, turns) for g in near
    ]
    report.groups.sort(key=lambda g: TIERS.index(g.tier))  # stable: exact, pixels, copy, similar
    report.pixel_checks = auto  # copies admitted by pixel evidence (a fixed cosine: gating only)
    return report


def _with_raw_neighbours(lib, space, is_twin, pairs, threshold: float):
    """The candidate pairs plus the RAW_NEIGHBOURS nearest pictures of each image by raw cosine,
    from VERIFY_MIN_COSINE up: a bright or cropped copy can fall below the whitened band (the
    calibrated threshold on a library of look-alike tiles was 0.99) while its raw cosine is 0.99,
    and pixels, not the band, decide what it is. Candidates at the copy threshold tell which
    images are one picture (pairs.nearest_pairs): a photo with 14 copies took all 8 places of a
    look-alike whose border copy was then never compared with it (the near-duplicate set inside
    5,200 distractors)."""
    rows, cols, sims = pairs
    reps = np.flatnonzero(~is_twin)
    if len(reps) < 2:
        return pairs
    sure = sims >= threshold
    pictures = components(len(lib.ids), rows[sure], cols[sure])[reps]
    i, j, _ = nearest_pairs(lib.vectors[reps], RAW_NEIGHBOURS, VERIFY_MIN_COSINE, pictures)
    i, j = reps[i], reps[j]
    known = set(zip(rows.tolist(), cols.tolist(), strict=True))
    fresh = np.array(
        [(x, y) not in known for x, y in zip(i.tolist(), j.tolist(), strict=True)], bool
    )
    i, j = i[fresh], j[fresh]
    extra = pair_scores(space, i, j)
    return np.concatenate([rows, i]), np.concatenate([cols, j]), np.concatenate([sims, extra])


def _with_layout_pairs(lib, space, seen: Seen, is_twin, pairs):
    """The candidate pairs plus those whose small grey layouts correlate (DESCRIPTOR_MIN) and
    whose raw cosine is at least LAYOUT_MIN_COSINE: whitening sets a grey or re-toned copy far
    from its original, its pixels do not."""
    rows, cols, sims = pairs
    layout, have = seen.descriptors(np.flatnonzero(~is_twin))
    a, b, _ = nearest_pairs(layout, RAW_NEIGHBOURS, DESCRIPTOR_MIN)  # n * k at most
    i, j = np.minimum(have[a], have[b]), np.maximum(have[a], have[b])
    known = set(zip(rows.tolist(), cols.tolist(), strict=True))
    fresh = np.array(
        [(x, y) not in known for x, y in zip(i.tolist(), j.tolist(), strict=True)], bool
    )
    i, j = i[fresh], j[fresh]
    close = pair_scores(lib.vectors, i, j) >= LAYOUT_MIN_COSINE
    i, j = i[close], j[close]
    extra = pair_scores(space, i, j)
    return np.concatenate([rows, i]), np.concatenate([cols, j]), np.concatenate([sims, extra])


def _judged(lib, seen: Seen, pairs, threshold, estimate: Estimate | None, progress):
    """(rows, cols, sims, admitted, how) for the candidate pairs: `how` is the pixel evidence of
    each ("tone", "crop", "looks" or ""); `admitted` says which are copies: those with evidence
    and, where neither image needs evidence (low information, no colour), those at the
    estimate's embeddings-alone threshold (calibrated runs) or at the fixed raw cosine."""
    rows, cols, sims = pairs
    raw = pair_scores(lib.vectors, rows, cols)
    how = seen.judge_pairs(rows, cols, raw >= VERIFY_MIN_COSINE, progress)
    needs = np.fromiter(
        (seen.needs_evidence(i) or seen.needs_evidence(j) for i, j in zip(rows, cols, strict=True)),
        bool,
        len(rows),
    )
    has = how != ""
    if estimate is None:  # a fixed raw cosine says what it says, but never for those needing pixels
        admitted = (sims >= threshold) & (~needs | has)
    else:
        estimate.fit(int(np.count_nonzero(has & ~needs)), sims[~needs & ~has])
        admitted = has | (~needs & (sims >= estimate.threshold_alone))
    return rows, cols, sims, admitted, how


def _attach_confirmed(near: list, evidence: dict, taken: np.ndarray) -> None:
    """An image left out of every group but confirmed by pixels as a copy of a group's member
    joins that group (a grey copy of the original that a phone export leads): a pixel-level copy
    of a copy is the same picture, so this one step is not chaining."""
    home = {
        row: k for k, (_, leader, members, _) in enumerate(near) for row in [leader, *dict(members)]
    }
    for (i, j), (similarity, _) in sorted(evidence.items(), key=lambda c: -c[1][0]):
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


def _near_group(lib, tier, leader, members, attached, scoring, twins, evidence, turns) -> Group:
    lead_vec = lib.vectors[leader]
    out = [_member(lib, leader, 1.0, None, 1.0, "first")]
    out += _twin_members(lib, leader, twins.get(leader, []), lead_vec, 1.0, 1.0)
    for row, similarity in members:
        via = attached.get(row, leader)
        how = evidence.get((min(via, row), max(via, row)))
        if how:
            similarity = how[0]
        confidence = _confidence(scoring, lib.vectors[[via, row]], similarity, how is not None)
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


def _confidence(scoring, pair: np.ndarray, similarity: float, pixels: bool) -> float | None:
    """A member's probability of being a copy: with pixel evidence, the precision measured for
    pixel evidence on look-alike photos (precision.EVIDENCE_PRECISION); on embeddings alone, the
    estimated precision of this library's pairs at its score; with a fixed --threshold, the
    stored calibration's logistic fit of the pair's score in its space (None without one)."""
    calibration, whitening, estimate = scoring
    if estimate is not None:
        return EVIDENCE_PRECISION if pixels else estimate.precision_alone(similarity)
    if whitening is not None and calibration is not None:
        a, b = whitening.apply(pair)
        similarity = float(a @ b)
    return cal.confidence(calibration, similarity, whitening)
