"""imagededup PHash/DHash/WHash pair precision/recall/F1 on the near-duplicate set.

usage: bench/work/venv-imagededup/bin/python bench/imagededup_baseline.py [--truth GT] [--quick]

Runs in its own venv (imagededup 0.3.3.post2 installed with --no-deps, plus its non-torch
dependencies). imagededup's package __init__ imports its CNN method, which needs torchvision;
PyPI only has a CUDA torchvision build that does not load against the CPU torch, so the two CNN
modules are stubbed before import. The hashing code that runs is imagededup's own, unchanged.
Writes bench/results/dups_imagededup.{json,md} (--quick: 100 files per set, into
bench/work/quick-results).
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import harness
import numpy as np
from dups_eval import (
    DEFAULT_TRUTH,
    TruthSet,
    at_threshold,
    best_threshold,
    load_sets,
    pair_scores,
    transform_recall,
)
from harness import prf_cell, recall_table, table

DEFAULT_DISTANCE = 10  # imagededup's find_duplicates max_distance_threshold default (64-bit hash)


def imagededup_methods():
    """(imagededup, {name: hash class}), its CNN modules stubbed (they need torchvision)."""
    sys.modules["imagededup.methods.cnn"] = types.SimpleNamespace(CNN=None)
    sys.modules["imagededup.utils.models"] = types.SimpleNamespace(CustomModel=None)
    try:
        import imagededup
        from imagededup.methods import DHash, PHash, WHash
    except ImportError:
        raise SystemExit(
            "error: imagededup is not installed here: run this file with "
            "bench/work/venv-imagededup/bin/python (see bench/README.md)"
        ) from None
    return imagededup, {"PHash": PHash, "DHash": DHash, "WHash": WHash}


def encode(method, paths: list[str]) -> tuple[dict[str, int], float]:
    """Hash every decodable file; return path -> 64-bit int and seconds taken."""
    start = time.perf_counter()
    hashes = {}
    for p in paths:
        h = method.encode_image(image_file=p)
        if h:
            hashes[p] = int(h, 16)
    return hashes, time.perf_counter() - start


def hamming_matrix(values: list[int]) -> np.ndarray:
    """Pairwise Hamming distances of 64-bit hashes."""
    v = np.array(values, dtype=np.uint64)
    x = v[:, None] ^ v[None, :]
    bits = np.unpackbits(x.view(np.uint8).reshape(len(v), len(v), 8), axis=2)
    return bits.sum(axis=2).astype(np.int32)


def evaluate(ts: TruthSet, hashes: dict[str, int]) -> dict:
    """Pair P/R/F1 at the default and the hindsight-best distance, plus per-transform recall."""
    ts = ts.subset(set(hashes))
    dist = hamming_matrix([hashes[p] for p in ts.paths])
    sim = -dist.astype(np.float64)  # higher = more alike, so the shared helpers apply
    scores, labels = pair_scores(ts, sim)
    default = at_threshold(scores, labels, -DEFAULT_DISTANCE)
    best = best_threshold(scores, labels)
    return {
        "files": len(ts.paths),
        "positive_pairs": int(labels.sum()),
        "default": distance_row(default),
        "best": distance_row(best),
        "recall_per_transform_at_default": transform_recall(ts, sim, -DEFAULT_DISTANCE),
    }


def distance_row(r) -> dict:
    """A PRF row with the threshold written as a max Hamming distance."""
    row = r.row()
    row["max_distance"] = int(-row.pop("threshold"))
    return row


def check_against_find_duplicates(method, hashes: dict[str, int], expected_pairs: int) -> bool:
    """imagededup's own search at the default threshold finds the same number of pairs."""
    enc = {p: f"{h:016x}" for p, h in hashes.items()}
    found = method.find_duplicates(encoding_map=enc, max_distance_threshold=DEFAULT_DISTANCE)
    return sum(len(v) for v in found.values()) // 2 == expected_pairs


def render_md(report: dict) -> str:
    """Markdown table of the results."""
    lines = [
        "# imagededup hash baselines on the near-duplicate set",
        "",
        f"imagededup {report['imagededup_version']}.",
        "",
    ]
    header = ["set", "method", "default d<=10 P / R / F1", "best d", "best P / R / F1", "hash s"]
    rows = [
        [name, m, prf_cell(r["default"]), r["best"]["max_distance"], prf_cell(r["best"])]
        + [f"{r['seconds']:.1f}"]
        for name, per_set in report["sets"].items()
        for m, r in per_set.items()
    ]
    lines += table(header, rows).splitlines()
    lines += ["", "Recall per transform at the default distance (neardup set):", ""]
    per = report["sets"]["neardup"]
    names = sorted(next(iter(per.values()))["recall_per_transform_at_default"])
    columns = {m: r["recall_per_transform_at_default"] for m, r in per.items()}
    lines += recall_table(columns, names)
    return "\n".join(lines) + "\n"


def main() -> None:
    """Hash, evaluate, write results."""
    ap = harness.parser(__doc__, quick="smoke run: 100 files per set")
    ap.add_argument("--truth", type=Path, default=DEFAULT_TRUTH)
    args = ap.parse_args()
    harness.need(args.truth, "run bench/make_neardup_set.py")
    imagededup, methods = imagededup_methods()
    report: dict = {
        "imagededup_version": getattr(imagededup, "__version__", "0.3.3.post2"),
        "sets": {},
    }
    for ts in load_sets(args.truth):
        if args.quick:
            ts = ts.subset(set(ts.paths[:100]))
        report["sets"][ts.name] = {}
        for name, cls in methods.items():
            method = cls(verbose=False)
            hashes, seconds = encode(method, ts.paths)
            r = evaluate(ts, hashes)
            r["seconds"] = round(seconds, 2)
            r["find_duplicates_agrees"] = check_against_find_duplicates(
                method, hashes, r["default"]["tp"] + r["default"]["fp"]
            )
            report["sets"][ts.name][name] = r
            print(ts.name, name, r["default"], r["best"], flush=True)
    harness.write_results("dups_imagededup", render_md(report), report)


if __name__ == "__main__":
    main()
