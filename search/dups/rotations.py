"""`--rotations`: copies turned by 90/180/270 degrees or mirrored in their pixels (not by EXIF).

DINOv2 is not rotation-invariant: a copy turned by 90 degrees can score like an unrelated photo
(the original came back at rank 44 for a 90-degree WebP). So each image is also embedded turned
(its *views*), and the views are looked up against the library as queries; they are never
library images. The model's input is a square centre crop, so a view is the decoded crop turned
(np.rot90, a flip): what preprocessing the turned file gives (cosine 1.00 measured), for one
decode per image (in the decode worker pool) and one forward pass per view.

Which views. A pair is found from either side, so the library side needs only rot90 (which finds
rot270 copies from the copy's side), rot180 and mirror: 3 passes per image for 4 of the 7
dihedral transforms. Mirrored-and-turned copies (vertical flip, transpose, transverse) are left
out: rare, and 3 more passes. A query image (query --rotations, dups --against) has no other
side: rot90, rot180, rot270 and mirror.

Cost. The library's views are kept in VIEWS_FILE beside the library, keyed by content hash and
valid for the library's model record (id, preprocessing, runtime): a later run embeds only new
content (bench/results/rotations.md).
"""

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.atomic import atomic_open
from indexer.config import DEFAULT_MAX_PIXELS
from indexer.decode_pool import Isolation, decode_all, default_workers
from indexer.errors import BadQuery
from indexer.library import layout
from search import knn
from search.dups import calibration as cal
from search.dups import lowinfo, verify
from search.dups.groups import DupReport, Group, Library, Member, loosest_tier
from search.dups.whitening import Whitening
from search.parts import Parts

LIBRARY_VIEWS = ("rot90", "rot180", "mirror")  # each pair is looked at from both sides
QUERY_VIEWS = ("rot90", "rot180", "rot270", "mirror")  # a query is looked at from its side only
VIEWS_FILE = layout.ROTATED_VIEWS  # beside library.db: the library's views by content hash
IMAGES_PER_PASS = 16  # images per forward pass (x 3 views: 48 crops)
QUERY_BLOCK = 2048  # view vectors per range-search call: bounds memory to the block's results
CANDIDATES = 32  # library neighbours looked at per view of an --against image
STAGE = "rotated views"  # the progress line's label

# (a, b) with a < b -> (similarity, raw cosine, turn): b is a turned by `turn`
Turned = dict[tuple[int, int], tuple[float, float, str]]


@dataclass
class Views:
    vectors: np.ndarray  # (n, len(turns), dim), unit rows; zeros where `ok` is False
    ok: np.ndarray  # (n,) bool: the file decoded
    errors: dict[str, str]  # path -> why it did not decode


def embed_views(parts: Parts, paths: list[str], turns: tuple[str, ...], progress=None) -> Views:
    """Each file decoded once in the decode workers (a bad file costs itself), its model input
    turned by each of `turns` and embedded through the library's embedder (not loaded when
    there is nothing to embed)."""
    if not paths:
        return Views(np.zeros((0, len(turns), 0), np.float32), np.zeros(0, bool), {})
    embedder = parts.embedder()
    height, width = embedder.recipe.input_size
    if height != width:
        raise BadQuery(
            f"--rotations needs a square model input; {embedder.id} takes {height}x{width}"
        )
    views = Views(
        np.zeros((len(paths), len(turns), embedder.dim), np.float32), np.zeros(len(paths), bool), {}
    )
    batch: list[tuple[int, np.ndarray]] = []

    def embed_batch() -> None:
        crops = np.stack([verify.turned(pixels, t) for _, pixels in batch for t in turns])
        vectors = embedder.embed(crops).reshape(len(batch), len(turns), -1)
        for (k, _), vector in zip(batch, vectors, strict=True):
            views.vectors[k], views.ok[k] = vector, True
        batch.clear()

    decoded = decode_all(paths, embedder.recipe, DEFAULT_MAX_PIXELS, default_workers(), Isolation())
    for k, item in enumerate(decoded):
        if item.decoded is None:
            views.errors[item.path] = item.error or "cannot decode"
        else:
            batch.append((k, item.decoded.pixels))
        if len(batch) >= IMAGES_PER_PASS:
            embed_batch()
        if progress:
            progress(STAGE, k + 1, len(paths))
    if batch:
        embed_batch()
    return views


