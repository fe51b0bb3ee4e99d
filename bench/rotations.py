"""`dups --rotations`: what it costs and what it finds, on a near-duplicate set with copies turned
by 90/180/270 degrees or mirrored in their pixels, with the real weights.

usage: python bench/rotations.py [--model DIR] [--originals 30] [--distractors 15] [--seed 0]
                                 [--quick] [--rescore]

The set (bench/work/rotations/photos, ground truth beside it) takes the originals of
bench/make_neardup_set.py: `--originals` of them get plain copies from its TRANSFORMS (TRANSFORMS
below) and turned ones (TURNED), the next `--distractors` none. It is indexed once; the library is
copied twice, and on each copy two whole `dinosearch dups --json` processes run one after the
other: without --rotations, then with (first run: calibration, and for --rotations the views;
second run: what is stored). Pairs and groups are scored as bench/dups_quality.py scores
`dups` (tiers exact+pixels+copy). Then `query` of each rot90 copy, as it is and with rotations:
the rank of its original. Writes bench/results/rotations.{md,json} (--quick: 4 originals and 2
distractors in bench/work/rotations-quick, results in bench/work/quick-results).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import time
from pathlib import Path

import harness
from dups_eval import load_sets
from dups_quality import product_eval, run_dups
from harness import WORK, prf_cell, recall_table, table
from make_neardup_set import load_rgb, make_copy, originals
from PIL import Image

from search.collection import Collection

T = Image.Transpose
PLAIN = ("jpeg_q60", "crop_10", "grey")  # copies as they are, from make_neardup_set.TRANSFORMS
# turned copies: name -> (PIL transpose, downscale, format, save options)
TURNED = {
    "rot90_webp": (T.ROTATE_90, 1.0, "WEBP", {"quality": 85}),
    "rot180_jpeg": (T.ROTATE_180, 1.0, "JPEG", {"quality": 90}),
    "rot270_png": (T.ROTATE_270, 1.0, "PNG", {}),
    "mirror_jpeg": (T.FLIP_LEFT_RIGHT, 1.0, "JPEG", {"quality": 90}),
    "rot90_half_jpeg": (T.ROTATE_90, 0.5, "JPEG", {"quality": 75}),  # turned, halved, recompressed
}
TIERS = "exact+pixels+copy"
# Set5's butterfly is cut from Set14's monarch (README, Duplicate quality): one picture, which the
# pixel correlation of make_neardup_set.natural_duplicates does not catch (a crop)
NATURAL = {"set5_img_004_SRF_2_HR": "set14_img_006_SRF_2_HR"}
QUERY_K = 400  # results looked at for the original's rank (the whole set)


def turned_copy(img: Image.Image, name: str) -> bytes:
    turn, scale, fmt, options = TURNED[name]
    out = img.transpose(turn)
    if scale != 1.0:
        out = out.resize((round(out.width * scale), round(out.height * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, fmt, **options)
    return buf.getvalue()


def build_set(out: Path, n_originals: int, n_distractors: int, seed: int) -> Path:
    """Write the originals, their copies and the distractors; return groundtruth.json."""
    shutil.rmtree(out, ignore_errors=True)
    photos = out / "photos"
    photos.mkdir(parents=True)
    rng = random.Random(seed)
    sources = originals()
    rng.shuffle(sources)
    groups = []
    for k, src in enumerate(sources[: n_originals + n_distractors]):
        img, stem = load_rgb(src), src.stem
        img.save(photos / f"{stem}__original.png")
        files = [{"path": str(photos / f"{stem}__original.png"), "transform": "original"}]
        if k < n_originals:
            for name in PLAIN:
                data, _ = make_copy(img, name, rng)
                (photos / f"{stem}__{name}.jpg").write_bytes(data)
                files.append({"path": str(photos / f"{stem}__{name}.jpg"), "transform": name})
            for name in TURNED:
                ext = TURNED[name][2].lower().replace("jpeg", "jpg")
                (photos / f"{stem}__{name}.{ext}").write_bytes(turned_copy(img, name))
                files.append({"path": str(photos / f"{stem}__{name}.{ext}"), "transform": name})
        for f in files:
            f["source"] = str(src)
        groups.append({"id": stem, "files": files})
    truth = out / "groundtruth.json"
    sets = [{"name": "rotations", "root": str(photos), "groups": groups}]
    truth.write_text(json.dumps({"seed": seed, "sets": sets}, indent=1))
    return truth


def query_ranks(library: Path, truth_set) -> dict:
    """Rank of the original for each rot90 copy used as a query, as it is and with rotations
    (the other copies of the same photo left out of the results)."""
    coll = Collection(library)
    files = list(zip(truth_set.paths, truth_set.sources, truth_set.transforms, strict=True))
    original = {s: p for p, s, t in files if t == "original"}
    copies = {p for p, _, t in files if t != "original"}
    out = {"plain": [], "rotations": []}
    started = {"plain": 0.0, "rotations": 0.0}
    for path, src, tr in files:
        if tr != "rot90_webp":
            continue
        for how in out:
            t0 = time.perf_counter()
            result = coll.query([path], k=QUERY_K, rotations=how == "rotations")
            started[how] += time.perf_counter() - t0
            hits = [h.path for h in result.results if h.path not in copies]
            out[how].append(hits.index(original[src]) + 1 if original[src] in hits else None)
    coll.close()
    return {
        how: {
            "ranks": ranks,
            "top1": round(sum(r == 1 for r in ranks) / len(ranks), 4),
            "median": sorted(r or QUERY_K for r in ranks)[len(ranks) // 2],
            "worst": max(r or QUERY_K for r in ranks),
            "seconds_per_query": round(started[how] / len(ranks), 3),
        }
        for how, ranks in out.items()
    }


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 4 originals, 2 distractors", model=True)
    ap.add_argument("--originals", type=int, default=30)
    ap.add_argument("--distractors", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="keep the set, the libraries and the timings of the last run; score again",
    )
    args = ap.parse_args()
    work = WORK / ("rotations-quick" if args.quick else "rotations")
    if args.rescore:
        last = harness.read_results("rotations")
        if last is None:
            raise SystemExit(f"error: no rotations.json in {harness.results_dir()} to rescore")
        return rescore(work, last)
    model = harness.model_dir(args.model)
    if args.quick:
        args.originals, args.distractors = 4, 2
    truth_set = truth(build_set(work, args.originals, args.distractors, args.seed))
    base = work / "lib"
    cmd = ["index", work / "photos", "--index", base, "--json", "--model", model]
    index_s, done = harness.run_cli(*cmd)
    index_doc, index_s = json.loads(done.stdout), round(index_s, 2)
    print(f"indexed {index_doc['indexed']} in {index_s}s", flush=True)
    runs = {}
    for label, extra in (("dups", []), ("dups --rotations", ["--rotations"])):
        lib = work / ("lib-" + ("rot" if extra else "plain"))
        shutil.rmtree(lib, ignore_errors=True)
        shutil.copytree(base, lib)
        first, first_s = run_dups(lib, extra)
        second, second_s = run_dups(lib, extra)
        runs[label] = {
            "first_s": round(first_s, 2),
            "second_s": round(second_s, 2),
            "threshold": second["threshold"],
            "rotations_first": first["stats"].get("rotations"),
            "rotations_second": second["stats"].get("rotations"),
            "same_groups": first["groups"] == second["groups"],
            **quality(truth_set, second),
        }
        print(label, runs[label]["first_s"], runs[label]["second_s"], flush=True)
    ranks = query_ranks(work / "lib-rot", truth_set)
    report = {
        "model": model,
        "files": len(truth_set.paths),
        "originals": args.originals,
        "distractors": args.distractors,
        "index_s": index_s,
        "runs": runs,
        "query": ranks,
    }
    write(report)


def truth(path: Path):
    """The set's ground truth, the NATURAL duplicate merged into one group."""
    ts = load_sets(path)[0]
    ts.groups = [NATURAL.get(g, g) for g in ts.groups]
    return ts


