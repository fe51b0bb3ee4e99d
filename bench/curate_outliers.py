"""Outlier precision on a planted set with real weights: 83 real scene photos plus a group of odd
images (text documents, charts, UI screenshots, flat graphics; bench/curate_planted.py), scored by
`dinosearch outliers` (1 - cosine to the k-th neighbour, k = max(20, 2 % of n)) and by the
alternatives the issue measured: the 5th, 10th neighbour and the distance to the centre.

    python bench/curate_outliers.py [--model DIR] [--quick]

24 odd images (6 of each kind) are indexed once with the photos; each planted group (a batch of
one kind, a mix, everything) is evaluated on the photos plus that group. Results:
bench/results/curate_outliers.md (+ .json).
"""

import json
import os
from pathlib import Path

import curate_planted
import harness
import numpy as np

from indexer.job import IndexOptions
from search.collection import Collection
from search.curate.outliers import find_outliers, neighbour_rank

WORK = harness.WORK / "curate"
KINDS = ("screenshot", "document", "chart", "flat_graphic")
GROUPS = {  # name -> how many of each kind
    "1 screenshot": {"screenshot": 1},
    "a batch of 6 screenshots": {"screenshot": 6},
    "a folder of 6 scanned documents": {"document": 6},
    "6 charts": {"chart": 6},
    "6 flat-colour graphics": {"flat_graphic": 6},
    "8 mixed (2 of each kind)": dict.fromkeys(KINDS, 2),
    "12: 6 screenshots + 6 documents": {"screenshot": 6, "document": 6},
    "24: all four kinds": dict.fromkeys(KINDS, 6),
}


def library(model: str) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """(ids, vectors, paths, truth) of the planted set, indexed once under bench/work/curate."""
    folder, lib = WORK / "planted", WORK / "lib"
    if not (folder / "truth.json").exists():
        curate_planted.make(folder, odd=24)
    coll = Collection(lib, model)
    coll.index([folder], IndexOptions(workers=1))
    ids, vectors = coll.store().vectors()
    rows = coll.store().images_by_ids(ids.tolist(), "id, path")
    paths = [rows[int(i)]["path"] for i in ids]
    coll.close()
    return (
        ids,
        np.asarray(vectors, np.float32),
        paths,
        json.loads((folder / "truth.json").read_text()),
    )


def kth_score(vectors: np.ndarray, k: int) -> np.ndarray:
    """1 - cosine to the k-th nearest other vector (exact)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return 1 - np.sort(sims, axis=1)[:, -k]


def centre_score(vectors: np.ndarray) -> np.ndarray:
    centre = vectors.mean(0)
    return 1 - vectors @ (centre / np.linalg.norm(centre))


def ours(vectors: np.ndarray) -> np.ndarray:
    ids = np.arange(len(vectors))
    report = find_outliers(ids, vectors, lambda w: {i: str(i) for i in w}, len(vectors))
    scores = np.zeros(len(vectors))
    for o in report.outliers:
        scores[o.id] = o.score
    return scores


def metrics(scores: np.ndarray, odd: np.ndarray) -> dict:
    order = np.argsort(-scores, kind="stable")
    hits = odd[order]
    g = int(odd.sum())
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return {
        "top10": int(hits[:10].sum()),
        "precision_at_group": float(hits[:g].mean()),
        "average_precision": float((precision_at * hits).sum() / g),
        "worst_odd_rank": int(np.flatnonzero(hits).max() + 1),
    }


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: the first 2 odd groups", model=True)
    args = ap.parse_args()
    ids, vectors, paths, truth = library(harness.model_dir(args.model))
    photo_rows = [r for r, p in enumerate(paths) if p in set(truth["photos"])]
    by_kind = {
        k: [paths.index(p) for p in truth["odd"] if Path(p).name.startswith(k)] for k in KINDS
    }
    methods = {
        "outliers (k-th neighbour, k = max(20, 2 % n))": ours,
        "5th neighbour": lambda v: kth_score(v, 5),
        "10th neighbour": lambda v: kth_score(v, 10),
        "distance to the centre": centre_score,
    }
    data, rows = {"photos": len(photo_rows), "model": args.model, "runs": []}, []
    for group, counts in list(GROUPS.items())[: 2 if args.quick else None]:
        planted = [r for k, c in counts.items() for r in by_kind[k][:c]]
        sel = photo_rows + planted
        odd = np.array([r in set(planted) for r in sel])
        g = len(planted)
        for name, score in methods.items():
            m = metrics(score(vectors[sel]), odd)
            data["runs"].append({"group": group, "images": len(sel), "method": name, **m})
            rows.append(
                [group, len(sel), f"{100 * g / len(sel):.1f} %", name, f"{m['top10']}/{min(g, 10)}",
                 m["precision_at_group"], m["average_precision"], m["worst_odd_rank"]]
            )  # fmt: skip
    header = ["odd group", "images", "share", "method", "odd in top 10", "precision@group",
              "average precision", "rank of the last odd image"]  # fmt: skip
    md = (
        f"# Outliers on a planted set\n\n{len(photo_rows)} real scene photos "
        "(Kodak, McMaster, Set14/Set5, UKBench base images, 12 Kodak quarter crops) plus a group "
        "of odd images made with PIL (text documents, bar/line charts, UI screenshots, "
        f"flat-colour graphics), real DINOv2-S/14 weights (`{os.path.basename(args.model)}`), raw "
        f"cosine. `outliers` uses k = {neighbour_rank(len(photo_rows) + 24)} here (n < 1000: "
        "the floor of 20).\n\n" + harness.table(header, rows)
    )
    harness.write_results("curate_outliers", md, data)


if __name__ == "__main__":
    main()
