"""SIGKILL `dinosearch index` between two of its batch commits, ≥ 20 times; after each kill check
the library (PRAGMA integrity_check + search.upkeep.check), resume, and finally compare with an
uninterrupted run: ids, hashes, vectors and neighbours must not differ.

    python bench/kill_index.py [--images 3000] [--batch-size 16] [--kills 20] [--seed 1]
                               [--out bench/results/reliability_kill.md] [--real-cache]
    python bench/kill_index.py --quick        # smoke run: 200 images, 3 kills

The folder is `--images` small (64x64) PNG/JPEG tiles cut from the real photos in
shared/testdata/photos (random crops and colour changes, each file distinct), written to a temp
dir, so an uninterrupted run makes hundreds of commits. Each kill is aimed at a random commit
of its run (a read-only poll of the library waits for it, then a random fraction of a batch's
time) and *proved* afterwards: the rows read right after the kill say how many commits the run
had made; a kill counts as mid-run only if that run had committed at least one batch and not all
of the job's rows were committed.

Needs a model: the tiny test checkpoint is put into a private HF cache (as the tests do), unless
--real-cache is given (then the normal cache and facebook/dinov2-small are used).
"""

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import numpy as np
from harness import PHOTOS, ROOT
from PIL import Image, ImageEnhance

from indexer.library import vectorfile
from indexer.library.store import Store
from search.collection import Collection
from search.upkeep.check import check_library

TILE_PX = 64  # side of each generated image: decoding stays cheap, the commits many
# After a kill only the derived FAISS file may lag (a query or the next run rebuilds it).
DERIVED = {"index_stale", "index_missing", "index_mismatch", "temp_file", "stale_index_file"}
POLL_S = 0.005  # how often the read-only poll counts committed rows
KNN_K = 5


