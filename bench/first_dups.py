"""The first `dinosearch dups` on a messy library, against that library's own `index` time.

Builds the messy folder of tests/messy_library.py (originals, backup, phone export, downloads,
edits, graphics, junk), then times whole processes, side by side in one run: `index` (cold), the
first `dups` (default options: it calibrates), and a second `dups` (the stored calibration). The
duplicate quality of each report is measured against the planted truth: recall per kind of copy,
pair precision, files in two groups, groups mixing distinct graphics.

    python bench/first_dups.py [--model DIR] [--sizes 14x1,55x2] [--repeat 3] [--name first_dups]
    python bench/first_dups.py --quick     # smoke run: --sizes 8x1 --repeat 1
    python bench/first_dups.py --folder DIR --name first_dups_lookalike --repeat 2
        # an existing folder instead (timings and the calibration; no planted truth to score),
        # e.g. DIR = bench/work/lookalike/size-1000/set (bench/lookalike.py builds it)

Each size runs --repeat times, each on a fresh library; timings are medians, the ratio is the
median of each run's own ratio (the per-run ratios are listed too).
    python bench/first_dups.py --sweep 8,12,25,60 --seeds 0,1,2   # quality per calibration sample

--model defaults to $DINOSEARCH_REAL_WEIGHTS, else the real DINOv2-S/14 directory that
../shared/tools/real_dinov2_small.sh makes. Results: bench/results/<name>.{md,json}.
"""

import itertools
import json
import os
import shutil
import statistics
from pathlib import Path

import harness
from harness import WORK

messy = harness.tests_module("messy_library")
dinosearch = harness.run_cli  # the real CLI as a user runs it: (wall seconds, process)


def journey(model: str, photos: int, copies: int, given=None) -> dict:
    """index, first dups, second dups on a fresh library of a messy folder built now, or of the
    folder `given` (then nothing is scored: it has no planted truth)."""
    folder = given or WORK / "first_dups" / f"messy-{photos}x{copies}"
    library = WORK / "first_dups" / ("lib-folder" if given else f"lib-{photos}x{copies}")
    shutil.rmtree(library, ignore_errors=True)
    if not given:
        shutil.rmtree(folder, ignore_errors=True)
    manifest = None if given else messy.build(folder, photos, seed=0, copies=copies)
    index_s, proc = dinosearch(
        "index", str(folder), "--index", str(library), "--model", model, "--json"
    )
    images = json.loads(proc.stdout)["indexed"]
    first_s, proc = dinosearch("dups", "--index", str(library), "--json")
    first = json.loads(proc.stdout)
    second_s, proc = dinosearch("dups", "--index", str(library), "--json")
    cal = first["calibration"] or {}
    return {
        "files": len(manifest.files) if manifest else images,
        "images": images,
        "index_s": round(index_s, 1),
        "first_dups_s": round(first_s, 1),
        "second_dups_s": round(second_s, 1),
        "ratio": round(first_s / index_s, 2),
        "calibration": {
            "sample": cal.get("sample"),
            "copies": cal.get("positives"),
            "embedded": cal.get("embedded", cal.get("positives")),
            "seconds": round(cal.get("seconds", 0), 1),
            "threshold": round(cal["threshold"], 4) if cal.get("threshold") else None,
            "normalisation": cal.get("normalisation"),
        },
        "quality": messy.quality(first, manifest) if manifest else {},
    }


def median_journey(runs: list[dict]) -> dict:
    """The first run's facts with the timings as medians over the runs (each a fresh library),
    and the ratio as the median of each run's own first-dups / index ratio."""
    out = dict(runs[0])
    for key in ("index_s", "first_dups_s", "second_dups_s", "ratio"):
        out[key] = round(statistics.median(r[key] for r in runs), 2)
    out["runs"] = len(runs)
    out["ratios"] = [r["ratio"] for r in runs]
    return out


