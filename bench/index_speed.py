"""End-to-end indexing: `dinosearch index` (whole process, start-up included) vs the model card's
naive loop vs the forward pass alone, same model directory, same run, per image format.

Needs bench/make_perf_images.py first. Forward-only is measured before and after the process runs
(median of both) to bracket load drift; the naive loop's rate excludes its own start-up (which
favours it).

    python bench/index_speed.py [--quick] [--formats jpeg12mp,png,heic] [--configs w1b16,w2b16]
"""

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import harness
import numpy as np
from compute_bound import forward_rate, matmul_gflops
from make_perf_images import OUT as IMAGES

from indexer import model as M


def parse_config(text: str) -> dict:
    """'w1b16' -> workers 1, batch 16; a trailing 't1' sets torch threads (OMP_NUM_THREADS)."""
    out = {"workers": None, "batch": 16, "threads": None, "name": text}
    num = ""
    key = None
    for ch in text + "$":
        if ch.isdigit():
            num += ch
            continue
        if key and num:
            out[{"w": "workers", "b": "batch", "t": "threads"}[key]] = int(num)
        key, num = ch, ""
    return out


def run_dinosearch(files_dir: Path, model: str, cfg: dict, dtype: str) -> dict:
    lib = Path(tempfile.mkdtemp(prefix="perf-lib-", dir=harness.WORK))
    cmd = harness.cli_command("index", files_dir, "--index", lib, "--model", model, "--json")
    cmd += ["--batch-size", str(cfg["batch"]), "--dtype", dtype, "--device", "cpu"]
    if cfg["workers"] is not None:
        cmd += ["--workers", str(cfg["workers"])]
    env = harness.cli_env({"OMP_NUM_THREADS": str(cfg["threads"])} if cfg["threads"] else None)
    try:
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(lib, ignore_errors=True)
    summary = json.loads(out)
    assert summary["embedded"] == len(list(files_dir.iterdir())), summary
    n = summary["embedded"]
    return {"images": n, "seconds": seconds, "rate": n / seconds}


def run_naive(files: list[Path], model: str) -> dict:
    script = Path(__file__).with_name("naive_loop.py")
    out = subprocess.run(
        [harness.PYTHON, str(script), model, *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    data["rate"] = data["images"] / data["seconds"]
    return data


def subset(kind: str, count: int) -> Path:
    """A folder of the first `count` images of a kind (hard links: same bytes, no copies)."""
    src = sorted((IMAGES / kind).iterdir())
    src = [p for p in src if not p.name.startswith(".")][:count]
    folder = harness.WORK / "perf-subsets" / f"{kind}-{len(src)}"
    if not folder.exists() or len(list(folder.iterdir())) != len(src):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for p in src:
            os.link(p, folder / p.name)
    return folder


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 16 images per format", model=True)
    ap.add_argument("--formats", default="jpeg12mp,png,heic")
    ap.add_argument("--count", type=int, default=200, help="images per format (at most)")
    ap.add_argument("--naive-count", type=int, default=40, help="images through the naive loop")
    ap.add_argument("--configs", default="default", help="e.g. w1b16,w2b16,w0b16,w1b16t1")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--name", default="index_speed", help="results file: perf_<name>.*")
    args = ap.parse_args()
    args.model = harness.model_dir(args.model)
    import torch  # after parsing: `--help` stays light

    count = 16 if args.quick else args.count
    naive_count = 8 if args.quick else args.naive_count
    repeat = 2 if args.quick else 3
    embedder = M.load(args.model, device="cpu", dtype=args.dtype)
    results, rows = {}, []
    for kind in args.formats.split(","):
        folder = subset(kind, count)
        files = sorted(folder.iterdir())
        for text in args.configs.split(","):
            cfg = parse_config("b16" if text == "default" else text)
            cfg["name"] = text
            before = forward_rate(embedder, cfg["batch"], repeat)
            ours = run_dinosearch(folder, args.model, cfg, args.dtype)
            # The same command on half the files: the difference is the steady-state rate, with
            # the fixed start-up (imports + model load, ~9 s here) taken out.
            half = run_dinosearch(subset(kind, len(files) // 2), args.model, cfg, args.dtype)
            marginal = (ours["images"] - half["images"]) / max(
                ours["seconds"] - half["seconds"], 1e-9
            )
            naive = run_naive(files[:naive_count], args.model)
            after = forward_rate(embedder, cfg["batch"], repeat)
            bound = matmul_gflops(torch.float32, 16 * 257, 384, 1536, 2.0) * 1e9 / 11.03e9
            forward = statistics.median([before, after])
            key = f"{kind}/{text}"
            results[key] = {
                "config": cfg,
                "dinosearch": ours,
                "dinosearch_half": half,
                "marginal_rate": marginal,
                "naive": naive,
                "forward_only": [before, after],
                "bound_images_per_s": bound,
                "load_average": os.getloadavg()[0],
            }
            rows.append(
                [
                    kind,
                    text,
                    ours["images"],
                    ours["rate"],
                    naive["rate"],
                    ours["rate"] / naive["rate"],
                    forward,
                    100 * ours["rate"] / forward,
                    100 * ours["rate"] / bound,
                    ours["seconds"] - ours["images"] / marginal,
                    marginal,
                    100 * marginal / forward,
                    round(os.getloadavg()[0], 1),
                ]
            )
            print(rows[-1], flush=True)
    data = {"model": args.model, "dtype": args.dtype, "quick": args.quick, "runs": results}
    md = (
        f"`dinosearch index` as a whole process (start-up, walk, hash, decode, embed, SQLite, "
        f"FAISS) vs the model card's loop, {args.dtype}, model `{Path(args.model).name}` "
        "(full-size ViT-S/14). Forward-only = Embedder.embed on ready pixels at the same batch "
        "(median of before/after); bound = measured fp32 matmul GFLOP/s / 11.03 GFLOP.\n\n"
        + harness.table(
            [
                "format",
                "config",
                "images",
                "dinosearch img/s",
                "naive img/s",
                "x naive",
                "forward-only img/s",
                "% of forward",
                "% of bound",
                "fixed cost s",
                "steady img/s",
                "steady % of forward",
                "load",
            ],
            rows,
        )
        + "\nsteady img/s = (N - N/2) / (t(N) - t(N/2)) from a second run on the first half of "
        "the files: the rate once start-up is paid; fixed cost = t(N) minus N / steady rate.\n"
        + "\nconfig: `default` = product defaults (batch 16, workers = cores - 1); "
        "wNbM = --workers N --batch-size M; tK = OMP_NUM_THREADS=K.\n"
    )
    harness.write_results(f"perf_{args.name}", md, data)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
