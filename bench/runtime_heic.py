"""HEIC against JPEG under the default runtime (ONNX Runtime int8) and torch: is HEIC decode-bound,
and by how much? Whole `dinosearch index` processes on N 12-MP files of each format (the ONNX
cache warm), interleaved, medians, next to the decode rate alone (decode workers, no model).

    python bench/make_perf_images.py --heic 40      # once (x265 encoding is slow)
    python bench/runtime_heic.py [--count 40] [--repeat 2]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import perf_common as pc
from make_perf_images import OUT as IMAGES

from indexer.decode import Recipe
from indexer.decode_pool import Isolation, decode_all, default_workers

DINOSEARCH = str(Path(pc.PYTHON).with_name("dinosearch"))
MODEL = str(Path.home() / ".cache/dinosearch-dev/dinov2-small-imgfocus")


def subset(fmt: str, count: int) -> Path:
    files = sorted((IMAGES / fmt).iterdir())[:count]
    folder = pc.WORK / "perf-subsets" / f"{fmt}-{count}"
    if not folder.exists():
        folder.mkdir(parents=True)
        for f in files:
            (folder / f.name).symlink_to(f)
    return folder


def index_rate(folder: Path, runtime: str) -> float:
    lib = Path(tempfile.mkdtemp(prefix="heic-lib-", dir=pc.WORK))
    cmd = [DINOSEARCH, "index", str(folder), "--index", str(lib), "--model", MODEL, "--json"]
    cmd += ["--runtime", runtime]
    try:
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(lib, ignore_errors=True)
    return json.loads(out)["embedded"] / seconds


def decode_rate(folder: Path) -> float:
    paths = [str(p) for p in sorted(folder.iterdir())]
    started = time.perf_counter()
    done = sum(1 for _ in decode_all(paths, Recipe(), None, default_workers(), Isolation()))
    return done / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    folders = {fmt: subset(fmt, args.count) for fmt in ("jpeg12mp", "heic")}
    index_rate(folders["jpeg12mp"], "auto")  # warms the ONNX cache (export, once)
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for fmt, folder in folders.items():
            rates.setdefault(f"{fmt} decode", []).append(decode_rate(folder))
            for runtime in ("auto", "torch"):
                rates.setdefault(f"{fmt} index {runtime}", []).append(index_rate(folder, runtime))
    med = {k: statistics.median(v) for k, v in rates.items()}
    rows = []
    for fmt in folders:
        decode, auto, torch = (med[f"{fmt} {k}"] for k in ("decode", "index auto", "index torch"))
        rows.append([fmt, f"{decode:.2f}", f"{auto:.2f}", f"{torch:.2f}", f"{auto / decode:.2f}"])
    header = ["format", "decode only img/s", "index default img/s", "index torch img/s"]
    header.append("default / decode")
    md = (
        "# HEIC vs JPEG: the default runtime and the decoder\n\n"
        f"`python bench/runtime_heic.py --count {args.count} --repeat {args.repeat}`\n\n"
        + pc.table(header, rows)
        + "\n\nA ratio *default / decode* near 1 means indexing runs at the decoder's pace "
        "(decode-bound); the decode-only rate uses the same worker pool as `index`.\n"
    )
    pc.write_results("runtime_heic", {"rates": rates, "medians": med}, md)


if __name__ == "__main__":
    main()