def quality(truth_set, doc: dict) -> dict:
    """Pair and group scores of one `dups --json` document, and its turned members."""
    scores = product_eval(truth_set, doc, set(truth_set.paths))[TIERS]
    turned = sum(bool(m.get("transform")) for g in doc["groups"] for m in g["members"])
    return {
        "pairs": scores["pairs"],
        "groups": scores["groups"],
        "recall_per_transform": scores["recall_per_transform"],
        "turned_members": turned,
    }


def rescore(work: Path, report: dict) -> None:
    """Score the stored libraries again (second runs: what is stored) and the queries."""
    truth_set = truth(work / "groundtruth.json")
    for label, extra in (("dups", []), ("dups --rotations", ["--rotations"])):
        doc, _ = run_dups(work / ("lib-" + ("rot" if extra else "plain")), extra)
        report["runs"][label].update(quality(truth_set, doc))
    report["query"] = query_ranks(work / "lib-rot", truth_set)
    report["rescored"] = time.strftime("%Y-%m-%d %H:%M")
    write(report)


def write(report: dict) -> None:
    """A rescore keeps the full run's machine record and command (its times are from then)."""
    if report.get("rescored"):
        command = report.get("command", "python bench/rotations.py")
        harness.write_results(
            "rotations", render(report), report, machine_record=report["machine"], command=command
        )
    else:
        harness.write_results("rotations", render(report), report)


