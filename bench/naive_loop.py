"""The model card's loop: PIL open -> AutoImageProcessor -> AutoModel, one image at a time.

python bench/naive_loop.py MODEL_DIR FILE...   -> JSON {"images", "seconds", "startup"}

    python bench/naive_loop.py --vs-index DIR [--model M] [--runs 2] [--name index_vs_naive]

--vs-index: the naive loop and `dinosearch index DIR --index FRESH --model M --json` (default
options) as whole processes, interleaved (naive, index, naive, index, ...), on the same files;
the speed-up is taken pair by pair and its median reported (issue 24's target: >= 8x on 240
12-MP JPEGs from bench/make_perf_images.py). Results: bench/results/<name>.{md,json}.
"""

import json
import sys
import time


def naive(model_dir: str, files: list[str]) -> None:
    started = time.perf_counter()
    import pillow_heif  # (HEIC support, as any HEIC user of the card would add)
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    pillow_heif.register_heif_opener()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    startup = time.perf_counter() - started
    loop = time.perf_counter()
    for path in files:
        image = Image.open(path)
        inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            outputs = model(**inputs)
        outputs.last_hidden_state[:, 0]  # the CLS embedding
    seconds = time.perf_counter() - loop
    print(json.dumps({"images": len(files), "seconds": seconds, "startup": startup}))


def vs_index() -> None:
    import os
    import shutil
    import statistics
    import subprocess
    import tempfile
    from pathlib import Path

    import harness

    ap = harness.parser(__doc__, model=True)
    ap.add_argument("--vs-index", type=Path, required=True, help="folder of images")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--name", default="index_vs_naive")
    args = ap.parse_args()
    model = harness.model_dir(args.model)
    suffixes = {".jpg", ".jpeg", ".png", ".heic", ".webp"}
    files = sorted(str(p) for p in args.vs_index.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise SystemExit(f"error: no images in {args.vs_index}")
    exe = str(harness.ROOT / ".venv" / "bin" / "dinosearch")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="index-vs-naive-") as tmp:
        for r in range(args.runs):
            t = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, model, *files], capture_output=True, text=True, env=env
            )
            naive_s = time.perf_counter() - t
            if done.returncode:
                raise SystemExit(f"error: the naive loop failed:\n{done.stderr[-2000:]}")
            inner = json.loads(done.stdout)
            library = Path(tmp) / f"lib{r}"
            shutil.rmtree(library, ignore_errors=True)
            cmd = [exe, "index", str(args.vs_index), "--index", str(library), "--model", model]
            t = time.perf_counter()
            done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env)
            index_s = time.perf_counter() - t
            if done.returncode:
                raise SystemExit(f"error: dinosearch index failed:\n{done.stderr[-2000:]}")
            indexed = json.loads(done.stdout)
            rows.append(
                {
                    "naive_s": round(naive_s, 2),
                    "naive_startup_s": round(inner["startup"], 2),
                    "index_s": round(index_s, 2),
                    "indexed": indexed.get("indexed"),
                    "runtime": indexed.get("runtime"),
                    "speedup": round(naive_s / index_s, 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    speedup = statistics.median(r["speedup"] for r in rows)
    n = len(files)
    lines = [
        f"# `dinosearch index` vs the model card's loop, whole processes ({n} files)",
        "",
        f"Files: {args.vs_index} ({n}). Model: {model}. Both as whole processes (interpreter, "
        "imports, model load included), interleaved naive, index, naive, index ...; "
        "`dinosearch index DIR --index FRESH --model M --json` with default options.",
        "",
        f"Median per-pair speed-up: **{speedup:.2f}x** (naive "
        f"{n / statistics.median(r['naive_s'] for r in rows):.2f} img/s, dinosearch "
        f"{n / statistics.median(r['index_s'] for r in rows):.2f} img/s).",
        "",
        harness.table(
            ["pair", "naive loop s (its start-up)", "dinosearch index s", "speed-up"],
            [
                [i + 1, f"{r['naive_s']} ({r['naive_startup_s']})", r["index_s"], r["speedup"]]
                for i, r in enumerate(rows)
            ],
        ),
    ]
    harness.write_results(args.name, "\n".join(lines) + "\n", {"files": n, "pairs": rows})


if __name__ == "__main__":
    if "--vs-index" in sys.argv[1:]:
        vs_index()
    elif sys.argv[1:2] in (["-h"], ["--help"]) or len(sys.argv) < 2:
        print(__doc__.strip())  # a helper other scripts run: its usage, nothing else
    else:
        naive(sys.argv[1], sys.argv[2:])
