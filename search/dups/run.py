"""The duplicate job over a library: calibration management, tiers, --within/--against/--of."""

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from indexer.decode import pixel_digest
from indexer.errors import BadQuery, ImageError
from indexer.files import walk
from indexer.job import sha256_file
from search.dups import calibration as cal
from search.dups import lowinfo, verify
from search.dups.decisions import respect_decisions
from search.dups.groups import (
    TIERS,
    DupReport,
    Group,
    Member,
    leader_groups,
    loosest_tier,
    neighbour_pairs,
    twin_units,
)
from search.dups.whitening import Whitening, fit_whitening

VERIFY_MAX_IMAGES = 5_000  # pixel checks decode a thumbnail per image (~10 ms a core) each run
LOWINFO_MAX_IMAGES = 20_000  # images in candidate pairs checked for low information (~10 ms each)
VERIFY_MIN_COSINE = 0.85  # --of/--against: raw cosine of a candidate for pixel confirmation
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
    sample: int | None = None  # calibration sources; None: grows with the library
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

    @property
    def sizes(self) -> list[int]:
        return [r["size"] or 0 for r in self.rows]


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
    """Groups over the library under the one-file-one-group rule (see duplicates.py)."""
    lib = load_library(coll, options.within)
    report = DupReport(
        threshold, calibration.to_json() if calibration else None, images=len(lib.ids)
    )
    if options.within and not len(lib.ids):
        raise BadQuery(f"--within {options.within}: no indexed image lies under that folder")
    if len(lib.ids) < 2:
        return report  # nothing to compare (a one-image library)
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    low = (
        _similar_threshold(options, calibration, threshold)
        if options.include_similar
        else threshold
    )
    verifying = whitening is not None and len(lib.ids) <= VERIFY_MAX_IMAGES
    band = min(calibration.similar_threshold, threshold) if verifying else threshold
    rows, cols, sims = _pairs(space, min(low, threshold, band), options.ray, progress)
    units = twin_units(lib.hashes, _pixel_pairs(lib, rows, cols, sims >= threshold), lib.sizes)
    twins = units.twins_of()
    is_twin = units.rep != np.arange(len(lib.ids))  # grouped through their representative
    raw = np.einsum("ij,ij->i", lib.vectors[rows], lib.vectors[cols])
    banded = (sims < threshold) & (raw >= VERIFY_MIN_COSINE) & ~(is_twin[rows] | is_twin[cols])
    crop_candidates = list(zip(rows[banded].tolist(), cols[banded].tolist(), strict=True))
    keep = sims >= min(low, threshold)
    rows, cols, sims = _with_pixel_evidence(lib, rows[keep], cols[keep], sims[keep], is_twin)
    confirmed: dict[tuple[int, int], tuple[float, str]] = {}
    if verifying:  # the calibrated default: confirm hard copies by their pixels
        rows, cols, sims = _grey_pairs_with_evidence(lib, rows, cols, sims, is_twin)
        above = sims >= threshold
        linked = set(zip(rows[above].tolist(), cols[above].tolist(), strict=True))
        confirmed = _confirmed_pairs(lib, space, linked, is_twin, crop_candidates)
        extra = np.array(sorted(confirmed), np.int64).reshape(-1, 2)
        rows, cols = np.concatenate([rows, extra[:, 0]]), np.concatenate([cols, extra[:, 1]])
        sims = np.concatenate([sims, np.full(len(extra), threshold, np.float32)])
    priority = np.array(
        [(r["width"] or 0) * (r["height"] or 0) + (r["size"] or 0) / 1e12 for r in lib.rows]
    )  # resolution, then file size (less compressed)
    taken = is_twin.copy()
    near = []  # (tier, leader, [(member, similarity)], {attached member: the member it copies})
    tiers = [("copy", threshold)] + ([("similar", low)] if options.include_similar else [])
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
        _near_group(lib, *g, calibration, whitening, twins, confirmed) for g in near
    ]
    report.groups.sort(key=lambda g: TIERS.index(g.tier))  # stable: exact, pixels, copy, similar
    report.pixel_checks = verifying
    return report


def _pixel_pairs(lib: Library, rows, cols, close) -> list[tuple[int, int]]:
    """Close same-size pairs of different content whose decoded pixels are identical (a full
    decode of each candidate, once; byte twins are represented by their first copy)."""
    hashes, first = lib.hashes, {}
    for row, digest in enumerate(hashes):
        first.setdefault(digest or row, row)
    return [
        (int(a), int(b))
        for a, b in zip(rows[close], cols[close], strict=True)
        if hashes[a] != hashes[b]
        and first[hashes[a] or a] == a
        and first[hashes[b] or b] == b
        and _same_pixels(lib.rows[a], lib.rows[b])
    ]


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


