"""`dups --against` / `--of`: which images under the given paths already have a duplicate in the
library. `--within TRAIN --against TEST` over indexed folders is the leakage check between splits.

Query files the library holds unchanged are matched in bulk from their stored vectors against
the library without them (search/dups/leakage.py: exact up to 50,000 images, a clustered join
above); any other file is embedded and looked up in the library's index on its own.
"""

import os

import numpy as np

from indexer.errors import BadQuery
from indexer.files import sha256_file, walk
from search.dups import calibration as cal
from search.dups.evidence import (
    VERIFY_MIN_COSINE,
    dims,
    judge,
    needs_evidence,
    of_file,
    of_rows,
    same_pixels,
)
from search.dups.groups import Group, Member, loosest_tier
from search.dups.leakage import LeakReport, best_per_query, cross_pairs
from search.dups.precision import EVIDENCE_PRECISION
from search.dups.whitening import Whitening
from search.parts import Parts

AGAINST_CANDIDATES = 32  # library neighbours looked at per --against image
BULK_EXACT_MAX = 5_000  # library + query images up to which bulk matches compare raw cosines
ROW_COLUMNS = "id, path, hash, width, height, size"


def against(parts: Parts, options, calibration, whitening, threshold, progress) -> LeakReport:
    """Which images under the given paths already have a duplicate in the library.

    Query images that match the same library file share one group (one file, one group): the
    first query leads it, the later ones join it matched through that library file.
    """
    roots = list(options.against) + ([options.of] if options.of else [])
    files = list(dict.fromkeys(os.path.abspath(f.path) for f in walk(roots)))  # once each
    if not files:
        raise BadQuery(f"no images under {', '.join(roots)}")
    store = parts.store()
    report = LeakReport(
        threshold,
        calibration.to_json() if calibration else None,
        images=store.counts().get("ok", 0),
    )
    inside = set(store.ids_under(options.within).tolist()) if options.within else None
    if options.within and not inside:
        raise BadQuery(f"--within {options.within}: no indexed image lies under that folder")
    indexed = _indexed_unchanged(store, files)
    scoring = (calibration, whitening, threshold, options.threshold != "auto")
    matched = _bulk(parts, indexed, set(files), inside, scoring, progress)
    rest = [p for p in files if p not in indexed]
    named = os.path.abspath(options.of) if options.of else None
    for done, path in enumerate(rest, 1):
        try:
            if match := _match_one(parts, path, set(files), scoring, inside):
                matched[path] = match
        except BadQuery as exc:  # an unreadable image in a folder is reported, as `index` does
            if path == named:
                raise
            error = str(exc).removeprefix(f"query image {path}: ")
            report.skipped.append({"path": path, "error": error})
        if progress:
            progress("dups", done, len(rest))
    report.groups = _merge_by_library_file([matched[p] for p in files if p in matched], whitening)
    skipped = {s["path"] for s in report.skipped}
    report.checked = [p for p in files if p not in skipped]
    return report


def _indexed_unchanged(store, files: list[str]) -> dict[str, dict]:
    """path -> library row of the query files indexed and unchanged since (size, mtime)."""
    out = {}
    for path in files:
        row = store.stat_of(path)
        if not row or row["status"] != "ok":
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
            out[path] = row
    return out


def _bulk(parts: Parts, indexed: dict, outside: set, inside, scoring, progress) -> dict:
    """path -> (group, vector) for the indexed query files, from the stored vectors."""
    if not indexed:
        return {}
    store = parts.store()
    calibration, whitening, threshold, _ = scoring
    qids = np.array([r["id"] for r in indexed.values()], np.int64)
    ids, vectors = store.vectors()
    keep = ~np.isin(ids, qids)
    if inside is not None:
        keep &= np.isin(ids, np.fromiter(inside, np.int64))
    base_rows = np.flatnonzero(keep)  # the library without the queries: rows of `vectors`
    base_ids = ids[base_rows]
    queries = store.vectors_by_ids(qids)
    if len(base_ids) + len(qids) <= BULK_EXACT_MAX:  # small: nearest by raw cosine, exactly
        candidates = _nearest(queries, vectors[base_rows])
    else:  # the whitened space of the whole library (as dups), then only the base rows
        space = whitening.apply(vectors) if whitening else vectors
        space_q = whitening.apply(queries) if whitening else queries
        q_rows, b_rows, sims = cross_pairs(space_q, space, _floor(scoring), progress, base_rows)
        candidates = best_per_query(q_rows, b_rows, sims, AGAINST_CANDIDATES)
    involved = {c for found in candidates.values() for c, _ in found}
    rows = store.images_by_ids([int(base_ids[c]) for c in involved] + qids.tolist(), ROW_COLUMNS)
    seen = of_rows(store, list(rows.values()))
    paths = list(indexed)
    out = {}
    for q, found in candidates.items():
        kept = [c for c, _ in found if rows[int(base_ids[c])]["path"] not in outside]
        lib = [rows[int(base_ids[c])] for c in kept]
        vecs = np.asarray(vectors[base_rows[kept]], np.float32).reshape(len(kept), -1)
        head = rows[int(qids[q])]
        first = Member(head["id"], head["path"], 1.0, None, head["width"], head["height"],
                       head["size"], 1.0, "first")  # fmt: skip
        group = _group(
            first, queries[q], head["hash"], seen.get(head["id"]), lib, vecs, scoring, seen
        )
        if group:
            out[paths[q]] = (group, queries[q])
    return out


