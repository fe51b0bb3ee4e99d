"""Decode + embed on Ray with 1, 2, 4 model replicas vs the local pipeline, on real photos.

Times the embedding stage the --ray switch replaces (files in, Embedded batches out): the local
`embed_batches(decode_all(...))` against `ray_embedded_batches`, same model, same files, on a
local Ray cluster bounded to this machine (ray.init(num_cpus=2)). Vectors are checked against the
local run. Writes bench/results/scale_ray.md.

    python bench/ray_scaling.py [--model DIR] [--replicas 1,2,4] [--repeat 1]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perf_common import REAL_WEIGHTS, RESULTS, machine, table  # noqa: E402
from indexer.decode_pool import decode_all, default_workers, embed_batches  # noqa: E402
from indexer.files import walk  # noqa: E402
from indexer.job import IndexOptions  # noqa: E402
from indexer.model import load  # noqa: E402
from indexer.ray_backend import ray_embedded_batches  # noqa: E402

FOLDERS = [Path(__file__).resolve().parents[2] / "shared" / "testdata" / p
           for p in ("photos", "photos-more")]  # fmt: skip
RAY_CPUS = 2  # this machine's cores: the cluster never claims more


def photo_paths() -> list[str]:
    return sorted(f.path for f in walk([str(p) for p in FOLDERS]))


def run_local(paths: list[str], embedder, batch: int) -> tuple[float, dict]:
    started = time.perf_counter()
    decoded = decode_all(paths, embedder.recipe, None, default_workers())
    out = {e.path: e for b in embed_batches(decoded, embedder.embed, batch) for e in b}
    return time.perf_counter() - started, out


def run_ray(paths: list[str], embedder, batch: int, replicas: int) -> tuple[float, dict]:
    options = IndexOptions(batch_size=batch, workers=replicas, max_pixels=None)
    started = time.perf_counter()
    batches = ray_embedded_batches(paths, embedder.id, embedder.recipe, options, None)
    out = {e.path: e for b in batches for e in b}
    return time.perf_counter() - started, out


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[p].vector - b[p].vector).max()) for p in a if a[p].vector is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REAL_WEIGHTS))
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import ray  # optional extra (dinosearch[ray])

    paths = photo_paths()
    embedder = load(args.model, "cpu", "fp32")
    rows, data = [], {"images": len(paths), "model": args.model, "runs": []}
    seconds, local = run_local(paths, embedder, args.batch)
    rows.append(["local (decode pool + 1 model)", "-", seconds, len(paths) / seconds, 0.0])
    data["runs"].append({"mode": "local", "seconds": seconds})
    t = time.perf_counter()
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    data["ray_init_s"] = time.perf_counter() - t
    for n in [int(x) for x in args.replicas.split(",")]:
        seconds, got = run_ray(paths, embedder, args.batch, n)
        diff = max_diff(local, got)
        rows.append([f"ray, {n} replicas", n, seconds, len(paths) / seconds, diff])
        data["runs"].append({"mode": "ray", "replicas": n, "seconds": seconds, "max_diff": diff})
    ray.shutdown()
    write(data, rows)


def write(data: dict, rows: list) -> None:
    m = machine()
    md = (
        f"# Ray scaling: decode + embed, {data['images']} real photos\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average']} (shared with "
        f"other jobs), {m['date']}. Model: {data['model']} (DINOv2-S/14, fp32, CPU). "
        f"Ray: local cluster, num_cpus={RAY_CPUS}; `ray.init` took {data['ray_init_s']:.1f} s "
        "(not included below). Each Ray run includes starting its actors and loading the model "
        "in each.\n\n"
    )
    md += table(["run", "replicas", "seconds", "images/s", "max |Δ| vs local"], rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_ray.json").write_text(json.dumps({"machine": m, **data}, indent=1) + "\n")
    (RESULTS / "scale_ray.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