def render(r: dict) -> str:
    plain, rot = r["runs"]["dups"], r["runs"]["dups --rotations"]
    lines = [
        "# `dups --rotations`: cost and quality",
        "",
        "Real DINOv2-S/14 weights, int8 ONNX default.",
        "",
        f"Set: {r['files']} files: {r['originals']} originals with copies "
        f"({', '.join(PLAIN)} from bench/make_neardup_set.py, and turned in their pixels: "
        f"{', '.join(TURNED)}), {r['distractors']} distractors without. "
        f"`index`: {r['index_s']} s. Set5's butterfly and Set14's monarch count as one "
        "picture (the first is cut from the second).",
        "",
        "## Cost (whole processes, each on its own copy of the freshly indexed library)",
        "",
    ]
    if r.get("rescored"):
        lines += [f"Quality and queries scored again on {r['rescored']} "
                  "(`python bench/rotations.py --rescore`: same set and libraries; the times "
                  "below are from the full run).", ""]  # fmt: skip
    header = ["command", "first run (calibrates)", "second run", "views embedded / cached"]
    rows = []
    for label, run in r["runs"].items():
        a, b = run["rotations_first"], run["rotations_second"]
        views = f"{a['embedded']} in {a['seconds']} s / {b['cached']}" if a else "-"
        rows.append([f"`{label}`", f"{run['first_s']} s", f"{run['second_s']} s", views])
    lines += table(header, rows).splitlines()
    lines += [
        "",
        f"First run: {rot['first_s'] / plain['first_s']:.2f}x the plain `dups`; second run: "
        f"{rot['second_s'] / plain['second_s']:.2f}x. Views of {r['files']} images cost "
        f"{rot['rotations_first']['seconds'] / r['index_s']:.2f}x the `index` of the folder.",
        "",
        f"## Quality (tiers {TIERS}, the second run; threshold {plain['threshold']})",
        "",
    ]
    header = ["command", "pair P / R / F1", "groups", "group P", "whole-group R", "turned members"]
    rows = [
        [f"`{label}`", prf_cell(run["pairs"], bold_f1=True), run["groups"]["groups"],
         f"{run['groups']['precision']:.3f}", f"{run['groups']['recall_whole']:.3f}",
         run["turned_members"]]
        for label, run in r["runs"].items()
    ]  # fmt: skip
    lines += table(header, rows).splitlines()
    transforms = [*PLAIN, *TURNED]
    cols = {f"`{label}`": run["recall_per_transform"] for label, run in r["runs"].items()}
    lines += ["", "Recall per transform (copy grouped with its original):", ""]
    lines += recall_table(cols, transforms)
    q = r["query"]
    lines += [
        "",
        "## `query` with a rot90 WebP copy (rank of its original; the photo's other copies, "
        "the query among them, left out)",
        "",
        *table(
            ["query", "rank 1", "median rank", "worst rank", "s per query"],
            [
                [f"`{how}`", f"{v['top1']:.2f}", v["median"], v["worst"], v["seconds_per_query"]]
                for how, v in (("query", q["plain"]), ("query --rotations", q["rotations"]))
            ],
        ).splitlines(),  # fmt: skip
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