def sweep(model: str, photos: int, copies: int, samples: list[int], seeds: list[int]) -> list:
    """Quality and calibration time per --sample and --seed, on one indexed messy library."""
    folder = WORK / "first_dups" / f"messy-{photos}x{copies}"
    library = WORK / "first_dups" / f"lib-{photos}x{copies}"
    if not (folder / "manifest.json").exists():
        shutil.rmtree(library, ignore_errors=True)
        messy.build(folder, photos, seed=0, copies=copies)
    manifest = messy.Manifest.load(folder / "manifest.json")
    if not (library / "library.db").exists():
        dinosearch("index", str(folder), "--index", str(library), "--model", model)
    rows = []
    for sample, seed in itertools.product(samples, seeds):
        seconds, _ = dinosearch(
            "calibrate", "--index", str(library), "--sample", str(sample), "--seed", str(seed)
        )
        _, proc = dinosearch("dups", "--index", str(library), "--json")
        report = json.loads(proc.stdout)
        row = {"sample": sample, "seed": seed, "calibrate_s": round(seconds, 1)}
        rows.append({**row, "threshold": report["threshold"], **messy.quality(report, manifest)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write(name: str, data: dict) -> None:
    lines = [f"# {name}", ""]
    if data.get("journeys"):
        lines += [
            "| files | images | runs | index s | first dups s | ratio (per run) | second dups s "
            "| sample | copies (embedded) | calibration s | threshold | pair precision "
            "| recall per kind | in two groups | mixed graphics |",
            "|---" * 15 + "|",
        ]
        for j in data["journeys"]:
            c, q = j["calibration"], j["quality"]
            lines.append(
                f"| {j['files']} | {j['images']} | {j.get('runs', 1)} | {j['index_s']} "
                f"| {j['first_dups_s']} | {j['ratio']} ({j.get('ratios', [j['ratio']])}) "
                f"| {j['second_dups_s']} | {c['sample']} | {c['copies']} ({c.get('embedded')}) "
                f"| {c['seconds']} | {c['threshold']} | {q.get('pair_precision', '-')} "
                f"| {q.get('recall', '-')} | {q.get('in_two_groups', '-')} "
                f"| {q.get('mixed_graphics', '-')} |"
            )
    if data.get("sweep"):
        lines += ["", "| sample | seed | calibrate s | threshold | pair precision | recall |"]
        lines += ["|---|---|---|---|---|---|"]
        for r in data["sweep"]:
            lines.append(
                f"| {r['sample']} | {r['seed']} | {r['calibrate_s']} | {r['threshold']:.4f} "
                f"| {r['pair_precision']} | {r['recall']} |"
            )
    harness.write_results(name, lines, data)


def main() -> None:
    parser = harness.parser(__doc__, quick="smoke run: --sizes 8x1 --repeat 1")
    parser.add_argument(
        "--model",
        default=os.environ.get("DINOSEARCH_REAL_WEIGHTS") or harness.default_model(),
        help="model directory (default: $DINOSEARCH_REAL_WEIGHTS, else the real weights)",
    )
    parser.add_argument("--sizes", default="14x1,55x2", help="PHOTOSxCOPIES of the messy folder")
    parser.add_argument("--sweep", help="comma-separated --sample values to compare")
    parser.add_argument("--seeds", default="0", help="calibration seeds for --sweep")
    parser.add_argument("--name", default="first_dups")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (medians reported)")
    parser.add_argument("--folder", type=Path, help="an existing folder instead of --sizes")
    args = parser.parse_args()
    model = harness.model_dir(args.model)
    if args.quick:
        args.sizes, args.repeat = "8x1", 1
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    data: dict = {"model": model}
    if args.sweep:
        samples = [int(x) for x in args.sweep.split(",")]
        seeds = [int(x) for x in args.seeds.split(",")]
        data["sweep"] = sweep(model, *sizes[-1], samples, seeds)
    else:
        data["journeys"] = []
        for photos, copies in [(0, 0)] if args.folder else sizes:
            runs = [journey(model, photos, copies, args.folder) for _ in range(args.repeat)]
            data["journeys"].append(median_journey(runs))
            print(json.dumps(data["journeys"][-1]), flush=True)
    write(args.name, data)


if __name__ == "__main__":
    main()