def _floor(scoring) -> float:
    """The score below which no library image is looked at as a copy of a query."""
    calibration, _, threshold, _ = scoring
    return min(threshold, calibration.similar_threshold) if calibration else threshold


def _nearest(queries: np.ndarray, base: np.ndarray) -> dict[int, list[tuple[int, float]]]:
    """query row -> its AGAINST_CANDIDATES nearest base rows by raw cosine (exact)."""
    if not len(base):
        return {}
    scores = queries @ np.asarray(base, np.float32).T
    k = min(AGAINST_CANDIDATES, len(base))
    top = np.argsort(-scores, axis=1)[:, :k]
    return {q: [(int(c), float(scores[q, c])) for c in top[q]] for q in range(len(queries))}


def _match_one(parts: Parts, path, outside, scoring, inside):
    """(the group of one query image and its library duplicates, its vector), or None."""
    query = parts.vector_for_file(path)
    _, found = parts.vector_index().search(query[None], AGAINST_CANDIDATES)
    ids = [int(i) for i in found[0] if i >= 0 and (inside is None or int(i) in inside)]
    by_id = parts.store().images_by_ids(ids, f"{ROW_COLUMNS}, vector")
    rows = [r for r in by_id.values() if r["path"] not in outside]
    if not rows:
        return None
    vectors = np.stack([np.frombuffer(r["vector"], np.float32) for r in rows])
    size = os.stat(path).st_size
    query_seen = of_file(path)
    first = Member(-1, path, 1.0, None, None, None, size, 1.0, "first")
    if query_seen is not None:
        first.width, first.height = query_seen[1]
    seen = of_rows(parts.store(), rows)
    group = _group(first, query, sha256_file(path), query_seen, rows, vectors, scoring, seen)
    return (group, query) if group else None


def _group(first, query, digest, query_seen, rows, vectors, scoring, seen):
    """The group of one query image (`first`) and the library rows that are its duplicates:
    exact by hash; pixels or copy where pixel evidence says so (search/dups/evidence.py); and,
    with a fixed --threshold only, copy on the raw cosine alone where neither image needs
    evidence. Calibrated, embeddings alone never call an unseen photo a copy: the library's own
    pairs say what a score means for the library's images, not for a query's."""
    calibration, whitening, threshold, fixed = scoring
    if not rows:
        return None
    cosines = vectors @ query
    sims = _similarities(whitening, vectors, query) if whitening else cosines
    members = []
    for r, cosine, sim in zip(rows, cosines.tolist(), sims.tolist(), strict=True):
        other = seen.get(r["id"])
        close = sim >= _floor(scoring) or cosine >= VERIFY_MIN_COSINE
        how = judge(*query_seen, *other) if close and query_seen and other else None
        if r["hash"] == digest:
            match, conf = "exact", 1.0
        elif how:
            match = "pixels" if same_pixels({"path": first.path, **_dims(first)}, r) else "copy"
            conf = 1.0 if match == "pixels" else EVIDENCE_PRECISION
        elif (
            fixed and sim >= threshold and not (needs_evidence(query_seen) or needs_evidence(other))
        ):
            match, conf = "copy", cal.confidence(calibration, sim, whitening)
        else:
            continue
        member = Member(
            r["id"], r["path"], cosine, conf, r["width"], r["height"], r["size"], sim, match
        )
        member.verified = how if match == "copy" else None
        members.append(member)
    if not members:
        return None
    members.sort(key=lambda m: (-(m.match == "exact"), -m.score))
    return Group(loosest_tier([first, *members]), [first] + members)


def _dims(first: Member) -> dict:
    if first.width is not None:
        return {"width": first.width, "height": first.height}
    return dims(first.path)


def _similarities(whitening: Whitening, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Scores of library vectors against one query in the whitened space."""
    return whitening.apply(vectors) @ whitening.apply(query[None])[0]


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
    member = Member(
        first.id, first.path, cosine, None, first.width, first.height, first.bytes, sim, via.match
    )
    member.verified, member.via = via.verified, via.path
    return member
