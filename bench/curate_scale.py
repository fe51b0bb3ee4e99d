"""`outliers`, `clusters` and the split-leakage join at scale, on realistic vectors
(bench/harness.realistic_vectors: the mean and covariance of real DINOv2 embeddings, events of
~30 images, 3 % planted near-copies), with 1 % planted outliers in 10 tight batches (0.1 % of
the library each: screenshots-like groups far from every photo). Each size runs in a fresh
process so its peak RSS (ru_maxrss) is its own; the vectors are read into RAM.

    python bench/curate_scale.py [--sizes 100000,300000] [--copy 0.97] [--similar 0.96] [--quick]

Per size: outliers (search/curate/outliers.find_outliers: time, and the share of the planted
outliers among the top 1 %; the same for the distance to the centre), clusters (the product's
two steps: `dups` groups, i.e. neighbour_pairs + leader_groups at the copy threshold, then
cluster_library at the similar level: 0.96 is the product's `auto` rule on these vectors,
halfway from the copy threshold 0.97 to their median nearest distinct cosine 0.951), and leakage
(cross_pairs of a 10 % test split against the other 90 % at the copy threshold: time, and the
share of the planted copies across the splits found).
Results: bench/results/curate_scale.md (+ .json).
"""

import argparse
import json
import resource
import subprocess
import time

import harness
import numpy as np

from search.curate.clusters import cluster_library
from search.curate.outliers import find_outliers
from search.dups.groups import Library, leader_groups
from search.dups.leakage import cross_pairs
from search.dups.pairs import neighbour_pairs

OUTLIER_SHARE = 0.01
BATCHES = 10


def plant_outliers(vectors: np.ndarray, seed: int = 7) -> np.ndarray:
    """Replace 1 % of the rows by BATCHES tight groups far from the photos; their rows."""
    rng = np.random.default_rng(seed)
    n, d = vectors.shape
    rows = rng.choice(n, int(n * OUTLIER_SHARE), replace=False)
    mean = vectors.mean(0)
    for batch in np.array_split(rows, BATCHES):
        direction = rng.standard_normal(d).astype(np.float32)
        direction -= (direction @ mean) / (mean @ mean) * mean  # away from what photos share
        direction /= np.linalg.norm(direction)
        noise = rng.standard_normal((len(batch), d)).astype(np.float32) / np.sqrt(d)
        batch_vecs = 0.3 * mean / np.linalg.norm(mean) + direction + 0.25 * noise
        vectors[batch] = batch_vecs / np.linalg.norm(batch_vecs, axis=1, keepdims=True)
    return rows


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    vectors, planted = harness.vectors_cached(args.child, mmap=False)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    odd = plant_outliers(vectors)
    n = len(vectors)
    out = {"n": n, "vectors_mb": vectors.nbytes / 2**20}
    ids = np.arange(n)
    t = time.perf_counter()
    report = find_outliers(ids, vectors, lambda w: {i: str(i) for i in w}, len(odd))
    out["outliers_s"] = time.perf_counter() - t
    found = {o.id for o in report.outliers}
    out["outliers_recall_at_1pct"] = len(found & set(odd.tolist())) / len(odd)
    out["outliers_k"], out["outliers_reference"] = report.stats["k"], report.stats["reference"]
    centre = vectors.mean(0)
    by_centre = np.argsort(vectors @ centre)[: len(odd)]
    out["centre_recall_at_1pct"] = len(set(by_centre.tolist()) & set(odd.tolist())) / len(odd)
    out["rss_after_outliers_mb"] = rss_mb()

    lib = Library(ids, vectors, [{"hash": None, "width": 1, "height": 1, "size": 1}] * n)
    t = time.perf_counter()
    rows, cols, sims = neighbour_pairs(vectors, args.copy)
    groups = leader_groups(n, rows, cols, sims, args.copy, np.zeros(n))
    groups = [[leader] + [m for m, _ in members] for leader, members in groups]
    del rows, cols, sims
    out["dups_groups_s"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters = cluster_library(lib, vectors, args.similar, groups, 2)
    out["clusters_s"] = time.perf_counter() - t
    out["clusters"] = clusters.stats["clusters"]
    out["clustered_images"] = clusters.stats["in_listed_clusters"]
    out["largest_cluster"] = clusters.stats["largest"]
    label = np.empty(n, np.int64)
    label[:] = -1
    for c in clusters.clusters:
        label[c.rows] = c.id
    out["groups_split"] = sum(len({int(label[r]) for r in g}) > 1 for g in groups)
    out["rss_after_clusters_mb"] = rss_mb()
    del clusters, groups

    test = np.random.default_rng(3).random(n) < 0.1
    t = time.perf_counter()
    q_rows, b_rows = np.flatnonzero(test), np.flatnonzero(~test)
    qi, bj, _ = cross_pairs(vectors[test], vectors, args.copy, None, b_rows)
    out["leakage_s"] = time.perf_counter() - t
    found = set(zip(q_rows[qi].tolist(), b_rows[bj].tolist(), strict=True))
    cos = (vectors[planted[:, 0]] * vectors[planted[:, 1]]).sum(1)
    want = {
        (int(a), int(b)) if test[a] else (int(b), int(a))
        for (a, b), c in zip(planted.tolist(), cos, strict=True)
        if test[a] != test[b] and c >= args.copy
    }
    out["leakage_recall"] = len(want & found) / max(1, len(want))
    out["leakage_planted"] = len(want)
    out["peak_rss_mb"] = rss_mb()
    print(json.dumps(out))


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 20k vectors")
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument("--copy", type=float, default=0.97)
    ap.add_argument("--similar", type=float, default=0.96)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.sizes = "20000"
    results, rows = [], []
    for n in [int(s) for s in args.sizes.split(",")]:
        harness.vectors_cached(n)  # generated outside the timed child
        started = time.perf_counter()
        proc = subprocess.run(
            [harness.PYTHON, __file__, "--child", str(n), "--copy", str(args.copy),
             "--similar", str(args.similar)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["wall_s"] = time.perf_counter() - started
        results.append(r)
        rows.append(
            [n, r["outliers_s"], r["outliers_recall_at_1pct"], r["centre_recall_at_1pct"],
             r["dups_groups_s"], r["clusters_s"], r["clusters"], r["largest_cluster"],
             r["groups_split"], r["leakage_s"], r["leakage_recall"], r["peak_rss_mb"],
             r["vectors_mb"], r["peak_rss_mb"] / r["vectors_mb"]]
        )  # fmt: skip
        print(rows[-1], flush=True)
    header = ["vectors", "outliers s", "outliers: planted in top 1 %", "centre: top 1 %",
              "dups groups s", "clusters s", "clusters", "largest", "dup groups split",
              "leakage s", "leakage recall", "peak RSS MB", "vectors MB", "RSS/vec"]  # fmt: skip
    md = (
        "# Curation at scale\n\n"
        f"Realistic 384-d vectors, 1 % planted outliers in {BATCHES} tight batches; copy "
        f"threshold {args.copy}, cluster level {args.similar} (raw cosine). `clusters` in the "
        "product = `dups` groups + `cluster_library`: add both columns. Leakage: a 10 % test "
        "split against the other 90 %. Peak RSS of a fresh process holding the vectors in RAM "
        "(Python, numpy, faiss included); the machine is shared with other work.\n\n"
        + harness.table(header, rows)
    )
    old = (harness.read_results("curate_scale") or {}).get("results", [])
    keep = [r for r in old if r["n"] not in {x["n"] for x in results}]
    harness.write_results("curate_scale", md, {"results": keep + results})


if __name__ == "__main__":
    main()
