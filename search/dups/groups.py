"""Vectors -> duplicate groups, in tiers, without chaining; each file in at most one group.

Grouping rule. Identical files come first: files with the same bytes (SHA-256), and files with the
same decoded pixels (a PNG and its lossless WebP), form a *twin set* with one representative (the
largest file). Only representatives take part in the near-duplicate search, by leader clustering:
they are taken in order of how many neighbours they have above the threshold (then resolution,
then id); each one not yet grouped becomes the first member of a new group holding every
still-ungrouped representative within the threshold *of the first member*. So every `copy` member
is within the threshold of its group's first member, and a series of images each close only to
the next cannot merge into one long group. Then every representative brings its twins into its
group (match `exact` or `pixels`, `twin_of` naming the member it is identical to), and a twin set
in no near group is a group of its own (tier `exact`, or `pixels` when not all bytes agree). A
group's tier is its loosest link: exact < pixels < copy < similar.
"""

import csv
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

EXACT_SEARCH_MAX = 50_000  # exact range search below this; a clustered join above
QUERY_BLOCK = 2048  # query rows per range-search call: bounds memory to the block's results
IVF_TRAIN_PER_LIST = 40  # k-means sample per list, and few iterations: training must not
IVF_KMEANS_ITERATIONS = 10  # dominate (the defaults cost ~11 min at 1M on 2 cores)
JOIN_LISTS_PER_SQRT = 2  # clustered join: 2 * sqrt(n) lists (2,000 lists of ~500 at 1M)
JOIN_NPROBE = 16  # lists each vector is joined with: 99.7 % of the exact pairs at 100k (8: 98.3 %)

Progress = Callable[[str, int, int], None]
TIERS = ("exact", "pixels", "copy", "similar")


@dataclass
class Member:
    id: int
    path: str
    score: float  # raw cosine to the group's first member
    confidence: float | None  # calibrated probability of being a duplicate of the first member
    width: int | None
    height: int | None
    bytes: int | None
    similarity: float | None = None  # score in the calibrated (whitened) space
    match: str = "first"  # how it joined the group: exact/pixels/copy/similar
    twin_of: str | None = None  # exact/pixels: the member whose bytes/pixels it has
    verified: str | None = None  # copy below the threshold confirmed by pixels: "tone" or "crop"
    via: str | None = None  # a verified copy of this member rather than of the first one

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "score": round(self.score, 6),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "id": self.id,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
            "match": self.match,
            "twin_of": self.twin_of,
            "verified": self.verified,
            "via": self.via,
        }


@dataclass
class Group:
    tier: str
    members: list[Member]

    def to_json(self) -> dict:
        return {"tier": self.tier, "members": [m.to_json() for m in self.members]}


def loosest_tier(members: list[Member]) -> str:
    """A group's tier: the loosest way any member after the first matched."""
    matches = {m.match for m in members[1:]}
    return next((t for t in reversed(TIERS) if t in matches), "exact")


@dataclass
class DupReport:
    threshold: float
    calibration: dict | None
    groups: list[Group] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    mode: str = "auto"  # "auto" (calibrated, whitened space) or "cosine" (fixed raw threshold)
    pixel_checks: bool = False  # hard copies confirmed by pixels (search/verify.py) in this run
    checked: list[str] | None = None  # --against / --of: every query file looked up

    def to_json(self) -> dict:
        out = self._to_json()
        if self.checked is not None:  # --against / --of: which query files have no duplicate
            grouped = {m.path for g in self.groups for m in g.members}
            out["stats"]["checked"] = len(self.checked)
            out["new"] = [p for p in self.checked if p not in grouped]
        return out

    def _to_json(self) -> dict:
        return {
            "threshold": round(self.threshold, 6),
            "calibration": self.calibration,
            "groups": [g.to_json() for g in self.groups],
            "stats": {
                "images": self.images,
                "groups": len(self.groups),
                "duplicates": sum(len(g.members) - 1 for g in self.groups),
                "seconds": round(self.seconds, 3),
                "mode": self.mode,
                "pixel_checks": self.pixel_checks,
                "tiers": {t: sum(g.tier == t for g in self.groups) for t in TIERS},
            },
        }

    def write_csv(self, path: str) -> None:
        fields = [
            "group",
            "tier",
            "path",
            "score",
            "confidence",
            "similarity",
            "match",
            "twin_of",
            "verified",
            "via",
            "width",
            "height",
            "bytes",
        ]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for number, group in enumerate(self.groups, 1):
                for m in group.members:
                    row = m.to_json()
                    writer.writerow(
                        {"group": number, "tier": group.tier, **{k: row[k] for k in fields[2:]}}
                    )


