"""`--runtime torch` vs ONNX Runtime fp32 vs the default (auto: ONNX Runtime int8), side by side.

1. Whole-process `dinosearch index` img/s on the 12-MP JPEG set (bench/make_perf_images.py), each
   run into a fresh library, the ONNX cache warm; configs interleaved (order rotated per repeat),
   medians and each config's ratio to torch (median of the per-repeat ratios); the model card's
   naive loop (bench/naive_loop.py) in the same rounds. The one-time export (torch -> ONNX fp32,
   int8 quantization, accuracy gate) is measured once, first, from an empty cache.
2. Forward-only img/s (compute_bound.forward_rate: Embedder.embed on ready pixels), torch fp32,
   ORT fp32, ORT int8, interleaved rounds, medians.
3. Accuracy: cosine of ORT fp32 / int8 vectors to torch fp32 on every real photo
   (../shared/testdata/photos and photos-more, read in place); and `dinosearch dups` (threshold
   auto, default tiers) pair F1 on the near-duplicate set (bench/make_neardup_set.py) indexed with
   --runtime torch vs the default, evaluated as bench/dups_quality.py does.
4. Start-up: cold processes (new library, ONNX file cached, OS file cache warm) of `index` on
   20 and on 1 new 12-MP JPEG and a `query` of an image not in the library, wall time and the
   time to the first forward pass (bench/cli_marks.py), torch vs default, interleaved.

    python bench/runtime_speed.py [--quick] [--model DIR] [--count 240] [--repeat 3]

Every process gets DINOSEARCH_ONNX_CACHE=bench/work/rt-onnx-cache (emptied at the start, so the
export is measured) and HF_HUB_OFFLINE=1. Results: bench/results/runtime_speed.{md,json}.
"""

import json
import os
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import harness

CACHE = harness.WORK / "rt-onnx-cache"
os.environ["DINOSEARCH_ONNX_CACHE"] = str(CACHE)  # before indexer.onnx_runtime is used
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
from index_speed import subset  # noqa: E402

DINOSEARCH = str(Path(harness.PYTHON).with_name("dinosearch"))
MARKS = str(Path(__file__).with_name("cli_marks.py"))
PHOTO_DIRS = [harness.PHOTOS, harness.PHOTOS.with_name("photos-more")]
MIXED = harness.PHOTOS.with_name("imagededup") / "mixed_images"
NEARDUP = harness.WORK / "neardup"
QUERY_IMAGE = PHOTO_DIRS[1] / "1.tif"  # not in any library this bench builds
CONFIGS = {  # name -> extra CLI options
    "torch": ["--runtime", "torch"],
    "onnx fp32": ["--runtime", "onnx", "--dtype", "fp32"],
    "default": [],
}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def env() -> dict:
    return harness.cli_env()


def run(cmd: list[str], marks: bool = False) -> dict:
    """Run a CLI command; wall seconds, parsed JSON stdout (when any) and marks (relative to
    the spawn) when `marks`."""
    path = None
    if marks:
        fd, path = tempfile.mkstemp(prefix="marks-", suffix=".json", dir=harness.WORK)
        os.close(fd)
        cmd = [harness.PYTHON, MARKS, path, *cmd[1:]]
    spawned = time.time()
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env())
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = {"seconds": seconds, "stderr": proc.stderr.strip()[-500:]}
    try:
        out["json"] = json.loads(proc.stdout)
    except ValueError:
        pass
    if path:
        m = json.loads(Path(path).read_text())
        os.unlink(path)
        rel = {k: v - spawned for k, v in m.items() if isinstance(v, float) and v > 1e9}
        out["marks"] = {**{k: v for k, v in m.items() if k not in rel}, **rel}
    return out


def index(folders: list[Path], lib: Path, model: str, extra: list[str], marks=False) -> dict:
    cmd = [DINOSEARCH, "index", *map(str, folders), "--index", str(lib), "--model", model]
    return run(cmd + ["--json", *extra], marks)


def info(lib: Path) -> dict:
    return run([DINOSEARCH, "info", "--index", str(lib), "--json"])["json"]