def _grey_pairs_with_evidence(lib: Library, rows, cols, sims, is_twin):
    """Pairs that involve a picture without colour, kept only with pixel evidence (a tone or crop
    match): whitening sets grey pictures apart from colour ones and close to each other, so a
    grey copy of one photo scores like a copy of another (measured: bench/results/)."""
    paths = [r["path"] for r in lib.rows]
    reps = np.flatnonzero(~is_twin)  # pairs are between representatives only
    verify.warm([paths[i] for i in reps])
    grey = np.zeros(len(paths), bool)
    grey[reps] = [verify.is_greyscale(paths[i]) for i in reps]
    ok = ~(grey[rows] | grey[cols])
    for k in np.flatnonzero(~ok):
        ok[k] = verify.confirm(paths[rows[k]], paths[cols[k]]) is not None
    return rows[ok], cols[ok], sims[ok]


def _confirmed_pairs(lib: Library, space, linked: set, is_twin, crop_candidates) -> dict:
    """Pairs below the threshold that pixels confirm as copies (search/verify.py), when not
    linked already: a grey or re-toned copy among the pairs whose small grey layouts correlate
    (whitening scatters grey copies; their pixels do not change), a crop among the pairs just
    below the threshold in the whitened space. {(i, j): (similarity, "tone" | "crop")}."""
    reps = np.flatnonzero(~is_twin)
    paths = [r["path"] for r in lib.rows]
    layout, found = verify.descriptors([paths[i] for i in reps])
    a, b, _ = neighbour_pairs(layout, verify.DESCRIPTOR_MIN)
    a, b = reps[found[a]], reps[found[b]]
    todo = {(min(i, j), max(i, j)): False for i, j in zip(a.tolist(), b.tolist(), strict=True)}
    todo.update({pair: True for pair in crop_candidates})  # True: look for a crop too
    out = {}
    for (i, j), crops in todo.items():
        if (i, j) in linked:
            continue
        how = verify.confirm(paths[i], paths[j], crops)
        if how and _with_evidence(paths[i], paths[j]):
            out[(i, j)] = (float(space[i] @ space[j]), how)
    return out


def _with_pixel_evidence(lib: Library, rows, cols, sims, is_twin):
    """Pairs between representatives, without those where a low-information image (flat colour,
    gradient, pattern, tiny) meets one it does not look like at the pixel level: embeddings of
    such images sit close together whatever they show (search/lowinfo.py). Above
    LOWINFO_MAX_IMAGES images in pairs the check is skipped (a thumbnail decode each)."""
    keep = ~(is_twin[rows] | is_twin[cols])
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    involved = np.unique(np.concatenate([rows, cols]))
    if len(involved) > LOWINFO_MAX_IMAGES:
        return rows, cols, sims
    low = np.zeros(len(lib.ids), bool)
    low[involved] = lowinfo.low_information_flags([lib.rows[i]["path"] for i in involved])
    ok = ~(low[rows] | low[cols])
    for k in np.flatnonzero(~ok):
        ok[k] = lowinfo.look_alike(lib.rows[rows[k]]["path"], lib.rows[cols[k]]["path"])
    return rows[ok], cols[ok], sims[ok]


def _pairs(space: np.ndarray, threshold: float, ray: str | None, progress):
    """Neighbour pairs, on Ray tasks with --ray (the same pairs either way)."""
    if ray:
        from search.dups.ray import ray_neighbour_pairs

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


