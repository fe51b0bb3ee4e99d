"""The core of `dinosearch dups` at scale: search.dups.pairs.neighbour_pairs + leader_groups over
100k and 1M realistic vectors with 3 % planted near-copies. Each size runs in its own process so
its peak RSS (ru_maxrss) is its own; the vectors are loaded into RAM (not memory-mapped).

Above pairs.EXACT_SEARCH_MAX vectors the product uses the clustered join
(pairs.clustered_pairs); --nlist-per-sqrt, --nprobe, --train-per-list, --niter override its
parameters in the child only. --exact-check also runs the exact range search on the same vectors
and reports the share of its pairs the shipped search found (slow: minutes at 100k).

    python bench/dups_scale.py [--quick] [--sizes 100000,1000000] [--threshold 0.97] [--exact-check]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import harness
import numpy as np

from search.dups import pairs as D
from search.dups.groups import leader_groups


def child(args) -> None:
    """Runs in a fresh process: load vectors, find pairs, group; print JSON."""
    # Read into anonymous memory, like the product's store.vectors(): a copy of a memory map
    # would count the file's pages in the peak RSS as well.
    vectors, planted = harness.vectors_cached(args.child, mmap=False)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    for flag, name in (
        ("nlist_per_sqrt", "JOIN_LISTS_PER_SQRT"),
        ("nprobe", "JOIN_NPROBE"),
        ("train_per_list", "IVF_TRAIN_PER_LIST"),
        ("niter", "IVF_KMEANS_ITERATIONS"),
        ("exact_max", "EXACT_SEARCH_MAX"),
    ):
        if getattr(args, flag):
            setattr(D, name, getattr(args, flag))
    t = time.perf_counter()
    rows, cols, sims = D.neighbour_pairs(vectors, args.threshold)
    pairs_s = time.perf_counter() - t
    t = time.perf_counter()
    groups = leader_groups(len(vectors), rows, cols, sims, args.threshold, np.zeros(len(vectors)))
    group_s = time.perf_counter() - t
    found = set(zip(rows.tolist(), cols.tolist(), strict=True))
    exact_share = None
    if args.exact_check:
        D.EXACT_SEARCH_MAX = len(vectors)
        er, ec, _ = D.neighbour_pairs(vectors, args.threshold)
        exact = set(zip(er.tolist(), ec.tolist(), strict=True))
        exact_share = len(found & exact) / max(1, len(exact))
    want = {(min(a, b), max(a, b)) for a, b in planted.tolist()}
    cos = (vectors[planted[:, 0]] * vectors[planted[:, 1]]).sum(1)
    above = {
        (min(a, b), max(a, b))
        for (a, b), c in zip(planted.tolist(), cos, strict=True)
        if c >= args.threshold
    }
    print(
        json.dumps(
            {
                "n": len(vectors),
                "pairs": len(rows),
                "groups": len(groups),
                "pairs_s": pairs_s,
                "groups_s": group_s,
                "planted_recall": len(above & found) / max(1, len(above)),
                "share_of_exact_pairs": exact_share,
                "planted_above_threshold": len(above),
                "planted": len(want),
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "vectors_mb": vectors.nbytes / 2**20,
            }
        )
    )


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 20k vectors")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--threshold", type=float, default=0.97)
    ap.add_argument("--nlist-per-sqrt", type=float, default=0)
    ap.add_argument("--nprobe", type=int, default=0)
    ap.add_argument("--train-per-list", type=int, default=0)
    ap.add_argument("--niter", type=int, default=0)
    ap.add_argument("--exact-max", type=int, default=0)
    ap.add_argument("--exact-check", action="store_true")
    ap.add_argument("--name", default="dups_scale", help="results file: perf_<name>.*")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    passthrough = [a for a in sys.argv[1:] if a != "--quick"]
    data, rows = {}, []
    for n in sizes:
        harness.vectors_cached(n)  # generate outside the timed child
        started = time.perf_counter()
        out = subprocess.run(
            [harness.PYTHON, __file__, "--child", str(n), *passthrough],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["wall_s"] = time.perf_counter() - started
        data[n] = r
        rows.append(
            [
                n,
                r["pairs_s"] + r["groups_s"],
                r["pairs_s"],
                r["groups_s"],
                r["pairs"],
                r["groups"],
                r["planted_recall"],
                "-" if r.get("share_of_exact_pairs") is None else r["share_of_exact_pairs"],
                r["maxrss_mb"],
                r["vectors_mb"],
                r["maxrss_mb"] / r["vectors_mb"],
            ]
        )
        print(rows[-1], flush=True)
    md = (
        f"`neighbour_pairs` + `leader_groups` at raw cosine >= {args.threshold}, 3 % planted "
        "near-copies; peak RSS of a fresh process holding the vectors (includes Python, numpy, "
        f"faiss). Join overrides: {_overrides(args) or 'none (shipped parameters)'}.\n\n"
        + harness.table(
            [
                "vectors",
                "total s",
                "pairs s",
                "groups s",
                "pairs",
                "groups",
                "planted recall",
                "share of exact pairs",
                "peak RSS MB",
                "vectors MB",
                "RSS / vectors",
            ],
            rows,
        )
    )
    harness.write_results(
        f"perf_{args.name}",
        md,
        {
            "quick": args.quick,
            "threshold": args.threshold,
            "overrides": _overrides(args),
            "sizes": data,
        },
    )


def _overrides(args) -> str:
    keys = ("exact_max", "nlist_per_sqrt", "nprobe", "train_per_list", "niter")
    return ", ".join(f"{k}={getattr(args, k)}" for k in keys if getattr(args, k))


if __name__ == "__main__":
    main()