# --- the library's views, kept beside it ---------------------------------------------------------


def cache_key(parts: Parts) -> str:
    """What the views are valid for: the library's model record and the views taken."""
    info = parts.store().model()
    if info is None:
        raise BadQuery("--rotations: the library has no model yet (index some images first)")
    record = {"model": info.id, "recipe": info.recipe, "runtime": info.runtime}
    return json.dumps({**record, "views": LIBRARY_VIEWS}, sort_keys=True)


def load_views(directory: Path, key: str) -> dict[str, np.ndarray]:
    """content hash -> views, when the side file exists and is for `key` (else nothing: a
    damaged or outdated file is recomputed, then replaced)."""
    try:
        with np.load(directory / VIEWS_FILE, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                return {}
            return dict(zip(saved["hashes"].tolist(), saved["vectors"], strict=True))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}


def save_views(directory: Path, key: str, views: dict[str, np.ndarray]) -> bool:
    """Write the side file atomically (a temp file renamed into place); False if it cannot be."""
    if not views:
        return False
    hashes = sorted(views)
    try:
        with atomic_open(directory / VIEWS_FILE, "wb") as f:
            np.savez(
                f,
                key=np.array(key),
                hashes=np.array(hashes),
                vectors=np.stack([views[h] for h in hashes]).astype(np.float32),
            )
        return True
    except OSError:  # read-only media, a full disk: the views are recomputed next time
        return False


def library_views(parts: Parts, lib: Library, rows: np.ndarray, prune: bool, progress=None):
    """(views (len(lib), 3, dim), which rows have them, stats) for `rows`: from the side file,
    else embedded now and added to it. `prune`: drop entries of content no longer in `lib`."""
    key, hashes = cache_key(parts), lib.hashes
    kept = load_views(parts.directory, key)
    todo = [int(r) for r in rows if not hashes[r] or hashes[r] not in kept]
    fresh = embed_views(parts, [lib.rows[r]["path"] for r in todo], LIBRARY_VIEWS, progress)
    new = {h: fresh.vectors[k] for k, r in enumerate(todo) if fresh.ok[k] and (h := hashes[r])}
    out = np.zeros((len(lib.ids), len(LIBRARY_VIEWS), lib.vectors.shape[1]), np.float32)
    has = np.zeros(len(lib.ids), bool)
    for k, r in enumerate(todo):
        out[r], has[r] = fresh.vectors[k], fresh.ok[k]
    for r in rows:
        if hashes[r] in kept:
            out[r], has[r] = kept[hashes[r]], True
    saved = False
    if new and not parts.store().read_only:
        alive = set(hashes) if prune else None
        kept = {h: v for h, v in kept.items() if alive is None or h in alive}
        saved = save_views(parts.directory, key, {**kept, **new})
    stats = {
        "views": list(LIBRARY_VIEWS),
        "images": len(rows),
        "embedded": int(fresh.ok.sum()),
        "cached": len(rows) - len(todo),
        "failed": len(fresh.errors),
        "saved": saved,
    }
    return out, has, stats


# --- a whole-library run -------------------------------------------------------------------------


