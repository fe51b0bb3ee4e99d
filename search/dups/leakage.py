"""Leakage between splits (`dups --within TRAIN --against TEST` on indexed folders): every pair
of a query (test) image and a library (train) image at least as similar as a threshold, from the
vectors the library holds (nothing is decoded or embedded to find them).

Exact blockwise range search up to EXACT_BASE_MAX library images; above, a clustered join like
search/dups/pairs.py's: spherical k-means lists over the library side, each query compared, as
matrix products, with the members of its JOIN_NPROBE nearest lists. The time grows with
queries x probed list members, not with the square of the library.
"""

import faiss
import numpy as np

from search.dups import pairs as P
from search.dups.groups import DupReport

EXACT_BASE_MAX = P.EXACT_SEARCH_MAX
QUERY_BLOCK = P.QUERY_BLOCK


def cross_pairs(
    queries: np.ndarray, base: np.ndarray, threshold: float, progress=None, base_rows=None
):
    """(query rows, base rows, scores) of every pair with inner product >= threshold. With
    `base_rows` the base is base[base_rows] (no copy of it is made), and the base rows returned
    are positions in base_rows."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base_rows = np.arange(len(base)) if base_rows is None else np.asarray(base_rows, np.int64)
    if not len(queries) or not len(base_rows):
        return P.no_pairs()
    if len(base_rows) <= EXACT_BASE_MAX:
        return _exact(queries, np.asarray(base[base_rows], np.float32), threshold, progress)
    return _clustered(queries, base, base_rows, threshold, progress)


def _exact(queries, base, threshold, progress):
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base))
    rows, cols, sims = [], [], []
    for lo in range(0, len(queries), QUERY_BLOCK):
        block = queries[lo : lo + QUERY_BLOCK]
        lims, dist, found = index.range_search(block, float(threshold))
        rows.append(np.repeat(np.arange(lo, lo + len(block)), np.diff(lims).astype(np.int64)))
        cols.append(found.astype(np.int64))
        sims.append(dist)
        if progress:
            progress("dups", lo + len(block), len(queries))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


def _clustered(queries, space, base_rows, threshold, progress):
    n, d = len(base_rows), space.shape[1]
    nlist = max(1, min(n // 8, int(P.JOIN_LISTS_PER_SQRT * np.sqrt(n))))
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(n, min(n, P.IVF_TRAIN_PER_LIST * nlist), replace=False))
    kmeans = faiss.Kmeans(d, nlist, niter=P.IVF_KMEANS_ITERATIONS, spherical=True, seed=1)
    kmeans.train(np.ascontiguousarray(space[base_rows[picked]], dtype=np.float32))
    home = np.empty(n, np.int64)
    for lo in range(0, n, 65536):
        block = np.ascontiguousarray(space[base_rows[lo : lo + 65536]], dtype=np.float32)
        home[lo : lo + 65536] = kmeans.index.search(block, 1)[1][:, 0]
    nprobe = min(P.JOIN_NPROBE, nlist)
    probes = kmeans.index.search(queries, nprobe)[1]
    members = np.argsort(home, kind="stable")
    member_at = np.searchsorted(home[members], np.arange(nlist + 1))
    flat = probes.ravel()
    order = np.argsort(flat, kind="stable")
    probers = order // nprobe
    prober_at = np.searchsorted(flat[order], np.arange(nlist + 1))
    rows, cols, sims = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for c in range(nlist):
        mine = members[member_at[c] : member_at[c + 1]]
        asking = probers[prober_at[c] : prober_at[c + 1]]
        if len(mine) and len(asking):
            scores = queries[asking] @ np.asarray(space[base_rows[mine]], np.float32).T
            qi, mj = np.nonzero(scores >= threshold)
            rows.append(asking[qi])
            cols.append(mine[mj])
            sims.append(scores[qi, mj])
        if progress and (c % 64 == 63 or c == nlist - 1):
            progress("dups", int(member_at[c + 1]), n)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


def best_per_query(rows, cols, sims, limit: int) -> dict[int, list[tuple[int, float]]]:
    """query row -> its `limit` best (base row, score), best first."""
    order = np.lexsort((-sims, rows))
    out: dict[int, list[tuple[int, float]]] = {}
    for r, c, s in zip(
        rows[order].tolist(), cols[order].tolist(), sims[order].tolist(), strict=True
    ):
        found = out.setdefault(r, [])
        if len(found) < limit:
            found.append((c, s))
    return out


class LeakReport(DupReport):
    """A --against report that also lists, per query (test) image with a duplicate in the
    library (train), its library duplicates: `"leaks"` in the JSON."""

    def to_json(self) -> dict:
        out = super().to_json()
        queries = set(self.checked or ())
        leaks = []
        for group in out["groups"]:
            train = [m for m in group["members"] if m["path"] not in queries]
            for m in group["members"]:
                if m["path"] in queries:
                    leaks.append(
                        {
                            "path": m["path"],
                            "id": m["id"] if m["id"] >= 0 else None,
                            "tier": group["tier"],
                            "train": [_leak_member(t) for t in train],
                        }
                    )
        out["leaks"] = leaks
        out["stats"]["leaked"] = len(leaks)
        return out


def _leak_member(m: dict) -> dict:
    keys = ("path", "id", "match", "score", "similarity", "confidence", "verified")
    return {k: m[k] for k in keys}
