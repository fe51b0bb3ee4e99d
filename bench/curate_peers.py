"""Outliers side by side with the peers on the planted set of bench/curate_outliers.py (83 real
photos + 24 odd images: 6 each of UI screenshots, text documents, charts, flat graphics).

    python bench/curate_peers.py [--model DIR] [--quick]  # after curate_outliers.py (it indexes)

Needs bench/work/venv-fastdup (see bench/fastdup_baseline.py); --quick skips cleanvision.

- dinosearch `outliers` (real DINOv2-S/14 weights; the library bench/curate_outliers.py made).
- fastdup 2.54 (bench/work/venv-fastdup, see bench/fastdup_baseline.py): `fastdup.run` with its
  defaults and bundled ONNX model, offline; its `outliers.csv` (the images whose nearest
  neighbour is farthest, 0.05 percentile by default), and the whole ranking by its own outlier
  score (1 - cosine to the nearest neighbour) from its feature file.
- cleanvision: installed into /tmp/peers-venv if the package registry has it; it has no outlier
  detector (its issue types are dark, light, blurry, low information, odd aspect ratio, odd
  size, grayscale, exact and near duplicates), so it is reported on what it flags.

Results: bench/results/curate_peers.md (+ .json).
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import curate_outliers as co
import harness
import numpy as np

FASTDUP_PY = harness.WORK / "venv-fastdup" / "bin" / "python"
CLEANVISION_PY = Path("/tmp/peers-venv/bin/python")
RUN_FASTDUP = (
    "import os, sys; os.environ['SENTRY_OPT_OUT'] = '1'; import fastdup; "
    "sys.exit(fastdup.run(input_dir=sys.argv[1], work_dir=sys.argv[2], num_threads=2))"
)
RUN_CLEANVISION = (
    "import sys, json; from cleanvision import Imagelab; lab = Imagelab(data_path=sys.argv[1]); "
    "lab.find_issues(); df = lab.issues; cols = [c for c in df.columns if c.startswith('is_')]; "
    "print(json.dumps({p: [c[3:-6] for c in cols if row[c]] for p, row in df.iterrows()}))"
)


def fastdup_scores(folder: Path) -> tuple[dict, list[str]]:
    """(path -> 1 - nearest-neighbour cosine of fastdup's features, its outliers.csv list)."""
    work = Path(tempfile.mkdtemp(prefix="fastdup-"))
    env = {**os.environ, "SENTRY_OPT_OUT": "1", "OMP_NUM_THREADS": "2"}
    cmd = [str(FASTDUP_PY), "-c", RUN_FASTDUP, str(folder), str(work)]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    names = [
        line.split(",", 1)[1]
        for line in (work / "atrain_features.dat.csv").read_text().splitlines()[1:]
    ]
    feats = np.fromfile(work / "atrain_features.dat", np.float32)
    feats = feats[-len(names) * 576 :].reshape(len(names), 576)  # after its small header
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    sims = feats @ feats.T
    np.fill_diagonal(sims, -np.inf)
    names = [os.path.realpath(p) for p in names]
    scores = dict(zip(names, (1 - sims.max(1)).tolist(), strict=True))
    listed = [line.split(",")[0] for line in (work / "outliers.csv").read_text().splitlines()[1:]]
    return scores, list(dict.fromkeys(listed))


def cleanvision_flags(folder: Path) -> dict | str:
    if not CLEANVISION_PY.exists():
        return "not installed"
    done = subprocess.run(
        [str(CLEANVISION_PY), "-c", RUN_CLEANVISION, str(folder)], capture_output=True, text=True
    )
    if done.returncode:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: without cleanvision", model=True)
    args = ap.parse_args()
    model = harness.model_dir(args.model)
    harness.need(FASTDUP_PY, "make it as bench/fastdup_baseline.py's docstring says")
    ids, vectors, paths, truth = co.library(model)
    folder = (co.WORK / "planted").resolve()
    odd = set(truth["odd"])
    is_odd = np.array([p in odd for p in paths])
    ours = co.metrics(co.ours(vectors), is_odd)
    rows = [["dinosearch outliers", ours["top10"], ours["precision_at_group"],
             ours["average_precision"], ours["worst_odd_rank"]]]  # fmt: skip
    fd_scores, fd_listed = fastdup_scores(folder)
    fd = co.metrics(np.array([fd_scores[os.path.realpath(p)] for p in paths]), is_odd)
    name = "fastdup (1 - nearest-neighbour cosine, its features)"
    rows.append([name, fd["top10"], fd["precision_at_group"], fd["average_precision"],
                 fd["worst_odd_rank"]])  # fmt: skip
    fd_hits = sum(os.path.realpath(p) in {os.path.realpath(o) for o in odd} for p in fd_listed)
    cv = "not run (--quick)" if args.quick else cleanvision_flags(folder)
    cv_line = cv if isinstance(cv, str) else _cleanvision_summary(cv, odd)
    if not isinstance(cv, str):
        skipped = sorted({Path(p).suffix for p in paths} - {Path(p).suffix for p in cv})
        cv_line += f"; it read {len(cv)} of {len(paths)} files (skipped: {', '.join(skipped)})"
    md = (
        "# Outliers: dinosearch and its peers on the planted set\n\n"
        f"{len(truth['photos'])} real photos + {len(odd)} odd images (6 UI screenshots, 6 text "
        "documents, 6 charts, 6 flat-colour graphics; bench/curate_planted.py).\n\n"
        + harness.table(
            [
                "tool",
                "odd in top 10",
                "precision@24",
                "average precision",
                "rank of the last odd image",
            ],
            rows,
        )  # fmt: skip
        + f"\nfastdup's own `outliers.csv` (defaults) lists {len(fd_listed)} images, "
        f"{fd_hits} of them odd.\n\ncleanvision 0.3.7 (pip, /tmp/peers-venv, offline), "
        f"`Imagelab.find_issues()` defaults: {cv_line}. Its flags are pixel statistics "
        "(the counterpart of `dinosearch flags`, not of `outliers`): these PIL-made graphics are "
        "flat, bright and low in entropy, which such statistics catch whatever the embedding "
        "says.\n"
    )
    out = {"ours": ours, "fastdup": fd, "fastdup_listed": fd_listed, "cleanvision": cv}
    harness.write_results("curate_peers", md, out)


def _cleanvision_summary(flags: dict, odd: set) -> str:
    real = {os.path.realpath(p): v for p, v in flags.items()}
    flagged = {p for p, v in real.items() if v}
    odd_real = {os.path.realpath(p) for p in odd}
    kinds: dict[str, int] = {}
    for v in real.values():
        for k in v:
            kinds[k] = kinds.get(k, 0) + 1
    counts = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    return (
        f"flags {len(flagged)} of {len(real)} images ({counts}); "
        f"{len(flagged & odd_real)} of the {len(odd)} odd images and "
        f"{len(flagged - odd_real)} photos among them (it has no outlier detector)"
    )


if __name__ == "__main__":
    main()
