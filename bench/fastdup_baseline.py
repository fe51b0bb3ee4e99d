"""fastdup (Visual Layer) on the near-duplicate set: whole-process img/s and pair P/R/F1.

usage:
  python3 -m venv bench/work/venv-fastdup
  bench/work/venv-fastdup/bin/pip install fastdup          # 2.54 here; its own numpy/opencv
  bench/work/venv-fastdup/bin/python bench/fastdup_baseline.py [--truth GT] [--runs 2] [--quick]

Runs in its own venv (fastdup pins numpy 1.26 and ships its own C++ engine and ONNX model).
Telemetry is switched off (SENTRY_OPT_OUT=1). fastdup is given the same files as dinosearch (the
list of absolute paths of both sets) and its default CPU pipeline: `fastdup.run(input_dir=LIST,
work_dir=W, num_threads=2)`, i.e. its bundled 576-d ONNX feature model (no download), HNSW
neighbours, stats and connected components. Timing: the whole process (interpreter start,
import, feature extraction, neighbour search, reports), median of --runs fresh work dirs.
Quality: cosine of fastdup's own feature vectors (atrain_features.dat) for every pair, at the
hindsight-best threshold and at fastdup's default similarity threshold 0.9, and for pairs in its
similarity.csv (the neighbours it reports, k=2 by default) - the same ground truth and helpers as
the other duplicate benches. Writes bench/results/dups_fastdup.{json,md} (--quick: one run on
100 files per set, into bench/work/quick-results).

--vs-dinosearch: the same number of dinosearch runs, interleaved with fastdup's (fastdup,
dinosearch, fastdup, ...), each files-to-first-duplicate-report as a user runs it with default
options: `dinosearch index ROOTS --index FRESH --model DIR` then `dinosearch dups --index FRESH
--json` (the first dups: it calibrates), whole processes, on the folders that hold the same files
(.venv/bin/dinosearch of this checkout). The ratio is taken per pair, its median reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["SENTRY_OPT_OUT"] = "1"

import harness  # noqa: E402
import numpy as np  # noqa: E402
from dups_eval import (  # noqa: E402
    DEFAULT_TRUTH,
    at_threshold,
    best_threshold,
    load_sets,
    pair_scores,
    transform_recall,
)
from harness import prf_cell, recall_table, table  # noqa: E402

THREADS = 2
DEFAULT_THRESHOLD = 0.9  # fastdup.run(threshold=0.9): its default similarity cut
RUN = (
    "import os, sys; os.environ['SENTRY_OPT_OUT'] = '1'; import fastdup; "
    "sys.exit(fastdup.run(input_dir=sys.argv[1], work_dir=sys.argv[2], num_threads={threads}))"
)


def run_fastdup(file_list: Path, work: Path) -> float:
    """One whole fastdup process on the file list; wall seconds."""
    cmd = [sys.executable, "-c", RUN.format(threads=THREADS), str(file_list), str(work)]
    env = {**os.environ, "SENTRY_OPT_OUT": "1", "OMP_NUM_THREADS": str(THREADS)}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"fastdup failed with exit status {done.returncode}")
    return seconds


def run_dinosearch(roots: list[str], library: Path, model: str) -> tuple[float, float]:
    """dinosearch from files to the first duplicate report, default options, as two whole
    processes on a fresh library: (index seconds, first dups seconds)."""
    exe = str(harness.ROOT / ".venv" / "bin" / "dinosearch")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for cmd in (
        [exe, "index", *roots, "--index", str(library), "--model", model, "--json"],
        [exe, "dups", "--index", str(library), "--json"],
    ):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-3000:])
            raise SystemExit(f"dinosearch failed with exit status {done.returncode}")
    return times[0], times[1]


def paired(report: dict) -> list[str]:
    """The markdown of a --vs-dinosearch run."""
    v = report["vs_dinosearch"]
    rows = [
        [str(i + 1), f"{f:.1f}", f"{ix:.1f}", f"{d:.1f}", f"{ix + d:.1f}", f"{(ix + d) / f:.2f}"]
        for i, (f, ix, d) in enumerate(
            zip(report["seconds"], v["index_s"], v["dups_s"], strict=True)
        )
    ]
    header = [
        "pair",
        "fastdup s",
        "dinosearch index s",
        "first dups s",
        "dinosearch total s",
        "dinosearch / fastdup",
    ]
    return [
        "",
        "## Side by side: files to the first duplicate report (same files, same cores, paired)",
        "",
        f"dinosearch: `dinosearch index {' '.join(v['roots'])} --index FRESH --model DIR`, then "
        "`dinosearch dups --index FRESH --json` (default options: int8, its calibration); "
        f"fastdup as above; runs interleaved. Median per-pair ratio: **{v['ratio']:.2f}x** "
        f"(dinosearch {v['img_s']:.1f} img/s vs fastdup {report['img_s']:.1f}).",
        "",
        *table(header, rows).splitlines(),
    ]


def recall_at_1(ts, m: np.ndarray) -> float:
    """Each copy vs the originals: is its own original the top hit (as resolution_study.py)."""
    originals = [i for i, t in enumerate(ts.transforms) if t == "original"]
    copies = [i for i, t in enumerate(ts.transforms) if t != "original"]
    top = np.array(originals)[np.argmax(m[np.ix_(copies, originals)], axis=1)]
    return round(
        float(np.mean([ts.sources[t] == ts.sources[q] for q, t in zip(copies, top, strict=True)])),
        4,
    )


def evaluate(ts, vectors: dict[str, np.ndarray], reported: set[tuple[str, str]]) -> dict:
    ts = ts.subset(set(vectors))
    x = np.stack([vectors[p] for p in ts.paths]).astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    m = x @ x.T
    scores, labels = pair_scores(ts, m)
    rep = np.zeros_like(m)
    at = {p: i for i, p in enumerate(ts.paths)}
    for a, b in reported:
        if a in at and b in at:
            rep[at[a], at[b]] = rep[at[b], at[a]] = 1.0
    rep_scores, _ = pair_scores(ts, rep)
    out = {
        "files": len(ts.paths),
        "positive_pairs": int(labels.sum()),
        "best": best_threshold(scores, labels).row(),
        "default": at_threshold(scores, labels, DEFAULT_THRESHOLD).row(),
        "similarity_csv": at_threshold(rep_scores, labels, 0.5).row(),
        "recall_per_transform_at_best": None,
    }
    out["recall_per_transform_at_best"] = transform_recall(ts, m, out["best"]["threshold"])
    if any(t == "original" for t in ts.transforms) and ts.name == "neardup":
        out["recall_at_1"] = recall_at_1(ts, m)
    return out


def render(report: dict) -> str:
    lines = [
        "# fastdup on the near-duplicate set",
        "",
        f"fastdup {report['fastdup_version']} (its bundled {report['dim']}-d ONNX model), CPU, "
        f"{THREADS} threads.",
        "",
        f"Whole process on {report['files']} files (both sets): "
        f"{', '.join(f'{s:.1f}' for s in report['seconds'])} s -> **{report['img_s']:.1f} img/s** "
        f"(median run). {report['failed_files']} file(s) not embedded.",
        "",
    ]
    header = ["set", "best t", "best P / R / F1", "t=0.9 P / R / F1", "similarity.csv P / R / F1"]
    rows = [
        [
            name,
            f"{r['best']['threshold']:.3f}",
            prf_cell(r["best"], bold_f1=True),
            prf_cell(r["default"]),
            prf_cell(r["similarity_csv"]),
        ]
        for name, r in report["sets"].items()
    ]
    lines += table(header, rows).splitlines()
    nd = report["sets"]["neardup"]
    lines += [
        "",
        f"Query recall@1 (each copy vs the originals): {nd.get('recall_at_1')}.",
        "",
        "Recall per transform at the best threshold (neardup set):",
        "",
    ]
    per = nd["recall_per_transform_at_best"]
    lines += recall_table({"fastdup best t": per}, sorted(per))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: one run on 100 files per set")
    ap.add_argument("--truth", type=Path, default=DEFAULT_TRUTH)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument(
        "--vs-dinosearch", action="store_true", help="interleave dinosearch index + first dups"
    )
    ap.add_argument("--model", default=harness.default_model(), help="dinosearch's model dir")
    args = ap.parse_args()
    harness.need(args.truth, "run bench/make_neardup_set.py")
    try:
        import fastdup
    except ImportError:
        raise SystemExit(
            "error: fastdup is not installed here: run this file with "
            "bench/work/venv-fastdup/bin/python (see bench/README.md)"
        ) from None

    sets = load_sets(args.truth)
    if args.quick and args.vs_dinosearch:
        raise SystemExit("error: --vs-dinosearch indexes the whole sets' folders: not with --quick")
    if args.quick:
        args.runs = 1
        sets = [ts.subset(set(ts.paths[:100])) for ts in sets]
    files = [p for ts in sets for p in ts.paths]
    roots = [os.path.commonpath(ts.paths) for ts in sets]  # the folders dinosearch indexes
    seconds, index_s, dups_s = [], [], []
    with tempfile.TemporaryDirectory(prefix="fastdup-") as tmp:
        file_list = Path(tmp) / "files.txt"
        file_list.write_text("\n".join(files) + "\n")
        for r in range(args.runs):
            work = Path(tmp) / f"run{r}"
            seconds.append(run_fastdup(file_list, work))
            print(f"run {r}: {seconds[-1]:.1f} s", flush=True)
            if args.vs_dinosearch:
                ix, d = run_dinosearch(roots, Path(tmp) / f"lib{r}", harness.model_dir(args.model))
                index_s.append(ix)
                dups_s.append(d)
                print(f"run {r}: dinosearch index {ix:.1f} s + first dups {d:.1f} s", flush=True)
        names, feats = fastdup.load_binary_feature(str(work / "atrain_features.dat"))
        vectors = {str(Path(n).resolve()): f for n, f in zip(names, feats, strict=True)}
        reported = set()
        sim = work / "similarity.csv"
        if sim.exists():
            import pandas as pd

            df = pd.read_csv(sim)
            reported = {
                (str(Path(a).resolve()), str(Path(b).resolve()))
                for a, b in zip(df["from"], df["to"], strict=True)
            }
    report = {
        "fastdup_version": getattr(fastdup, "__version__", "2.54"),
        "files": len(files),
        "failed_files": len(files) - len(vectors),
        "dim": int(feats.shape[1]),
        "seconds": [round(s, 2) for s in seconds],
        "img_s": round(len(files) / statistics.median(seconds), 2),
        "sets": {ts.name: evaluate(ts, vectors, reported) for ts in sets},
    }
    markdown = render(report)
    if args.vs_dinosearch:
        totals = [ix + d for ix, d in zip(index_s, dups_s, strict=True)]
        report["vs_dinosearch"] = {
            "roots": roots,
            "index_s": [round(x, 2) for x in index_s],
            "dups_s": [round(x, 2) for x in dups_s],
            "ratio": round(
                statistics.median(t / f for t, f in zip(totals, seconds, strict=True)), 3
            ),
            "img_s": round(len(files) / statistics.median(totals), 2),
        }
        markdown += "\n".join(paired(report)) + "\n"
    for name, r in report["sets"].items():
        print(name, r["best"], r["default"], r.get("recall_at_1"), flush=True)
    harness.write_results("dups_fastdup", markdown, report)


if __name__ == "__main__":
    main()
