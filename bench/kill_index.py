"""SIGKILL `dinosearch index` at random moments on a real folder; after each kill check the
library (PRAGMA integrity_check + search.upkeep.check), resume, and finally compare with an
uninterrupted run: ids, vectors and neighbours must not differ.

    python bench/kill_index.py [--kills 20] [--seed 1] [--out bench/results/reliability_kill.md]

Needs a model: the tiny test checkpoint is put into a private HF cache (as the tests do), unless
--real-cache is given (then the normal cache and facebook/dinov2-small are used).
"""

import argparse
import json
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from indexer.library.store import Store  # noqa: E402
from search.collection import Collection  # noqa: E402
from search.upkeep.check import check_library  # noqa: E402
from tests.checkpoints import populate_hub_cache  # noqa: E402
from tests.helpers import index_command  # noqa: E402

SHARED = ROOT.parent / "shared" / "testdata"
FOLDERS = [SHARED / "photos", SHARED / "photos-more"]
# After a kill only the derived FAISS file may lag (a query or the next run rebuilds it).
DERIVED = {"index_stale", "index_missing", "index_mismatch", "temp_file", "stale_index_file"}


def index_cmd(library: Path) -> list[str]:
    return index_command(library, *FOLDERS)


def run_to_end(library: Path) -> float:
    started = time.perf_counter()
    subprocess.run(index_cmd(library), cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def rows(library: Path) -> dict:
    store = Store.open(library)
    try:
        got = store.all_images()
    finally:
        store.close()
    return {r["path"]: (r["id"], r["hash"], r["status"], r["vector"]) for r in got}


def integrity(library: Path) -> str:
    if not (library / "library.db").exists():
        return "ok (no database yet)"
    with sqlite3.connect(library / "library.db") as conn:
        return conn.execute("pragma integrity_check").fetchone()[0]


def kill_once(library: Path, delay: float) -> tuple[bool, int]:
    """Start a run, SIGKILL it after `delay` s; (killed?, rows committed at the kill)."""
    proc = subprocess.Popen(
        index_cmd(library), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=delay)
        return False, len(rows(library))
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return True, len(rows(library)) if (library / "library.db").exists() else 0


def neighbours(library: Path, k: int = 5) -> dict[str, list[str]]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/reliability_kill.md")
    parser.add_argument("--real-cache", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dinosearch-kill-"))
    if not args.real_cache:
        os.environ.update(
            HF_HOME=str(work / "hf"), HF_HUB_CACHE=str(work / "hf/hub"), HF_HUB_OFFLINE="1"
        )
        populate_hub_cache(work / "hf/hub")
    reference, library = work / "reference", work / "killed"
    full = run_to_end(reference)
    rng = random.Random(args.seed)
    log, kills, rounds = [], 0, 1
    while kills < args.kills:
        delay = rng.uniform(0.3, full * 0.95)
        killed, committed = kill_once(library, delay)
        report = check_library(library) if (library / "library.db").exists() else None
        bad = [p.to_json() for p in (report.problems if report else []) if p.kind not in DERIVED]
        log.append(
            {
                "round": rounds,
                "delay_s": round(delay, 2),
                "killed": killed,
                "rows": committed,
                "integrity": integrity(library),
                "derived_problems": sorted({p.kind for p in report.problems} & DERIVED)
                if report
                else [],
                "other_problems": bad,
            }
        )
        print(json.dumps(log[-1]), file=sys.stderr)
        if killed:
            kills += 1
        else:  # finished before the kill: start again from nothing
            rounds += 1
            shutil.rmtree(library)
    run_to_end(library)  # resume to the end
    final = check_library(library)
    diffs = compare(reference, library)
    write_report(args.out, log, full, final, diffs, rows(reference))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if not diffs and final.ok and all(e["integrity"].startswith("ok") for e in log) else 1


def write_report(out: Path, log, full, final, diffs, ref_rows) -> None:
    kills = [e for e in log if e["killed"]]
    lines = [
        "# Reliability: SIGKILL during `dinosearch index`",
        "",
        f"Folder: `shared/testdata/photos` + `photos-more` ({len(ref_rows)} files), tiny "
        f"real-architecture DINOv2 (test checkpoint), `--batch-size 2 --workers 1`. "
        f"Uninterrupted run: {full:.1f} s. Generated by `bench/kill_index.py`.",
        "",
        f"- kills landed mid-run: **{len(kills)}** (plus {len(log) - len(kills)} runs that "
        "finished before their kill moment)",
        f"- `PRAGMA integrity_check` not ok after a kill: "
        f"**{sum(not e['integrity'].startswith('ok') for e in log)}**",
        f"- row-level problems found by `check` after a kill (anything but the derived "
        f"index lagging): **{sum(bool(e['other_problems']) for e in log)}**",
        f"- after the final resume: `check` {'clean' if final.ok else 'NOT clean'}; "
        f"differences from the uninterrupted run (ids, hashes, status, vectors, top-5 "
        f"neighbours): **{len(diffs)}**",
        "",
        "| # | round | kill at (s) | killed | rows committed | integrity | derived index |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, e in enumerate(log, 1):
        lines.append(
            f"| {n} | {e['round']} | {e['delay_s']} | {'yes' if e['killed'] else 'finished'} | "
            f"{e['rows']} | {e['integrity']} | {', '.join(e['derived_problems']) or 'agrees'} |"
        )
    if diffs:
        lines += ["", "## Differences", ""] + [f"- {d}" for d in diffs]
    if not final.ok:
        lines += ["", "## Final check problems", ""]
        lines += [f"- {p.kind}: {p.path} {p.detail}" for p in final.problems]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