def small_images(folder: Path, count: int, seed: int, side: int = TILE_PX) -> list[Path]:
    """`count` distinct side x side tiles of the real photos (random crop, scale and colour),
    alternately PNG and JPEG, 500 to a subfolder; their paths."""
    rng = random.Random(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.png"))]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        crop = rng.randint(side, min(photo.size) // 2)
        x, y = rng.randint(0, photo.width - crop), rng.randint(0, photo.height - crop)
        tile = photo.crop((x, y, x + crop, y + crop)).resize((side, side), Image.BILINEAR)
        tile = ImageEnhance.Color(tile).enhance(rng.uniform(0.5, 1.5))
        sub = folder / f"part{i // 500:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"tile{i:05d}.{'png' if i % 2 else 'jpg'}"
        tile.save(path, quality=90)
        paths.append(path)
    return paths


def private_model_cache(work: Path) -> None:
    """The tiny real-architecture checkpoints, in an offline HF cache under `work`."""
    os.environ.update(
        HF_HOME=str(work / "hf"), HF_HUB_CACHE=str(work / "hf/hub"), HF_HUB_OFFLINE="1"
    )
    harness.tests_module("checkpoints").populate_hub_cache(work / "hf/hub")


def index_cmd(library: Path, folder: Path, batch_size: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search.cli.app",
        "index",
        str(folder),
        "--index",
        str(library),
        "--batch-size",
        str(batch_size),
        "--workers",
        "1",
        "--json",
    ]


def run_to_end(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def committed(library: Path) -> dict:
    """Rows and vector slots committed, and vectors on disk past the commit, read read-only."""
    db = library / "library.db"
    if not db.exists():
        return {"rows": 0, "slots": 0, "tail": 0}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("select count(*) from images").fetchone()[0]
            meta = dict(conn.execute("select key, value from meta").fetchall())
    except sqlite3.Error:
        return {"rows": 0, "slots": 0, "tail": 0}
    slots = int(meta.get(vectorfile.VECTOR_SLOTS_KEY) or 0)
    dim = json.loads(meta["model"])["dim"] if meta.get("model") else 0
    vec = library / (meta.get(vectorfile.VECTOR_FILE_KEY) or vectorfile.file_name(0))
    on_disk = vec.stat().st_size // (dim * vectorfile.DTYPE.itemsize) if dim and vec.exists() else 0
    return {"rows": rows, "slots": slots, "tail": max(0, on_disk - slots)}


def rows_now(library: Path) -> int:
    return committed(library)["rows"]


def kill_at_commit(cmd: list[str], library: Path, target_rows: int, jitter_s: float) -> bool:
    """Start a run; once `target_rows` rows are committed, wait `jitter_s` and SIGKILL it.
    False if it finished first."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and rows_now(library) < target_rows:
        time.sleep(POLL_S)
    time.sleep(jitter_s)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def integrity(library: Path) -> str:
    if not (library / "library.db").exists():
        return "ok (no database yet)"
    with sqlite3.connect(library / "library.db") as conn:
        return conn.execute("pragma integrity_check").fetchone()[0]


def rows(library: Path) -> dict:
    store = Store.open(library)
    try:
        got = store.all_images()
    finally:
        store.close()
    return {r["path"]: (r["id"], r["hash"], r["status"], r["vector"]) for r in got}


def neighbours(library: Path, k: int = KNN_K) -> dict[str, list[str]]:
    coll = Collection(library)
    out = {}
    for path, (image_id, _, status, _) in rows(library).items():
        if status == "ok":
            out[path] = [h.path for h in coll.similar(image_id, k=k).results]
    coll.close()
    return out


def compare(reference: Path, library: Path) -> list[str]:
    a, b = rows(reference), rows(library)
    diffs = [f"path only in reference: {p}" for p in a.keys() - b.keys()]
    diffs += [f"path only in killed library: {p}" for p in b.keys() - a.keys()]
    for path in a.keys() & b.keys():
        (ia, ha, sa, va), (ib, hb, sb, vb) = a[path], b[path]
        if (ia, ha, sa) != (ib, hb, sb):
            diffs.append(f"{path}: id/hash/status {(ia, ha, sa)} != {(ib, hb, sb)}")
        elif va is not None and not np.allclose(
            np.frombuffer(va, np.float32), np.frombuffer(vb, np.float32), atol=1e-6
        ):
            diffs.append(f"{path}: vector differs")
    na, nb = neighbours(reference), neighbours(library)
    diffs += [f"{p}: neighbours differ" for p in na if na[p] != nb.get(p)]
    return diffs


def cli_check(library: Path) -> tuple[int, dict]:
    """`dinosearch check --json` as a user runs it: (exit code, report)."""
    cmd = [sys.executable, "-m", "search.cli.app", "check", "--index", str(library), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return proc.returncode, json.loads(proc.stdout)


def next_target(rng: random.Random, before: int, total: int, batch: int, kills_left: int) -> int:
    """A random commit of the next run, strictly before its last: rows to wait for."""
    batches_left = math.ceil((total - before) / batch)
    spread = max(1, (batches_left - 1) * 2 // (kills_left + 1))  # leave room for later kills
    # aim two commits short of the last: the jitter and the poll may let one more through
    return before + batch * rng.randint(1, max(1, min(spread, batches_left - 2)))


def kill_round(args, cmd, library: Path, rng, kills_left: int, batch_s: float) -> dict:
    before = rows_now(library)
    target = next_target(rng, before, args.images, args.batch_size, kills_left)
    jitter = rng.uniform(0, batch_s)
    started = time.perf_counter()
    killed = kill_at_commit(cmd, library, target, jitter)
    at_kill = committed(library)
    report = check_library(library) if (library / "library.db").exists() else None
    kinds = {p.kind for p in report.problems} if report else set()
    run_batches = math.ceil((args.images - before) / args.batch_size)
    commits = math.ceil((at_kill["rows"] - before) / args.batch_size)  # the last may be short
    return {
        "rows_before": before,
        "target_rows": target,
        "jitter_s": round(jitter, 3),
        "killed_after_s": round(time.perf_counter() - started, 2),
        "killed": killed,
        "rows": at_kill["rows"],
        "commits": commits,
        "run_batches": run_batches,
        "between": killed and before < at_kill["rows"] < args.images,
        "tail": at_kill["tail"],
        "integrity": integrity(library),
        "derived_problems": sorted(kinds & DERIVED),
        "other_problems": [p.to_json() for p in report.problems if p.kind not in DERIVED]
        if report
        else [],
    }


def main() -> int:
    parser = harness.parser(__doc__, quick="smoke run: 200 images, 3 kills")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="the report (bench/results/reliability_kill.md)")
    parser.add_argument("--real-cache", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.kills = 200, 3
    args.out = args.out or harness.results_dir() / "reliability_kill.md"
    bench_started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="dinosearch-kill-"))
    if not args.real_cache:
        private_model_cache(work)
    folder = work / "images"
    small_images(folder, args.images, args.seed)
    reference, library = work / "reference", work / "killed"
    full = run_to_end(index_cmd(reference, folder, args.batch_size))
    batch_s = full / math.ceil(args.images / args.batch_size)  # an upper bound: start-up included
    cmd = index_cmd(library, folder, args.batch_size)
    rng = random.Random(args.seed)
    log: list[dict] = []
    while sum(e["killed"] for e in log) < args.kills and rows_now(library) < args.images:
        left = args.kills - sum(e["killed"] for e in log)
        log.append(kill_round(args, cmd, library, rng, left, batch_s))
        print(json.dumps(log[-1]), file=sys.stderr)
    resume_s = run_to_end(cmd)  # the final resume, to the end
    exit_code, final = cli_check(library)
    diffs = compare(reference, library)
    sizes = {"images": args.images, "batch": args.batch_size, "full_s": full, "resume_s": resume_s}
    sizes["bench_s"] = time.perf_counter() - bench_started
    write_report(args.out, log, sizes, exit_code, final, diffs, integrity(library))
    shutil.rmtree(work, ignore_errors=True)
    ok = not diffs and exit_code == 0 and all(e["between"] for e in log)
    ok = ok and all(e["integrity"].startswith("ok") and not e["other_problems"] for e in log)
    return 0 if ok and len(log) >= args.kills else 1


def histogram(log: list[dict], total: int, buckets: int = 10) -> list[str]:
    """Kills per tenth of the whole job (by rows committed at the kill)."""
    counts = [0] * buckets
    for e in log:
        counts[min(buckets - 1, e["rows"] * buckets // total)] += 1
    return [
        f"| {i * 100 // buckets}–{(i + 1) * 100 // buckets} % | {n} |" for i, n in enumerate(counts)
    ]


def write_report(out: Path, log, sizes, exit_code, final, diffs, final_integrity) -> None:
    kills = [e for e in log if e["killed"]]
    total, batch = sizes["images"], sizes["batch"]
    between = sum(e["between"] for e in log)
    lines = [
        "# Reliability: SIGKILL between the batch commits of `dinosearch index`",
        "",
        f"Folder: {total} distinct {TILE_PX}x{TILE_PX} PNG/JPEG tiles cut from "
        "`shared/testdata/photos` (random crops and colour), tiny real-architecture DINOv2 "
        f"(test checkpoint), `--batch-size {batch} --workers 1`: "
        f"{math.ceil(total / batch)} batch commits. Uninterrupted run: "
        f"{sizes['full_s']:.1f} s; the whole bench: {sizes['bench_s']:.0f} s on 2 shared cores.",
        "",
        "Each kill waits (read-only poll) for a random commit of its run, then a random part of a "
        "batch's time, then SIGKILLs; the rows read right after the kill give the commits that run "
        "had made; it counts as mid-run only if that run had committed at least one batch and the "
        "job's rows were not all committed. Every run after the first resumes the killed library "
        "and is itself killed; "
        "after the last kill one resume runs to the end.",
        "",
        f"- kills: **{len(kills)}** (plus {len(log) - len(kills)} runs that finished first)",
        f"- kills strictly between the run's first and last commit: **{between} of {len(log)}**",
        f"- kills that left appended but uncommitted vectors (inside a batch's write): "
        f"**{sum(e['tail'] > 0 for e in log)}**",
        f"- `PRAGMA integrity_check` not ok after a kill: "
        f"**{sum(not e['integrity'].startswith('ok') for e in log)}**",
        f"- problems found by `check` after a kill other than the derived FAISS file lagging: "
        f"**{sum(bool(e['other_problems']) for e in log)}**",
        f"- after the final resume ({sizes['resume_s']:.1f} s): integrity `{final_integrity}`, "
        f"`dinosearch check --json` exit {exit_code} with {len(final['problems'])} problems; "
        f"differences from the uninterrupted run (ids, hashes, status, vectors, top-{KNN_K} "
        f"neighbours of every image): **{len(diffs)}**",
        "",
        "Where the kills landed (rows committed at the kill, as a share of the whole job):",
        "",
        "| rows committed | kills |",
        "|---|---|",
        *histogram(log, total),
        "",
        "| # | rows before | aimed at | killed after (s) | rows at kill | commits of this run "
        "/ its batches | between | uncommitted vectors | integrity | derived index |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, e in enumerate(log, 1):
        lines.append(
            f"| {n} | {e['rows_before']} | {e['target_rows']} | {e['killed_after_s']} | "
            f"{e['rows'] if e['killed'] else 'finished'} | {e['commits']} / "
            f"{e['run_batches']} | {'yes' if e['between'] else 'NO'} | {e['tail']} | "
            f"{e['integrity']} | {', '.join(e['derived_problems']) or 'agrees'} |"
        )
    if diffs:
        lines += ["", "## Differences", ""] + [f"- {d}" for d in diffs]
    if final["problems"]:
        lines += ["", "## Final check problems", ""]
        lines += [f"- {p['kind']}: {p['path']} {p['detail']}" for p in final["problems"]]
    others = [p for e in log for p in e["other_problems"]]
    if others:
        lines += ["", "## Problems after kills", ""] + [f"- {p}" for p in others]
    data = {"sizes": sizes, "kills": log, "check_exit": exit_code, "final_check": final,
            "differences": diffs, "final_integrity": final_integrity}  # fmt: skip
    harness.write_results(out.stem, lines, data, directory=out.parent, quiet=True)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