def fresh_lib(tag: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"rt-{tag.replace(' ', '-')}-", dir=harness.WORK))


def med(xs) -> float:
    return float(statistics.median(xs))


def real_photos() -> list[Path]:
    return sorted(p for d in PHOTO_DIRS for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# --- 0. the one-time export ---------------------------------------------------------------------


def export_once(model: str) -> dict:
    """Index the 24 Kodak photos from an empty ONNX cache (export + quantize + gate on 16 of
    them), then the same with the cache warm: the difference is the one-time cost."""
    shutil.rmtree(CACHE, ignore_errors=True)
    out = {}
    lib = fresh_lib("export")
    try:
        cold = index([harness.PHOTOS], lib, model, [], marks=True)
        out["cold"] = {"seconds": cold["seconds"], "marks": cold["marks"]}
        out["runtime"] = info(lib)["runtime"]
    finally:
        shutil.rmtree(lib, ignore_errors=True)
    warm = []
    for _ in range(2):
        lib = fresh_lib("export-warm")
        try:
            warm.append(index([harness.PHOTOS], lib, model, [])["seconds"])
        finally:
            shutil.rmtree(lib, ignore_errors=True)
    out["warm_seconds"] = warm
    out["one_time_s"] = cold["seconds"] - med(warm)
    out["files"] = sorted(p.name for p in CACHE.iterdir())
    out["bytes"] = {p.name: p.stat().st_size for p in CACHE.iterdir() if p.suffix == ".onnx"}
    print("export:", json.dumps(out), flush=True)
    return out


# --- 1. whole-process index rate ----------------------------------------------------------------


def index_speed(model: str, count: int, repeat: int, naive_count: int) -> dict:
    folder = subset("jpeg12mp", count)
    files = sorted(folder.iterdir())
    n = len(files)
    runs: dict[str, list[dict]] = {name: [] for name in [*CONFIGS, "naive"]}
    names = list(CONFIGS)
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            lib = fresh_lib(name)
            try:
                res = index([folder], lib, model, CONFIGS[name])
                assert res["json"]["embedded"] == n, res["json"]
                row = {"seconds": res["seconds"], "rate": n / res["seconds"], "round": r}
                row["load"] = os.getloadavg()[0]  # 1-min load average after the run
                if r == 0:
                    row["runtime"] = info(lib)["runtime"]
                runs[name].append(row)
                print(f"index {name} r{r}: {n / res['seconds']:.2f} img/s", flush=True)
            finally:
                shutil.rmtree(lib, ignore_errors=True)
        if naive_count:
            script = Path(__file__).with_name("naive_loop.py")
            cmd = [harness.PYTHON, str(script), model, *map(str, files[:naive_count])]
            out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            out["rate"] = out["images"] / out["seconds"]
            runs["naive"].append(out)
            print(f"naive r{r}: {out['rate']:.2f} img/s", flush=True)
    summary = {}
    for name in CONFIGS:
        rates = [x["rate"] for x in runs[name]]
        ratio = [x["rate"] / t["rate"] for x, t in zip(runs[name], runs["torch"], strict=True)]
        summary[name] = {"rate": med(rates), "rates": rates, "ratio_to_torch": med(ratio)}
        summary[name]["load"] = med([x.get("load", float("nan")) for x in runs[name]])
        if runs["naive"]:
            naive = [x["rate"] for x in runs["naive"]]
            summary[name]["ratio_to_naive"] = med(
                [x["rate"] / v for x, v in zip(runs[name], naive, strict=True)]
            )
    if runs["naive"]:
        summary["naive"] = {"rate": med([x["rate"] for x in runs["naive"]])}
    return {"images": n, "naive_images": naive_count, "runs": runs, "summary": summary}


# --- 2. forward only ---------------------------------------------------------------------------


def embedders(model: str) -> dict:
    import torch

    from indexer import model as M
    from indexer import onnx_runtime

    torch.set_num_threads(2)
    spec = M.resolve(model)
    return {
        "torch fp32": M.load(model, device="cpu", dtype="fp32"),
        "ORT fp32": onnx_runtime.load(spec, "fp32"),
        "ORT int8": onnx_runtime.load(spec, "int8"),  # the gate file is cached by export_once
    }


def forward_only(embs: dict, batches: list[int], rounds: int, repeat: int) -> dict:
    from compute_bound import forward_rate

    rates: dict[str, list[float]] = {}
    for _ in range(rounds):
        for batch in batches:
            for name, emb in embs.items():
                rates.setdefault(f"{name}/b{batch}", []).append(forward_rate(emb, batch, repeat))
    print("forward:", {k: round(med(v), 2) for k, v in rates.items()}, flush=True)
    return {k: {"rate": med(v), "rates": v} for k, v in rates.items()}


# --- 3. accuracy ---------------------------------------------------------------------------------


def cosine_stats(cos: np.ndarray) -> dict:
    return {
        "n": int(len(cos)),
        "min": float(cos.min()),
        "p1": float(np.percentile(cos, 1)),
        "mean": float(cos.mean()),
    }


def photo_cosines(embs: dict, limit: int | None) -> dict:
    from indexer.decode import decode_file

    ref = embs["torch fp32"]
    files = real_photos()[:limit]
    pixels = np.stack([decode_file(str(f), ref.recipe, None).pixels for f in files])
    vecs = {
        name: np.concatenate([e.embed(pixels[i : i + 8]) for i in range(0, len(pixels), 8)])
        for name, e in embs.items()
    }
    out = {}
    for name in ("ORT fp32", "ORT int8"):
        cos = (vecs[name] * vecs["torch fp32"]).sum(1)
        out[name] = cosine_stats(cos)
        out[name]["worst"] = files[int(cos.argmin())].name
    cos = (vecs["ORT int8"] * vecs["ORT fp32"]).sum(1)
    out["ORT int8 vs ORT fp32"] = cosine_stats(cos)
    print("cosines:", json.dumps(out), flush=True)
    return out


def dups_quality(model: str) -> dict:
    """The near-dup set (+ imagededup mixed_images) indexed per config, then `dups --json`."""
    import dups_quality as dq

    if not (NEARDUP / "groundtruth.json").exists():
        subprocess.run(
            [harness.PYTHON, str(Path(__file__).with_name("make_neardup_set.py"))], check=True
        )
    sets = dq.load_sets(NEARDUP / "groundtruth.json")
    out, vectors = {}, {}
    for name in ("torch", "default"):
        lib = harness.WORK / f"rt-dups-{name}"
        shutil.rmtree(lib, ignore_errors=True)
        res = index([NEARDUP, MIXED], lib, model, [*CONFIGS[name], "--workers", "1"])
        paths, vecs = dq.read_library(lib)
        vectors[name] = dict(zip(paths, vecs, strict=True))
        doc, dups_s = dq.run_dups(lib, [])
        evals = {ts.name: dq.product_eval(ts, doc, set(paths)) for ts in sets}
        tiers = "exact+pixels+copy"
        out[name] = {
            "runtime": info(lib)["runtime"],
            "index_seconds": res["seconds"],
            "index_rate": res["json"]["embedded"] / res["seconds"],
            "embedded": res["json"]["embedded"],
            "dups_seconds": dups_s,
            "threshold": doc["threshold"],
            "calibration": doc.get("calibration"),
            "pairs": {s: e[tiers]["pairs"] for s, e in evals.items()},
            "groups": {s: e[tiers]["groups"] for s, e in evals.items()},
            "recall_per_transform": evals["neardup"][tiers]["recall_per_transform"],
        }
        print(f"dups {name}:", json.dumps(out[name]["pairs"]), flush=True)
    common = sorted(set(vectors["torch"]) & set(vectors["default"]))
    a = np.stack([vectors["torch"][p] for p in common])
    b = np.stack([vectors["default"][p] for p in common])
    out["library_cosine_default_vs_torch"] = cosine_stats((a * b).sum(1))
    out["f1_drop"] = (
        out["torch"]["pairs"]["neardup"]["f1"] - out["default"]["pairs"]["neardup"]["f1"]
    )
    return out


# --- 4. start-up ---------------------------------------------------------------------------------


def startup(model: str, repeat: int) -> dict:
    twenty, one = subset("jpeg12mp", 20), subset("jpeg12mp", 1)
    rows: dict[str, dict[str, list[dict]]] = {}
    for r in range(repeat):
        for name in ["torch", "default"] if r % 2 == 0 else ["default", "torch"]:
            got = rows.setdefault(name, {"index 20": [], "index 1": [], "query": []})
            lib = fresh_lib(f"start-{name}")
            lib1 = fresh_lib(f"start1-{name}")
            try:
                got["index 20"].append(index([twenty], lib, model, CONFIGS[name], marks=True))
                got["index 1"].append(index([one], lib1, model, CONFIGS[name], marks=True))
                cmd = [DINOSEARCH, "query", str(QUERY_IMAGE), "--index", str(lib), "-k", "5"]
                got["query"].append(run(cmd + ["--json", *CONFIGS[name]], marks=True))
            finally:
                shutil.rmtree(lib, ignore_errors=True)
                shutil.rmtree(lib1, ignore_errors=True)
        print(f"startup r{r}:", {n: round(g["query"][-1]["seconds"], 2) for n, g in rows.items()})
    out = {}
    for name, got in rows.items():
        out[name] = {}
        for what, runs in got.items():
            m = [x["marks"] for x in runs]
            out[name][what] = {
                "wall": med([x["seconds"] for x in runs]),
                "walls": [x["seconds"] for x in runs],
                "python_start": med([x["python_start"] for x in m]),
                "first_forward": med([x["first_forward"] for x in m]),
                "first_real_forward": med([x["first_real_forward"] for x in m]),
                "kind": m[0].get("first_forward_kind"),
                "torch_imported": m[0]["torch_imported"],
            }
        t20, t1 = out[name]["index 20"]["wall"], out[name]["index 1"]["wall"]
        per_image = (t20 - t1) / 19
        out[name]["per_image_s"] = per_image
        out[name]["fixed_s"] = t1 - per_image
    return out


# --- report --------------------------------------------------------------------------------------


def render(data: dict) -> str:
    t = harness.table
    lines = [
        "# Runtimes: torch vs ONNX Runtime fp32 vs the default (ONNX Runtime int8)",
        "",
        f"onnxruntime {data['onnxruntime']}. Model `{Path(data['model']).name}` (ViT-S/14). "
        f"ONNX cache `{CACHE.relative_to(harness.ROOT)}`; every process runs with "
        "HF_HUB_OFFLINE=1.",
        "",
    ]
    ex = data.get("export")
    if ex:
        cm = ex["cold"]["marks"]
        g = ex["runtime"].get("gate", {})
        lines += [
            "## One-time export",
            "",
            f"`dinosearch index` of the 24 Kodak photos from an empty ONNX cache: "
            f"{ex['cold']['seconds']:.1f} s, vs {med(ex['warm_seconds']):.1f} s with the cache "
            f"warm: **{ex['one_time_s']:.1f} s one-time cost** (torch load "
            f"{cm.get('torch_embedder_s', 0):.1f} s, export {cm.get('export_s', 0):.1f} s, "
            f"quantize {cm.get('quantize_s', 0):.1f} s, gate {cm.get('measure_gate_s', 0):.1f} s"
            f"). Gate: min cosine {g.get('min_cosine')}, mean {g.get('mean_cosine')} on "
            f"{g.get('images')} photos (passed: {g.get('passed')}). Files: "
            + ", ".join(f"{k[-9:]} {v / 1e6:.0f} MB" for k, v in ex["bytes"].items())
            + ".",
            "",
        ]
    sp = data.get("index_speed")
    if sp:
        s = sp["summary"]
        rows = []
        for name in CONFIGS:
            rt = sp["runs"][name][0].get("runtime", {})
            rows.append(
                [
                    name,
                    f"{rt.get('runtime')}/{rt.get('dtype')}",
                    s[name]["rate"],
                    " ".join(f"{x:.2f}" for x in s[name]["rates"]),
                    f"{s[name]['ratio_to_torch']:.2f}",
                    f"{s[name]['ratio_to_naive']:.2f}" if "ratio_to_naive" in s[name] else "-",
                    f"{s[name].get('load', float('nan')):.1f}",
                ]
            )
        if "naive" in s:
            rows.append(["model card's naive loop", "torch", s["naive"]["rate"], "", "", "1", ""])
        lines += [
            f"## 1. `dinosearch index`, whole process, {sp['images']} 12-MP JPEGs",
            "",
            "Each run a new library, ONNX cache warm; configs interleaved, order rotated per "
            f"repeat; {len(s['torch']['rates'])} repeats, medians; ratios = median of the "
            f"per-repeat ratios. Naive loop: bench/naive_loop.py on the first "
            f"{sp['naive_images']} files, in the same rounds, its start-up excluded.",
            "",
            *t(
                ["config", "ran as", "img/s", "per repeat", "x torch", "x naive", "load"], rows
            ).splitlines(),
            "",
        ]
    fw = data.get("forward")
    if fw:
        names = list(dict.fromkeys(k.split("/")[0] for k in fw))
        batches = list(dict.fromkeys(k.split("/b")[1] for k in fw))
        rows = [
            [
                f"batch {b}",
                *(fw[f"{n}/b{b}"]["rate"] for n in names),
                f"{fw[f'ORT int8/b{b}']['rate'] / fw[f'torch fp32/b{b}']['rate']:.2f}",
            ]
            for b in batches
        ]
        lines += [
            "## 2. Forward pass only (img/s, 2 threads)",
            "",
            "compute_bound.forward_rate: embed() on ready uint8 pixels; rounds interleaved, "
            "medians. int8 runs one image per session call whatever the batch.",
            "",
            *t(["", *names, "int8 x torch"], rows).splitlines(),
            "",
        ]
    acc = data.get("cosines")
    if acc:
        rows = [
            [k, v["n"], f"{v['min']:.5f}", f"{v['p1']:.5f}", f"{v['mean']:.5f}", v.get("worst", "")]
            for k, v in acc.items()
        ]
        lines += [
            "## 3. Accuracy",
            "",
            "Cosine to torch fp32 on the real photos (photos + photos-more, read in place, "
            "decoded by the product's decode):",
            "",
            *t(["vectors", "photos", "min", "p1", "mean", "worst"], rows).splitlines(),
            "",
        ]
    dq = data.get("dups")
    if dq:
        rows = []
        for name in ("torch", "default"):
            d = dq[name]
            rows.append(
                [
                    name,
                    f"{d['runtime']['runtime']}/{d['runtime']['dtype']}",
                    harness.prf_cell(d["pairs"]["neardup"], bold_f1=True),
                    harness.prf_cell(d["pairs"]["imagededup_mixed"]),
                    f"{d['groups']['neardup']['precision']:.3f}",
                    f"{d['threshold']:.4f}",
                    f"{d['index_rate']:.1f}",
                    f"{d['dups_seconds']:.1f}",
                ]
            )
        lc = dq["library_cosine_default_vs_torch"]
        low = {
            t_: v
            for t_, v in dq["default"]["recall_per_transform"].items()
            if abs(v - dq["torch"]["recall_per_transform"].get(t_, v)) > 1e-9
        }
        lines += [
            "`dinosearch dups --json` (threshold auto, tiers exact+pixels+copy) on the near-dup "
            f"set + imagededup mixed_images ({dq['torch']['embedded']} files), each indexed "
            "into a new library with `--workers 1`, evaluated by bench/dups_quality.py's "
            "product_eval:",
            "",
            *t(
                [
                    "index with",
                    "ran as",
                    "neardup pair P / R / F1",
                    "mixed P / R / F1",
                    "group P",
                    "auto threshold",
                    "index img/s",
                    "dups s",
                ],
                rows,
            ).splitlines(),
            "",
            f"**F1 drop default vs torch: {dq['f1_drop']:+.4f}** (target <= 0.005). Library "
            f"vectors, default vs torch, same files: min cosine {lc['min']:.4f}, p1 "
            f"{lc['p1']:.4f}, mean {lc['mean']:.4f} (n = {lc['n']}). Transforms whose recall "
            "changed (default): "
            + (
                ", ".join(
                    f"{k} {v:.2f} (torch {dq['torch']['recall_per_transform'][k]:.2f})"
                    for k, v in low.items()
                )
                or "none"
            )
            + ".",
            "",
        ]
    st = data.get("startup")
    if st:
        rows = []
        for name, got in st.items():
            for what in ("index 20", "index 1", "query"):
                g = got[what]
                rows.append(
                    [
                        name,
                        what,
                        g["wall"],
                        g["first_forward"],
                        g["first_real_forward"],
                        g["kind"],
                        "yes" if g["torch_imported"] else "no",
                    ]
                )
        lines += [
            "## 4. Start-up (cold process, new library, ONNX file cached)",
            "",
            "Seconds from spawning the process (bench/cli_marks.py wraps the CLI) to its exit, "
            "to the first forward pass (the blank image the embedder is checked with while "
            "loading) and to the first forward on real pixels; "
            f"{len(next(iter(st.values()))['query']['walls'])} interleaved repeats, medians. "
            "index: new 12-MP JPEGs; query: `dinosearch query photos-more/1.tif -k 5` on the "
            "20-photo library.",
            "",
            *t(
                [
                    "config",
                    "command",
                    "wall s",
                    "first forward s",
                    "first real forward s",
                    "embedder",
                    "torch imported",
                ],
                rows,
            ).splitlines(),
            "",
            "From index 20 vs index 1: "
            + "; ".join(
                f"{n} {g['per_image_s']:.3f} s per image, {g['fixed_s']:.2f} s fixed"
                for n, g in st.items()
            )
            + ".",
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 24 files, 2 repeats, no dups", model=True)
    ap.add_argument("--count", type=int, default=240, help="12-MP JPEGs per index run")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats of part 1")
    ap.add_argument("--naive-count", type=int, default=24, help="files through the naive loop")
    ap.add_argument("--batches", default="8,16")
    ap.add_argument("--startup-repeat", type=int, default=5)
    ap.add_argument("--no-dups", action="store_true", help="skip the near-dup F1 (3 min)")
    ap.add_argument("--name", default="runtime_speed")
    ap.add_argument(
        "--parts",
        default="index,forward,accuracy,dups,startup",
        help="which parts to run (the export is always measured first)",
    )
    args = ap.parse_args()
    args.model = harness.model_dir(args.model)
    if args.quick:
        args.count, args.repeat, args.naive_count, args.startup_repeat = 24, 2, 6, 2
        args.no_dups = True
    if len(list((harness.WORK / "perf-images" / "jpeg12mp").glob("*.jpg"))) < args.count:
        subprocess.run(
            [
                harness.PYTHON,
                str(Path(__file__).with_name("make_perf_images.py")),
                "--jpeg",
                str(args.count),
                "--png",
                "0",
                "--heic",
                "0",
            ],
            check=True,
        )
    from indexer import privacy

    onnxruntime = privacy.onnxruntime()  # telemetry off, as in the product
    started = time.perf_counter()
    data = {
        "model": args.model,
        "onnxruntime": onnxruntime.__version__,
        "quick": args.quick,
    }
    data["export"] = export_once(args.model)
    parts = set(args.parts.split(","))
    if "index" in parts:
        data["index_speed"] = index_speed(args.model, args.count, args.repeat, args.naive_count)
    if parts & {"forward", "accuracy"}:
        embs = embedders(args.model)
        if "forward" in parts:
            batches = [int(b) for b in args.batches.split(",")]
            data["forward"] = forward_only(embs, batches, 2, 2 if args.quick else 5)
        if "accuracy" in parts:
            data["cosines"] = photo_cosines(embs, 8 if args.quick else None)
        del embs
    if "dups" in parts and not args.no_dups:
        data["dups"] = dups_quality(args.model)
    if "startup" in parts:
        data["startup"] = startup(args.model, args.startup_repeat)
    data["seconds"] = time.perf_counter() - started
    harness.write_results(args.name, render(data), data)


if __name__ == "__main__":
    main()
