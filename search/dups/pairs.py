"""Vectors -> every pair at least as similar as a threshold: exact blockwise range search up to
EXACT_SEARCH_MAX vectors, a clustered join above. Never an n x n matrix."""

from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

EXACT_SEARCH_MAX = 50_000  # exact range search below this; a clustered join above
QUERY_BLOCK = 2048  # query rows per range-search call: bounds memory to the block's results
IVF_TRAIN_PER_LIST = 40  # k-means sample per list, and few iterations: training must not
IVF_KMEANS_ITERATIONS = 10  # dominate (the defaults cost ~11 min at 1M on 2 cores)
JOIN_LISTS_PER_SQRT = 2  # clustered join: 2 * sqrt(n) lists (2,000 lists of ~500 at 1M)
JOIN_NPROBE = 16  # lists each vector is joined with: 99.7 % of the exact pairs at 100k (8: 98.3 %)
SPREAD_DEPTH = 4  # nearest_pairs with pictures: how many times k neighbours are looked at

Progress = Callable[[str, int, int], None]
Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, cols (row < col), scores


def no_pairs() -> Pairs:
    empty = np.zeros(0, np.int64)
    return empty, empty, np.zeros(0, np.float32)


def neighbour_pairs(space: np.ndarray, threshold: float, progress: Progress | None = None) -> Pairs:
    """All pairs (i < j) with inner product >= threshold: exact blockwise range search up to
    EXACT_SEARCH_MAX vectors, a clustered join above. Never an n x n matrix."""
    n = space.shape[0]
    if n < 2:
        return no_pairs()
    if n > EXACT_SEARCH_MAX:
        return clustered_pairs(space, threshold, progress)
    return range_pairs(range_index(space), space, 0, n, threshold, progress)


def range_index(space: np.ndarray):
    """The exact index of the blockwise range search (up to EXACT_SEARCH_MAX vectors)."""
    index = faiss.IndexFlatIP(space.shape[1])
    index.add(np.ascontiguousarray(space))
    return index


def range_pairs(
    index,
    space: np.ndarray,
    start: int,
    stop: int,
    threshold: float,
    progress: Progress | None = None,
) -> Pairs:
    """Pairs (i < j) >= threshold for query rows start..stop, one QUERY_BLOCK at a time."""
    rows, cols, sims = [], [], []
    for lo in range(start, stop, QUERY_BLOCK):
        block = space[lo : min(lo + QUERY_BLOCK, stop)]
        lims, dist, found = index.range_search(np.ascontiguousarray(block), float(threshold))
        query = np.repeat(np.arange(lo, lo + len(block)), np.diff(lims).astype(np.int64))
        keep = found > query  # each pair once, never an image with itself
        rows.append(query[keep])
        cols.append(found[keep])
        sims.append(dist[keep])
        if progress:
            progress("dups", min(lo + QUERY_BLOCK, stop), stop)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


@dataclass
class JoinPlan:
    """The clustered join's lists: which rows each list holds and which rows probe it."""

    nlist: int
    members: np.ndarray  # rows sorted by their own (nearest) list, int32
    member_at: np.ndarray  # list c's members are members[member_at[c]:member_at[c + 1]]
    probers: np.ndarray  # rows sorted by the lists they probe, int32
    prober_at: np.ndarray


