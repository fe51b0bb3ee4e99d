"""`dinosearch clusters`: the library partitioned into clusters of look-alike images.

Units first: every group `dups` reports with the same --threshold and --within (so with its
tiers, pixel-confirmed copies included) and every set of byte-identical files is one unit; each
other image is a unit of its own. Units are then clustered like `dups` clusters copies, by
leader clustering without chaining (search/dups/groups.py `leader_groups`) over one
representative each: taken in order of how many neighbours they have above the threshold, each
unit not yet clustered leads a cluster of every unclustered unit within the threshold of it. A
unit moves whole, so copies are never split, and a series of images each close only to the next
never becomes one long cluster. Every image is in exactly one cluster (a singleton when alone).

`auto` is the calibrated `similar` level in the whitened space `dups` uses (from 100 images on),
halfway from the copy threshold to the typical nearest distinct photo; under 100 images (raw
cosines, where distinct photos crowd at 0.85-0.9) the copy threshold; a number is a raw cosine.
The pairs come from search/dups/pairs.py (exact range search; the clustered join above 50,000).
Each cluster's representative is its leader; each member's score its raw cosine to it.
"""

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from indexer.atomic import atomic_open
from indexer.config import DEFAULT_MIN_CLUSTER
from indexer.errors import BadQuery
from search.dups.groups import Library, leader_groups
from search.dups.pairs import components, neighbour_pairs


@dataclass
class Cluster:
    id: int
    rows: np.ndarray  # positions in the library, the representative first
    scores: np.ndarray  # raw cosine of each to the representative
    similarities: np.ndarray  # the same in the threshold's space (whitened for auto)


@dataclass
class ClusterReport:
    lib: Library
    clusters: list[Cluster] = field(default_factory=list)  # listed ones (size >= min_size)
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"clusters": [self._cluster(c) for c in self.clusters], "stats": self.stats}

    def _cluster(self, c: Cluster) -> dict:
        rep = int(c.rows[0])
        members = [
            {
                "path": self.lib.rows[r]["path"],
                "id": int(self.lib.ids[r]),
                "score": round(float(s), 6),
                "similarity": round(float(w), 6),
            }
            for r, s, w in zip(c.rows.tolist(), c.scores, c.similarities, strict=True)
        ]
        return {
            "id": c.id,
            "size": len(c.rows),
            "representative": {"path": self.lib.rows[rep]["path"], "id": int(self.lib.ids[rep])},
            "members": members,
        }

    def write_csv(self, path: str) -> None:
        """One row per listed member: cluster, size, representative, path, id, score."""
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["cluster", "size", "representative", "path", "id", "score"])
            for c in self.to_json()["clusters"]:
                for m in c["members"]:
                    rep = c["representative"]["path"]
                    writer.writerow([c["id"], c["size"], rep, m["path"], m["id"], m["score"]])


def hash_links(hashes: list) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every file to the first file with the same bytes."""
    first: dict[str, int] = {}
    a, b = [], []
    for row, digest in enumerate(hashes):
        if digest:
            head = first.setdefault(digest, row)
            if head != row:
                a.append(head)
                b.append(row)
    return np.array(a, np.int64), np.array(b, np.int64)


def cluster_library(
    lib: Library,
    space: np.ndarray,
    threshold: float,
    groups: Sequence[Sequence[int]] = (),
    min_size: int = DEFAULT_MIN_CLUSTER,
    progress=None,
) -> ClusterReport:
    """Partition the library (vectors in `space`, raw vectors in lib) at `threshold`; `groups`
    (rows of each duplicate group) move whole."""
    started = time.perf_counter()
    if min_size < 1:
        raise BadQuery("--min-size: at least 1")
    n = len(lib.ids)
    ha, hb = hash_links(lib.hashes)
    ga = np.array([g[0] for g in groups for _ in g[1:]], np.int64)
    gb = np.array([m for g in groups for m in g[1:]], np.int64)
    unit = components(n, np.concatenate([ha, ga]), np.concatenate([hb, gb]))
    reps = np.flatnonzero(unit == np.arange(n))  # a unit's smallest row stands for it
    weight = np.bincount(unit, minlength=n)[reps]  # images in each unit
    pixels = np.array([(r["width"] or 0) * (r["height"] or 0) for r in lib.rows], np.float64)
    rows, cols, sims = neighbour_pairs(space, threshold, progress)  # all rows: no copy of space
    is_rep = unit == np.arange(n)
    keep = is_rep[rows] & is_rep[cols]
    rows, cols = np.searchsorted(reps, rows[keep]), np.searchsorted(reps, cols[keep])
    sims = sims[keep]
    priority = weight * 1e12 + pixels[reps]  # bigger units lead, then resolution
    label = np.arange(len(reps))  # each rep's cluster: the rep (position) that leads it
    for leader, members in leader_groups(len(reps), rows, cols, sims, threshold, priority):
        label[[m for m, _ in members]] = leader
    cluster_of = label[np.searchsorted(reps, unit)]  # each row's cluster, by its leader position
    # rows of a cluster together, its leader's row first
    order = np.lexsort((np.arange(n), ~(np.arange(n) == reps[cluster_of]), cluster_of))
    starts = np.flatnonzero(np.r_[True, cluster_of[order][1:] != cluster_of[order][:-1]])
    starts = starts if n else np.zeros(0, np.int64)
    bounds = list(zip(starts, list(starts[1:]) + [n], strict=True))
    bounds.sort(key=lambda b: (-(b[1] - b[0]), int(order[b[0]])))  # largest first
    report = ClusterReport(lib)
    for lo, hi in bounds:
        if hi - lo < min_size:
            continue
        in_cluster = order[lo:hi]
        rep = in_cluster[0]
        scores = np.asarray(lib.vectors[in_cluster], np.float32) @ np.asarray(lib.vectors[rep])
        similar = np.asarray(space[in_cluster], np.float32) @ np.asarray(space[rep])
        report.clusters.append(Cluster(len(report.clusters) + 1, in_cluster, scores, similar))
    sizes_all = np.array([hi - lo for lo, hi in bounds], np.int64)
    report.stats = {
        "images": n,
        "clusters": len(report.clusters),
        "all_clusters": len(bounds),
        "singletons": int((sizes_all == 1).sum()),
        "largest": int(sizes_all.max()) if len(sizes_all) else 0,
        "in_listed_clusters": int(sum(len(c.rows) for c in report.clusters)),
        "pairs": len(rows),
        "duplicate_groups": len(groups),
        "threshold": round(float(threshold), 6),
        "min_size": min_size,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return report
