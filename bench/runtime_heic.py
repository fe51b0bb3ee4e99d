"""HEIC against JPEG: indexing and decode rates, and how far the thumbnail path's vectors are
from a full decode's.

Rates: whole `dinosearch index` processes (default runtime, the ONNX cache warm), default and
`--fast`, on N 12-MP files of each kind, next to the decode rate alone (the same worker pool as
`index`: the default workers, and the former default of one worker per spare core):

- jpeg12mp     4000x3000 JPEGs (bench/make_perf_images.py)
- heic         4000x3000 single-stream HEICs without a thumbnail (bench/make_perf_images.py)
- heic-iphone  4032x3024, a 512x512-tiled grid and a 320x240 thumbnail (bench/heic_images.py)

Cosine: the real DINOv2-S/14 weights (torch fp32) embed each HEIC as `index` reads it (its
thumbnail when large enough) and from its primary image (pillow-heif's thumbnails switched off);
min and median cosine per set and recipe.

    python bench/make_perf_images.py --heic 40 && python bench/heic_images.py   # once
    python bench/runtime_heic.py [--count 16] [--repeat 1] [--part all|rates|cosine] [--quick]
"""

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import harness
import numpy as np
import pillow_heif
from heic_images import OUT as HEIC_IMAGES
from make_perf_images import OUT as IMAGES

from indexer import runtime
from indexer.decode import Recipe, decode_file
from indexer.decode_pool import Isolation, decode_all, default_workers

MODEL = str(harness.REAL_WEIGHTS)  # --model
FAST = Recipe(shortest_edge=224, crop=(196, 196))  # runtime.fast_recipe of DINOv2
FOLDERS = {
    "jpeg12mp": IMAGES / "jpeg12mp",
    "heic": IMAGES / "heic",
    "heic-iphone": HEIC_IMAGES / "heic-iphone",
}
COSINE_SETS = {
    "heic-thumbs (Kodak 500 px, 320 px thumbnail)": HEIC_IMAGES / "heic-thumbs",
    "heic-iphone (12 MP grid, 320x240 thumbnail)": HEIC_IMAGES / "heic-iphone",
}


def subset(name: str, count: int) -> Path:
    files = sorted(FOLDERS[name].iterdir())[:count]
    folder = harness.WORK / "perf-subsets" / f"{name}-{count}"
    if not folder.exists():
        folder.mkdir(parents=True)
        for f in files:
            (folder / f.name).symlink_to(f)
    return folder


def index_rate(folder: Path, fast: bool) -> float:
    lib = Path(tempfile.mkdtemp(prefix="heic-lib-", dir=harness.WORK))
    cmd = harness.cli_command("index", folder, "--index", lib, "--model", MODEL, "--json")
    cmd += ["--fast"] if fast else []
    try:
        started = time.perf_counter()
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, env=harness.cli_env()
        ).stdout
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(lib, ignore_errors=True)
    return json.loads(out)["embedded"] / seconds


def decode_rate(folder: Path, recipe: Recipe, workers: int) -> tuple[float, Counter]:
    paths = [str(p) for p in sorted(folder.iterdir())]
    started = time.perf_counter()
    ways = Counter(d.decoded.format for d in decode_all(paths, recipe, None, workers, Isolation()))
    return len(paths) / (time.perf_counter() - started), ways