def plan_join(space: np.ndarray) -> JoinPlan:
    """Spherical k-means lists over the vectors and each vector's JOIN_NPROBE nearest lists."""
    n, d = space.shape
    nlist = max(1, min(n // 8, int(JOIN_LISTS_PER_SQRT * np.sqrt(n))))
    sample = space[np.random.default_rng(0).choice(n, min(n, IVF_TRAIN_PER_LIST * nlist), False)]
    kmeans = faiss.Kmeans(d, nlist, niter=IVF_KMEANS_ITERATIONS, spherical=True, seed=1)
    kmeans.train(np.ascontiguousarray(sample))
    del sample
    nprobe = min(JOIN_NPROBE, nlist)
    probes = np.empty((n, nprobe), np.int32)
    for start in range(0, n, 65536):  # the nearest centroids, in blocks to bound the scores
        _, near = kmeans.index.search(space[start : start + 65536], nprobe)
        probes[start : start + 65536] = near
    home = probes[:, 0]
    members = np.argsort(home, kind="stable").astype(np.int32)
    member_at = np.searchsorted(home[members], np.arange(nlist + 1))
    flat = probes.ravel()
    del probes
    order = np.argsort(flat, kind="stable")
    probers = (order // nprobe).astype(np.int32)  # the row behind each probe
    prober_at = np.searchsorted(flat[order], np.arange(nlist + 1))
    return JoinPlan(nlist, members, member_at, probers, prober_at)


def join_lists(space: np.ndarray, plan: JoinPlan, first: int, stop: int, threshold: float) -> Pairs:
    """Pairs (min, max, score) >= threshold from lists first..stop: each list's members against
    every row probing it, as one matrix product. May repeat a pair found from both sides."""
    rows, cols, sims = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for c in range(first, stop):
        mine = plan.members[plan.member_at[c] : plan.member_at[c + 1]]
        queries = plan.probers[plan.prober_at[c] : plan.prober_at[c + 1]]
        if not (len(mine) and len(queries)):
            continue
        scores = space[queries] @ space[mine].T
        qi, mj = np.nonzero(scores >= threshold)
        a, b = queries[qi].astype(np.int64), mine[mj].astype(np.int64)
        keep = a != b
        rows.append(np.minimum(a, b)[keep])
        cols.append(np.maximum(a, b)[keep])
        sims.append(scores[qi, mj][keep])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


def merge_join(n: int, rows, cols, sims) -> Pairs:
    """Each pair once, ordered by (i, j)."""
    _, first = np.unique(rows * n + cols, return_index=True)
    return rows[first], cols[first], sims[first]


def clustered_pairs(
    space: np.ndarray,
    threshold: float,
    progress: Progress | None = None,
) -> Pairs:
    """Approximate all-pairs join: spherical k-means puts each vector in one list; each list's
    members are compared, as one matrix product, with every vector that probes the list (its
    JOIN_NPROBE nearest centroids). A pair is found when either image probes the other's list.

    The same comparisons an IVF range search makes, but as BLAS products rather than one scan per
    query (100k vectors: 7 s vs 91 s), and with no second copy of the vectors.
    """
    n = space.shape[0]
    space = np.ascontiguousarray(space, dtype=np.float32)
    plan = plan_join(space)
    parts, done, step = [], 0, 64
    for first in range(0, plan.nlist, step):
        stop = min(first + step, plan.nlist)
        parts.append(join_lists(space, plan, first, stop, threshold))
        done = int(plan.member_at[stop])
        if progress:
            progress("dups", done, n)
    return merge_join(n, *(np.concatenate([p[k] for p in parts]) for k in range(3)))


def strongest_per_row(n: int, pairs: Pairs, k: int) -> Pairs:
    """The pairs that are among the k highest-scoring of at least one of their two rows."""
    rows, cols, sims = pairs
    if not len(rows):
        return pairs
    ends = np.concatenate([rows, cols])
    scores = np.concatenate([sims, sims])
    which = np.concatenate([np.arange(len(rows)), np.arange(len(rows))])
    order = np.lexsort((-scores, ends))  # by row, best first
    ends, which = ends[order], which[order]
    starts = np.searchsorted(ends, np.arange(n + 1))
    rank = np.arange(len(ends)) - starts[ends]
    keep = np.zeros(len(rows), bool)
    keep[which[rank < k]] = True
    return rows[keep], cols[keep], sims[keep]


PAIR_BLOCK = 1 << 20  # pairs whose scores are computed at once (pair_scores): ~3 GB at 384 dims


def pair_scores(space: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Inner products of the given row pairs, PAIR_BLOCK pairs at a time: gathering both rows of
    24M pairs at once took 70 GB (bench/results/dups_evidence_scale.md)."""
    out = np.empty(len(rows), np.float32)
    for lo in range(0, len(rows), PAIR_BLOCK):
        a, b = rows[lo : lo + PAIR_BLOCK], cols[lo : lo + PAIR_BLOCK]
        out[lo : lo + PAIR_BLOCK] = np.einsum("ij,ij->i", space[a], space[b])
    return out


def nearest_pairs(
    space: np.ndarray, k: int, min_score: float, pictures: np.ndarray | None = None
) -> Pairs:
    """Each row's k nearest other rows scoring >= min_score, as pairs (i < j), n * k at most:
    exact up to EXACT_SEARCH_MAX rows, an IVF search (2 sqrt(n) lists, JOIN_NPROBE probed) above.
    A range search at the same score found 5e9 pairs on 1M realistic vectors.

    With `pictures` (a label >= 0 per row: rows sharing one are taken as one picture and its
    copies), a row's k nearest are followed by its next nearest, the first of each picture not
    yet among them, until its neighbours show k pictures (looking SPREAD_DEPTH * k deep; up to
    2k - 1 neighbours a row): a picture with many copies would otherwise take all k places of
    every look-alike, and a copy of that look-alike would never meet it (a border copy behind 14
    copies of another photo). The k nearest are the same either way, but for the order of exact
    ties, which a deeper search may break otherwise."""
    n, d = space.shape
    if n < 2:
        return no_pairs()
    depth = k if pictures is None else SPREAD_DEPTH * k
    space = np.ascontiguousarray(space, np.float32)
    index: faiss.Index = faiss.IndexFlatIP(d)
    if n > EXACT_SEARCH_MAX:
        nlist = max(1, min(n // 8, int(JOIN_LISTS_PER_SQRT * np.sqrt(n))))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, IVF_TRAIN_PER_LIST * nlist), False)
        ivf.cp.niter = IVF_KMEANS_ITERATIONS
        ivf.train(space[sample])
        ivf.nprobe = min(JOIN_NPROBE, nlist)
        index = ivf
    index.add(space)
    rows, cols, sims = [], [], []
    for lo in range(0, n, QUERY_BLOCK):
        scores, found = index.search(space[lo : lo + QUERY_BLOCK], min(depth + 1, n))
        query = np.arange(lo, lo + len(found))[:, None]
        valid = (found >= 0) & (found != query) & (scores >= min_score)
        keep = valid & (np.cumsum(valid, axis=1) <= k)  # ranked best first
        if pictures is not None:
            _spread(keep, valid, found, pictures, k)
        a, b = np.broadcast_to(query, found.shape)[keep], found[keep]
        rows.append(np.minimum(a, b))
        cols.append(np.maximum(a, b))
        sims.append(scores[keep].astype(np.float32))
    r, c, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)
    return merge_join(n, r, c, s)


def _spread(keep: np.ndarray, valid: np.ndarray, found: np.ndarray, pictures, k: int) -> None:
    """Add to each row's `keep` (its k nearest, of ranked lists `found`) the next nearest valid
    neighbours of pictures it lacks, until it has k pictures (nearest_pairs)."""
    # the columns not to take get labels of their own, below every picture's (labels are >= 0)
    labels = np.where(valid, pictures[np.maximum(found, 0)], -1 - np.arange(found.shape[1]))
    order = np.argsort(labels, axis=1, kind="stable")  # a picture's columns nearest first
    ranked = np.take_along_axis(labels, order, axis=1)
    first = np.ones_like(valid)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    np.put_along_axis(first, order, first.copy(), axis=1)  # back to rank order
    # a picture among the k nearest has its nearest column there: later ones are new pictures
    new = first & valid & ~keep
    room = k - np.count_nonzero(first & keep, axis=1)
    keep |= new & (np.cumsum(new, axis=1) <= room[:, None])


def components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each node's component label (its smallest member) over the edges, vectorised: hook the
    larger root under the smaller, jump pointers, until every edge lies inside one component
    (a long chain, a burst of thousands of frames, takes a few rounds, not one per link)."""
    parent = np.arange(n, dtype=np.int64)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    while len(rows):
        a, b = parent[rows], parent[cols]
        differ = a != b
        if not differ.any():
            break
        a, b = a[differ], b[differ]
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
        while True:  # pointer jumping: every node points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        rows, cols = rows[differ], cols[differ]
    return parent
