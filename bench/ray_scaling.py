"""Decode + embed on Ray with 1, 2, 4 model replicas vs the local pipeline, on real photos.

Times the embedding stage the --ray switch replaces (files in, Embedded batches out): the local
`embed_batches(decode_all(...))` against `ray_embedded_batches`, same model, same files, on a
local Ray cluster bounded to this machine (ray.init(num_cpus=2)). Vectors are checked against the
local run. Writes bench/results/scale_ray.md.

    python bench/ray_scaling.py [--model DIR] [--replicas 1,2,4] [--batch 16] [--quick]

Needs the [ray] extra; --quick: 16 photos, 1 replica (results in bench/work/quick-results).
"""

import time

import harness
import numpy as np
from harness import table

from indexer.decode_pool import decode_all, default_workers, embed_batches
from indexer.files import walk
from indexer.job import IndexOptions
from indexer.model import load
from indexer.ray_backend import ray_embedded_batches

FOLDERS = [harness.TESTDATA / p for p in ("photos", "photos-more")]
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
    parser = harness.parser(__doc__, quick="smoke run: 16 photos, 1 replica", model=True)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    args.model = harness.model_dir(args.model)
    try:
        import ray  # optional extra (dinosearch[ray])
    except ImportError:
        raise SystemExit("error: ray is not installed: pip install -e '.[ray]'") from None

    paths = photo_paths()
    if args.quick:
        paths, args.replicas = paths[:16], "1"
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
    md = (
        f"# Ray scaling: decode + embed, {data['images']} real photos\n\n"
        "The cores are shared with other jobs. "
        f"Model: {data['model']} (DINOv2-S/14, fp32, CPU). "
        f"Ray: local cluster, num_cpus={RAY_CPUS}; `ray.init` took {data['ray_init_s']:.1f} s "
        "(not included below). Each Ray run includes starting its actors and loading the model "
        "in each.\n\n"
    )
    md += table(["run", "replicas", "seconds", "images/s", "max |Δ| vs local"], rows)
    harness.write_results("scale_ray", md, data)


if __name__ == "__main__":
    main()