def neighbour_pairs(
    space: np.ndarray, threshold: float, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with inner product >= threshold: exact blockwise range search up to
    EXACT_SEARCH_MAX vectors, a clustered join above. Never an n x n matrix."""
    n = space.shape[0]
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    if n > EXACT_SEARCH_MAX:
        return clustered_pairs(space, threshold, progress)
    index = _range_index(space)
    rows, cols, sims = [], [], []
    for start in range(0, n, QUERY_BLOCK):
        block = space[start : start + QUERY_BLOCK]
        lims, dist, found = index.range_search(np.ascontiguousarray(block), float(threshold))
        query = np.repeat(np.arange(start, start + len(block)), np.diff(lims).astype(np.int64))
        keep = found > query  # each pair once, never an image with itself
        rows.append(query[keep])
        cols.append(found[keep])
        sims.append(dist[keep])
        if progress:
            progress("dups", min(start + QUERY_BLOCK, n), n)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


@dataclass
class JoinPlan:
    """The clustered join's lists: which rows each list holds and which rows probe it."""

    nlist: int
    members: np.ndarray  # rows sorted by their own (nearest) list, int32
    member_at: np.ndarray  # list c's members are members[member_at[c]:member_at[c + 1]]
    probers: np.ndarray  # rows sorted by the lists they probe, int32
    prober_at: np.ndarray


def plan_join(space: np.ndarray, nprobe: int | None = None) -> JoinPlan:
    """Spherical k-means lists over the vectors and each vector's `nprobe` nearest lists."""
    import faiss

    n, d = space.shape
    nlist = max(1, min(n // 8, int(JOIN_LISTS_PER_SQRT * np.sqrt(n))))
    sample = space[np.random.default_rng(0).choice(n, min(n, IVF_TRAIN_PER_LIST * nlist), False)]
    kmeans = faiss.Kmeans(d, nlist, niter=IVF_KMEANS_ITERATIONS, spherical=True, seed=1)
    kmeans.train(np.ascontiguousarray(sample))
    del sample
    nprobe = min(nprobe or JOIN_NPROBE, nlist)
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


def join_lists(
    space: np.ndarray, plan: JoinPlan, first: int, stop: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def merge_join(n: int, rows, cols, sims) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair once, ordered by (i, j)."""
    _, first = np.unique(rows * n + cols, return_index=True)
    return rows[first], cols[first], sims[first]


def clustered_pairs(
    space: np.ndarray,
    threshold: float,
    progress: Progress | None = None,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate all-pairs join: spherical k-means puts each vector in one list; each list's
    members are compared, as one matrix product, with every vector that probes the list (its
    `nprobe` nearest centroids). A pair is found when either image probes the other's list.

    The same comparisons an IVF range search makes, but as BLAS products rather than one scan per
    query (100k vectors: 7 s vs 91 s), and with no second copy of the vectors.
    """
    n = space.shape[0]
    space = np.ascontiguousarray(space, dtype=np.float32)
    plan = plan_join(space, nprobe)
    parts, done, step = [], 0, 64
    for first in range(0, plan.nlist, step):
        stop = min(first + step, plan.nlist)
        parts.append(join_lists(space, plan, first, stop, threshold))
        done = int(plan.member_at[stop])
        if progress:
            progress("dups", done, n)
    return merge_join(n, *(np.concatenate([p[k] for p in parts]) for k in range(3)))


def _range_index(space: np.ndarray):
    """The exact index of the blockwise range search (up to EXACT_SEARCH_MAX vectors)."""
    import faiss

    index = faiss.IndexFlatIP(space.shape[1])
    index.add(np.ascontiguousarray(space))
    return index


def leader_groups(
    n: int,
    rows: np.ndarray,
    cols: np.ndarray,
    sims: np.ndarray,
    threshold: float,
    priority: np.ndarray,
    taken: np.ndarray | None = None,
) -> list[tuple[int, list[tuple[int, float]]]]:
    """Groups as (representative, [(member, similarity)]) under the leader rule (module doc)."""
    keep = sims >= threshold
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    both_r = np.concatenate([rows, cols])
    both_c = np.concatenate([cols, rows])
    both_s = np.concatenate([sims, sims])
    order = np.argsort(both_r, kind="stable")
    both_r, both_c, both_s = both_r[order], both_c[order], both_s[order]
    starts = np.searchsorted(both_r, np.arange(n + 1))
    degree = np.diff(starts)
    taken = np.zeros(n, bool) if taken is None else taken.copy()
    groups = []
    for leader in np.lexsort((np.arange(n), -priority, -degree)):
        if taken[leader] or degree[leader] == 0:
            continue
        lo, hi = starts[leader], starts[leader + 1]
        members = [
            (int(c), float(s))
            for c, s in zip(both_c[lo:hi], both_s[lo:hi], strict=True)
            if not taken[c]
        ]
        if not members:
            continue
        members.sort(key=lambda m: (-m[1], m[0]))
        taken[leader] = True
        for m, _ in members:
            taken[m] = True
        groups.append((int(leader), members))
    return groups


@dataclass
class TwinUnits:
    """Each row's twin-set representative (rep[i] == i: a representative)."""

    rep: np.ndarray

    def twins_of(self) -> dict[int, list[int]]:
        """Representative -> its other rows, for sets of two or more."""
        out: dict[int, list[int]] = {}
        for row, rep in enumerate(self.rep.tolist()):
            if row != rep:
                out.setdefault(rep, []).append(row)
        return out


def twin_units(
    hashes: list[str | None], pixel_pairs: list[tuple[int, int]], sizes: list[int]
) -> TwinUnits:
    """Union of byte-identical rows and pixel-identical pairs; the largest file (then the first
    row) represents its set."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links = [(rows[0], r) for rows in exact_groups(hashes) for r in rows[1:]]
    for a, b in links + list(pixel_pairs):
        parent[root(b)] = root(a)
    best: dict[int, int] = {}
    for row in range(len(hashes)):
        r, b = root(row), best.get(root(row))
        if b is None or (sizes[row], -row) > (sizes[b], -b):
            best[r] = row
    return TwinUnits(np.array([best[root(i)] for i in range(len(hashes))], np.int64))


def exact_groups(hashes: list[str | None]) -> list[list[int]]:
    """Row indices of files with identical bytes, in groups of two or more."""
    by_hash: dict[str, list[int]] = {}
    for row, digest in enumerate(hashes):
        if digest:
            by_hash.setdefault(digest, []).append(row)
    return [rows for rows in by_hash.values() if len(rows) > 1]