def rates(count: int, repeat: int) -> tuple[dict, str]:
    folders = {name: subset(name, count) for name in FOLDERS}
    index_rate(folders["jpeg12mp"], False)  # warms the ONNX cache (export, once)
    found: dict[str, list[float]] = {}
    ways: dict[str, dict] = {}
    spare = max(1, (os.cpu_count() or 2) - 1)
    for _ in range(repeat):
        for name, folder in folders.items():
            workers = default_workers([str(p) for p in folder.iterdir()])
            for label, recipe in (("default", Recipe()), ("fast", FAST)):
                rate, how = decode_rate(folder, recipe, workers)
                found.setdefault(f"{name} decode {label}", []).append(rate)
                ways[f"{name} {label}"] = dict(how)
                index = index_rate(folder, label == "fast")
                found.setdefault(f"{name} index {label}", []).append(index)
            if workers != spare:
                rate, _ = decode_rate(folder, Recipe(), spare)
                found.setdefault(f"{name} decode default, {spare} workers", []).append(rate)
    med = {k: statistics.median(v) for k, v in found.items()}
    rows = []
    for name, folder in folders.items():
        workers = default_workers([str(p) for p in folder.iterdir()])
        old = med.get(f"{name} decode default, {spare} workers")
        rows.append(
            [
                name,
                ", ".join(f"{k} {v}" for k, v in ways[f"{name} default"].items()),
                workers,
                f"{old:.2f}" if old else "-",
                f"{med[f'{name} decode default']:.2f}",
                f"{med[f'{name} index default']:.2f}",
                ", ".join(f"{k} {v}" for k, v in ways[f"{name} fast"].items()),
                f"{med[f'{name} decode fast']:.2f}",
                f"{med[f'{name} index fast']:.2f}",
            ]
        )
    header = ["files", "read as (default)", "workers", f"decode img/s, {spare} worker(s)"]
    header += ["decode img/s", "index img/s", "read as (--fast)", "decode img/s --fast"]
    header += ["index img/s --fast"]
    md = (
        f"## Rates: {count} files of each kind, median of {repeat}\n\n"
        + harness.table(header, rows)
        + "\n\n*workers* is the default for that folder (`default_workers`: one per core when "
        "most files are HEIC, else one per spare core); the column before it is the decode rate "
        "with the former default. Index rates are whole processes (start-up and model load "
        "included), default runtime.\n"
    )
    return {"rates": found, "medians": med, "read_as": ways}, md


def cosines(limit: int) -> tuple[dict, str]:
    out, rows = {}, []
    for fast in (False, True):
        embedder = runtime.load(MODEL, "cpu", "fp32", "torch", fast=fast)
        recipe = embedder.recipe
        for name, folder in COSINE_SETS.items():
            paths = [str(p) for p in sorted(folder.glob("*.heic"))[:limit]]
            product = [decode_file(p, recipe, None) for p in paths]
            pillow_heif.options.THUMBNAILS = False  # the full decode: primary image only
            try:
                full = [decode_file(p, recipe, None) for p in paths]
            finally:
                pillow_heif.options.THUMBNAILS = True
            a = embedder.embed(np.stack([d.pixels for d in product]))
            b = embedder.embed(np.stack([d.pixels for d in full]))
            cos = (a * b).sum(axis=1)
            how = Counter(d.format for d in product)
            key = f"{name}, {'--fast' if fast else 'default'}"
            out[key] = {"cosines": cos.round(5).tolist(), "read_as": dict(how)}
            label = "--fast (224/196)" if fast else "default (256/224)"
            ways = ", ".join(f"{k} {v}" for k, v in how.items())
            rows.append([name, label, ways, f"{cos.min():.4f}", f"{np.median(cos):.4f}"])
    md = (
        "## Vectors: thumbnail path against a full decode (real DINOv2-S/14, torch fp32)\n\n"
        + harness.table(["set", "recipe", "read as", "min cosine", "median cosine"], rows)
        + "\n\nA set read as `HEIF (primary)` under a recipe compares a full decode with "
        "itself (cosine 1): its thumbnail is smaller than that recipe's shorter side.\n"
    )
    return out, md


def main() -> None:
    global MODEL
    ap = harness.parser(__doc__, quick="smoke run: 2 files per set, 4 for the cosines", model=True)
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--part", choices=["all", "rates", "cosine"], default="all")
    args = ap.parse_args()
    MODEL = harness.model_dir(args.model)
    if args.quick:
        args.count = 2
    data, parts = {}, []
    if args.part in ("all", "rates"):
        found, md = rates(args.count, args.repeat)
        data["rates"], parts = found, [*parts, md]
    if args.part in ("all", "cosine"):
        found, md = cosines(4 if args.quick else 64)
        data["cosine"], parts = found, [*parts, md]
    head = "# HEIC vs JPEG: rates, and the thumbnail path's vectors\n\n"
    suffix = "" if args.part == "all" else f"_{args.part}"
    harness.write_results(f"perf_runtime_heic{suffix}", head + "\n".join(parts), data)


if __name__ == "__main__":
    main()