def _near_group(
    lib, tier, leader, members, attached, calibration, whitening, twins, confirmed
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
            confidence = _confidence(calibration, similarity, whitening)
        member = _member(lib, row, float(lib.vectors[row] @ lead_vec), confidence, similarity, tier)
        member.verified = how[1] if how else None
        member.via = lib.rows[via]["path"] if row in attached else None
        out.append(member)
        out += _twin_members(lib, row, twins.get(row, []), lead_vec, confidence, similarity)
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

    Time grows with the number of query images: each is looked up in the library's index. Query
    images that match the same library file share one group (one file, one group): the first
    query leads it, the later ones join it matched through that library file.
    """
    roots = list(options.against) + ([options.of] if options.of else [])
    files = list(dict.fromkeys(f.path for f in walk(roots)))  # a file named twice: once
    if not files:
        raise BadQuery(f"no images under {', '.join(roots)}")
    store = coll.store()
    report = DupReport(
        threshold,
        calibration.to_json() if calibration else None,
        images=store.counts().get("ok", 0),
    )
    inside = set(store.ids_under(options.within).tolist()) if options.within else None
    outside = set(files)
    found = []  # (group, query vector)
    for done, path in enumerate(files, 1):
        match = _match_one(coll, path, outside, calibration, whitening, threshold, inside)
        if match:
            found.append(match)
        if progress:
            progress("dups", done, len(files))
    report.groups = _merge_by_library_file(found, whitening)
    report.checked = [os.path.abspath(p) for p in files]
    return report


def _match_one(coll, path, outside, calibration, whitening, threshold, inside):
    """(the group of one query image and its library duplicates, its vector), or None."""
    query = coll.vector_for_file(path)
    _, found = coll.vector_index().search(query[None], AGAINST_CANDIDATES)
    ids = [int(i) for i in found[0] if i >= 0 and (inside is None or int(i) in inside)]
    rows = coll.store().images_by_ids(ids, "id, path, hash, width, height, size, vector")
    rows = {i: r for i, r in rows.items() if r["path"] not in outside}
    if not rows:
        return None
    vectors = np.stack([np.frombuffer(r["vector"], np.float32) for r in rows.values()])
    cosines = vectors @ query
    sims = _similarities(whitening, vectors, query) if whitening else cosines
    digest = sha256_file(path)
    members = []
    for r, cosine, sim in zip(rows.values(), cosines.tolist(), sims.tolist(), strict=True):
        how = None
        if r["hash"] == digest:
            match, conf = "exact", 1.0
        elif sim >= threshold and _with_evidence(path, r["path"], grey_too=whitening is not None):
            match = "pixels" if _same_pixels({"path": path, **_dims(path)}, r) else "copy"
            conf = 1.0 if match == "pixels" else _confidence(calibration, sim, whitening)
        elif whitening is not None and (how := _confirmed(path, r["path"], cosine)):
            match, conf = "copy", None
        else:
            continue
        member = Member(
            r["id"], r["path"], cosine, conf, r["width"], r["height"], r["size"], sim, match
        )
        member.verified = how
        members.append(member)
    if not members:
        return None
    members.sort(key=lambda m: (-(m.match == "exact"), -m.score))
    size = os.stat(path).st_size
    first = Member(-1, os.path.abspath(path), 1.0, None, None, None, size, 1.0, "first")
    return Group(loosest_tier([first, *members]), [first] + members), query


def _similarities(whitening: Whitening, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Scores of library vectors against one query in the whitened space."""
    return whitening.apply(vectors) @ whitening.apply(query[None])[0]


def _confirmed(a: str, b: str, cosine: float) -> str | None:
    """How pixels confirm a close pair below the threshold as copies ("tone", "crop"), or None."""
    if cosine < VERIFY_MIN_COSINE:
        return None
    how = verify.confirm(a, b)
    return how if how and _with_evidence(a, b) else None


def _with_evidence(a: str, b: str, grey_too: bool = False) -> bool:
    """A near match is believed unless a low-information image lacks pixel-level evidence (or,
    with grey_too, a colourless picture: see _grey_pairs_with_evidence)."""
    if lowinfo.needs_pixel_evidence(a, b) and not lowinfo.look_alike(a, b):
        return False
    if grey_too and (verify.is_greyscale(a) or verify.is_greyscale(b)):
        return verify.confirm(a, b) is not None
    return True


def _merge_by_library_file(found: list[tuple[Group, np.ndarray]], whitening) -> list[Group]:
    """Groups sharing a library file become one, led by the earliest query."""
    groups: list[tuple[Group, np.ndarray]] = []
    home: dict[int, int] = {}  # library id -> index into groups
    for group, query in found:
        shared = next((home[m.id] for m in group.members[1:] if m.id in home), None)
        if shared is None:
            home.update({m.id: len(groups) for m in group.members[1:]})
            groups.append((group, query))
            continue
        lead, lead_query = groups[shared]
        via = next(m for m in group.members[1:] if m.id in home)
        lead.members.append(_joined(group.members[0], via, query, lead_query, whitening))
        for m in group.members[1:]:
            if m.id not in home:
                home[m.id] = shared
                lead.members.append(m)
        lead.tier = loosest_tier(lead.members)
    return [g for g, _ in groups]


def _joined(first: Member, via: Member, query, lead_query, whitening) -> Member:
    """A later query image as a member of an earlier one's group, matched through the library
    file `via` (so it has no calibrated confidence of its own against the group's first)."""
    cosine = float(query @ lead_query)
    sim = float(_similarities(whitening, query[None], lead_query)[0]) if whitening else cosine
    member = Member(first.id, first.path, cosine, None, None, None, first.bytes, sim, via.match)
    member.verified, member.via = via.verified, via.path
    return member


def _dims(path: str) -> dict:
    with Image.open(path) as img:
        w, h = ImageOps.exif_transpose(img).size if img.getexif().get(274, 1) != 1 else img.size
    return {"width": w, "height": h}
