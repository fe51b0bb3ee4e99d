"""`dups --against` / `--of`: which images under the given paths already have a duplicate in the
library."""

import os

import numpy as np

from indexer.errors import BadQuery
from indexer.files import sha256_file, walk
from search.dups import calibration as cal
from search.dups.evidence import confirmed, dims, same_pixels, with_evidence
from search.dups.groups import DupReport, Group, Member, loosest_tier
from search.dups.whitening import Whitening

AGAINST_CANDIDATES = 32  # library neighbours looked at per --against image


def against(coll, options, calibration, whitening, threshold, progress) -> DupReport:
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
        elif sim >= threshold and with_evidence(path, r["path"], grey_too=whitening is not None):
            match = "pixels" if same_pixels({"path": path, **dims(path)}, r) else "copy"
            conf = 1.0 if match == "pixels" else cal.confidence(calibration, sim, whitening)
        elif whitening is not None and (how := confirmed(path, r["path"], cosine)):
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