def turned_pairs(parts: Parts, lib, space, whitening, is_twin, level, prune, progress):
    """Pairs between representatives whose best view scores >= `level` in `space` (the run's
    whitened or raw space), and the views' stats."""
    started = time.perf_counter()
    reps = np.flatnonzero(~is_twin)
    raw, has, stats = library_views(parts, lib, reps, prune, progress)
    rows = np.flatnonzero(has)
    turns = len(LIBRARY_VIEWS)
    found: Turned = {}
    queries = raw[rows].reshape(len(rows) * turns, -1)
    if whitening is not None and len(queries):
        queries = whitening.apply(queries)
    index = faiss.IndexFlatIP(space.shape[1])
    index.add(np.ascontiguousarray(space, np.float32))
    for lo in range(0, len(queries), QUERY_BLOCK):
        block = np.ascontiguousarray(queries[lo : lo + QUERY_BLOCK], np.float32)
        lims, sims, hits = index.range_search(block, float(level))
        which = np.repeat(np.arange(lo, lo + len(block)), np.diff(lims).astype(np.int64))
        for q, j, s in zip(which.tolist(), hits.tolist(), sims.tolist(), strict=True):
            i, v = int(rows[q // turns]), q % turns
            if i == j or is_twin[j]:
                continue
            turn = LIBRARY_VIEWS[v]
            a, b, turn = (i, j, turn) if i < j else (j, i, verify.UNDO_TURN[turn])
            if (a, b) not in found or s > found[(a, b)][0]:
                found[(a, b)] = (float(s), float(raw[i, v] @ lib.vectors[j]), turn)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    return found, stats


def with_turned(lib: Library, links, turned: Turned, seen):
    """The run's judged links (rows, cols, sims, admitted, how) with the turned matches, and
    {(a, b): (turn, raw cosine)} for those. A pair that matches as it is stays a plain match, and
    a turn is said only where it makes the match. A turned match is a copy only when the pixels
    agree once the turn is undone: DINOv2 hardly tells a picture from its mirror image, and a
    turned view of one photo can score like another photo (a desert arch matched a diver on its
    side). Low-information pictures (a gradient turned is another gradient) never match turned."""
    rows, cols, sims, admitted, how = links
    pairs_at = enumerate(zip(rows.tolist(), cols.tolist(), strict=True))
    plain = {(min(i, j), max(i, j)): k for k, (i, j) in pairs_at}
    drop, extra, turns = set(), [], {}
    for (a, b), (sim, cosine, turn) in sorted(turned.items()):
        k = plain.get((a, b))
        if k is not None and admitted[k]:
            continue  # a match as they are: not a turned copy
        ev_a, ev_b = seen.evidence[a], seen.evidence[b]
        if seen.low(a) or seen.low(b) or ev_a is None or ev_b is None:
            continue
        kind = seen.judge_coloured(a, b, True, turn)
        if kind is None:
            continue
        drop.update([k] if k is not None else [])
        extra.append((a, b, sim, kind))
        turns[(a, b)] = (turn, cosine)
    keep = np.ones(len(rows), bool)
    keep[list(drop)] = False
    add = np.array([(a, b) for a, b, *_ in extra], np.int64).reshape(-1, 2)
    rows = np.concatenate([rows[keep], add[:, 0]])
    cols = np.concatenate([cols[keep], add[:, 1]])
    sims = np.concatenate([sims[keep], np.array([e[2] for e in extra], np.float32)])
    admitted = np.concatenate([admitted[keep], np.ones(len(extra), bool)])
    how = np.concatenate([how[keep], np.array([e[3] for e in extra], dtype=object)])
    return (rows, cols, sims.astype(np.float32), admitted, how), turns


def _evidence(a: str, b: str, turn: str, grey_too: bool) -> bool:
    """For b = a turned: the pixels agree once the turn is undone (never low-information)."""
    if lowinfo.needs_pixel_evidence(a, b):
        return False
    return verify.confirm(a, b, True, turn) is not None


def oriented(turns: dict, via: int, row: int) -> tuple[str, float] | None:
    """(how `row` is `via` turned, raw cosine once turned back), or None (not a turned match)."""
    found = turns.get((min(via, row), max(via, row)))
    if found is None:
        return None
    turn, cosine = found
    return (turn if via < row else verify.UNDO_TURN[turn]), cosine


# --- --against / --of and query ------------------------------------------------------------------


def against_turned(
    parts: Parts, report: DupReport, options, calibration, whitening, threshold, progress
):
    """Query files of a --against/--of report that found nothing, looked up turned: each match
    joins the group its library file is in, or makes a group with it."""
    started = time.perf_counter()
    grouped = {m.path: g for g in report.groups for m in g.members}
    todo = [p for p in report.checked or [] if p not in grouped]
    views = embed_views(parts, todo, QUERY_VIEWS, progress)
    store = parts.store()
    inside = set(store.ids_under(options.within).tolist()) if options.within else None
    outside, found = set(report.checked or []), 0
    for k in np.flatnonzero(views.ok):
        match = _best_turned(parts, views.vectors[k], outside, inside, whitening, threshold)
        grey_too = whitening is not None
        if match is None or not _evidence(todo[k], match[3]["path"], match[2], grey_too):
            continue
        _join(report, grouped, todo[k], match, calibration, whitening)
        found += 1
    report.rotations = {
        "views": list(QUERY_VIEWS),
        "images": len(todo),
        "embedded": int(views.ok.sum()),
        "failed": len(views.errors),
        "matches": found,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _best_turned(parts: Parts, views: np.ndarray, outside, inside, whitening, threshold):
    """(similarity, cosine, turn, library row) of the best view's best library match above the
    threshold, or None."""
    _, found = parts.vector_index().search(views, CANDIDATES)
    ids = {int(i) for i in found.ravel() if i >= 0 and (inside is None or int(i) in inside)}
    by_id = parts.store().images_by_ids(list(ids), "id, path, hash, width, height, size, vector")
    rows = [r for r in by_id.values() if r["path"] not in outside]
    if not rows:
        return None
    vectors = np.stack([np.frombuffer(r["vector"], np.float32) for r in rows])
    cosines = views @ vectors.T  # (turns, candidates)
    sims = whitening.apply(views) @ whitening.apply(vectors).T if whitening else cosines
    v, c = np.unravel_index(int(np.argmax(sims)), sims.shape)
    if sims[v, c] < threshold:
        return None
    return float(sims[v, c]), float(cosines[v, c]), QUERY_VIEWS[v], rows[c]


def _join(report, grouped: dict, path: str, match, calibration, whitening: Whitening | None):
    sim, cosine, turn, row = match
    confidence = cal.confidence(calibration, sim, whitening)
    size = os.stat(path).st_size
    group = grouped.get(row["path"])
    if group is not None:  # its library file is in a group: the query joins it through that file
        member = Member(-1, path, cosine, None, None, None, size, sim, "copy")
        member.via, member.transform = row["path"], verify.UNDO_TURN[turn]
        group.members.append(member)
        group.tier = loosest_tier(group.members)
    else:
        first = Member(-1, path, 1.0, None, None, None, size, 1.0, "first")
        member = Member(
            row["id"],
            row["path"],
            cosine,
            confidence,
            row["width"],
            row["height"],
            row["size"],
            sim,
            "copy",
        )
        member.transform = turn
        group = Group("copy", [first, member])
        report.groups.append(group)
        grouped[row["path"]] = group
    grouped[path] = group


@dataclass
class TurnedHit(knn.Hit):
    transform: str | None = None  # the library image is the query turned by this (rot90, ...)

    def to_json(self) -> dict:
        return {**super().to_json(), "transform": self.transform}


def query_turned(parts: Parts, images: list[str], k: int, within: str | None) -> knn.QueryResult:
    """`query --rotations`: the query as it is and turned; each library image at its best."""
    started = time.perf_counter()
    paths = [os.path.abspath(p) for p in images]
    plain = parts.vectors_for_files(paths)  # a file that is no image is refused here
    views = embed_views(parts, paths, QUERY_VIEWS)
    if views.errors:
        path, error = next(iter(views.errors.items()))
        raise BadQuery(f"query image {path}: {error}")
    queries = [(None, knn.mean_direction(plain))] + [
        (turn, knn.mean_direction(views.vectors[:, v])) for v, turn in enumerate(QUERY_VIEWS)
    ]
    best: dict[int, TurnedHit] = {}
    for turn, vector in queries:
        result = parts.search_vector(vector, k, within)
        for hit in result.results:
            if hit.id not in best or hit.score > best[hit.id].score:
                best[hit.id] = TurnedHit(0, hit.id, hit.path, hit.score, turn)
    hits = sorted(best.values(), key=lambda h: (-h.score, h.id))[:k]
    for rank, hit in enumerate(hits, 1):
        hit.rank = rank
    result.results, result.query = list(hits), paths  # TurnedHit is a Hit
    result.seconds = time.perf_counter() - started
    return result
