"""What the library does at 1M-10M images: store measurements and an IVF-PQ index study.

Store part: generated rows (paths, stats, hashes, 384-d float32 vectors) written through
`indexer.library.store.Store.write_rows` in batches, then, each in a fresh process: open time, the
incremental run's `known_under` scan, `Store.vectors()` (the memory map), a pass that reads every
vector (what a FAISS build or dups costs on top), and peak RSS. A 10M-row library with vectors
needs ~23 GB of disk (15.4 GB of them the vector file). Results are kept per layout: "blobs"
(vectors inside the SQLite rows, before schema m004; measured with that code) and "file" (the
memory-mapped vector file, today's).

Index part: IVF-PQ on 1M realistic vectors (bench/harness.realistic_vectors): recall@10
against exact search, bytes per vector, and the same index built as 4 shards merged into on-disk
inverted lists and memory-mapped.

    python bench/store_scale.py store --rows 1000000
    python bench/store_scale.py store --rows 10000000
    python bench/store_scale.py ivfpq --rows 1000000
    python bench/store_scale.py report          # -> bench/results/scale_store.md
    python bench/store_scale.py store --quick   # smoke run: 20,000 rows (also `ivfpq --quick`)

Every run adds its figures to bench/results/scale_store.json (keyed by part and size) and
rewrites scale_store.md from them (its "## Analysis" part is kept). Generated files go under
bench/work/scale-* and are deleted at the end of each run.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness
import numpy as np
from harness import DIM, WORK, machine, realistic_vectors, table

from indexer.library.rows import ImageRow, ModelInfo
from indexer.library.store import Store

WRITE_BATCH_ROWS = 2000  # bulk simulation: rows per write_rows transaction
PRODUCT_BATCH_ROWS = 16  # the indexer's own batch (DEFAULT_BATCH_SIZE): the incremental rate
INCREMENTAL_ROWS = 4000  # rows appended at the product's batch size to a full store
ROOT = "/photos"
RERANK_CANDIDATES = 100  # PQ candidates per query re-scored with the exact float32 vectors
NAME = "scale_store"  # bench/results/scale_store.{json,md}


def generated_rows(start: int, count: int, rng, vectors: bool) -> list:
    """Rows shaped like a photo library: 1000 files per folder, random hashes and vectors."""
    vecs = rng.standard_normal((count, DIM), dtype=np.float32) if vectors else None
    if vecs is not None:
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    hashes = rng.bytes(32 * count)
    rows = []
    for k in range(count):
        i = start + k
        rows.append(
            ImageRow(
                f"{ROOT}/{i // 1000:05d}/IMG_{i:08d}.jpg",
                int(2_000_000 + i % 3_000_000),
                1_600_000_000_000_000_000 + i * 1_000_000_000,
                hashes[32 * k : 32 * k + 32].hex(),
                "ok",
                None,
                4032,
                3024,
                "JPEG",
                "2021-07-14T10:22:31",
                vecs[k].tobytes() if vecs is not None else None,
            )
        )
    return rows


def fill(directory: Path, rows: int, vectors: bool) -> dict:
    """Write `rows` generated rows in WRITE_BATCH_ROWS transactions; returns rates."""
    store = Store.open(directory, create=True)
    store.bind_model(ModelInfo("facebook/dinov2-small", DIM, "{}"))
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, rows, WRITE_BATCH_ROWS):
        store.write_rows(generated_rows(start, min(WRITE_BATCH_ROWS, rows - start), rng, vectors))
    bulk = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(rows, rows + INCREMENTAL_ROWS, PRODUCT_BATCH_ROWS):
        store.write_rows(generated_rows(start, PRODUCT_BATCH_ROWS, rng, vectors))
    incremental = time.perf_counter() - started
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return {
        "bulk_rows_per_s": rows / bulk,
        "bulk_seconds": bulk,
        "incremental_rows_per_s": INCREMENTAL_ROWS / incremental,
    }


def measure_child(directory: str, vectors: bool) -> None:
    """In a fresh process: open, known_under, vectors(); prints one JSON line."""
    out = {}
    t = time.perf_counter()
    store = Store.open(directory)
    out["open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out["known_under_rows"] = len(store.known_under([ROOT]))
    out["known_under_s"] = time.perf_counter() - t
    out["rss_after_known_under_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if vectors:
        t = time.perf_counter()
        ids, vecs = store.vectors()
        out["vectors_s"] = time.perf_counter() - t
        out["vectors_shape"] = list(vecs.shape)
        t = time.perf_counter()
        total = 0.0
        for i in range(0, len(vecs), 65536):  # touch every vector, as a FAISS build would
            total += float(vecs[i : i + 65536].sum())
        out["read_all_s"] = time.perf_counter() - t
        out["anon_rss_mb"] = _anon_rss_mb()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _anon_rss_mb() -> float | None:
    """Private memory of this process (Linux): a memory map's pages are the page cache's, not
    counted here, and the kernel drops them under pressure."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def bench_store(rows: int, vectors: bool) -> dict:
    directory = WORK / f"scale-store-{rows}"
    shutil.rmtree(directory, ignore_errors=True)
    try:
        result = {"rows": rows, "vectors": vectors, "layout": "file"}
        result.update(fill(directory, rows, vectors))
        result["db_bytes"] = sum(p.stat().st_size for p in directory.glob("library.db*"))
        result["vector_file_bytes"] = sum(p.stat().st_size for p in directory.glob("vectors-*.f32"))
        # each measurement in its own process: open time and RSS are a cold start's
        child = [sys.executable, __file__, "measure", str(directory)]
        child += [] if vectors else ["--no-vectors"]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        result.update(json.loads(done.stdout.strip().splitlines()[-1]))
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- IVF-PQ ---------------------------------------------------------------------------------------


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss  # not at module level: the `measure` children's peak RSS would grow 12 MB

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    return index.search(queries, k)[1]


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def train_ivfpq(base: np.ndarray, nlist: int, m: int, train_rows: int):
    import faiss  # not at module level: the `measure` children's peak RSS would grow 12 MB

    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFPQ(quantizer, DIM, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    sample = base[np.random.default_rng(1).choice(len(base), train_rows, replace=False)]
    index.train(np.ascontiguousarray(sample))
    return index


def sharded_mmap(trained, base: np.ndarray, shards: int, directory: Path):
    """Build `shards` indexes from one trained index, merge their lists on disk, mmap the result."""
    import faiss  # not at module level: the `measure` children's peak RSS would grow 12 MB
    from faiss.contrib.ondisk import merge_ondisk  # as faiss above

    names = []
    for s, part in enumerate(np.array_split(np.arange(len(base)), shards)):
        shard = faiss.clone_index(trained)
        shard.add_with_ids(np.ascontiguousarray(base[part]), part.astype(np.int64))
        names.append(str(directory / f"shard{s}.index"))
        faiss.write_index(shard, names[-1])
        del shard
    empty = faiss.clone_index(trained)
    merge_ondisk(empty, names, str(directory / "merged.ivfdata"))
    faiss.write_index(empty, str(directory / "merged.index"))
    # the inverted lists stay in merged.ivfdata, which OnDiskInvertedLists memory-maps
    return faiss.read_index(str(directory / "merged.index"))


def rerank(base: np.ndarray, q: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Exact scores for each query's PQ candidates (rows read from the float32 vectors), top k."""
    out = np.empty((len(q), k), np.int64)
    for i, cand in enumerate(candidates):
        cand = cand[cand >= 0]
        scores = base[cand] @ q[i]
        out[i] = cand[np.argsort(-scores)[:k]]
    return out


def search_recall(index, nprobe: int, base: np.ndarray, q: np.ndarray, truth: np.ndarray) -> dict:
    """recall@10 of PQ codes alone, and of PQ top-RERANK_CANDIDATES re-ranked exactly."""
    index.nprobe = nprobe
    t = time.perf_counter()
    found = index.search(q, 10)[1]
    pq_ms = (time.perf_counter() - t) / len(q) * 1e3
    t = time.perf_counter()
    refined = rerank(base, q, index.search(q, RERANK_CANDIDATES)[1], 10)
    rerank_ms = (time.perf_counter() - t) / len(q) * 1e3
    return {
        "recall@10": recall_at(found, truth),
        "ms": pq_ms,
        "recall@10_reranked": recall_at(refined, truth),
        "ms_reranked": rerank_ms,
    }


def bench_ivfpq(rows: int, nlist: int, m: int, queries: int) -> dict:
    vectors, _ = realistic_vectors(rows + queries, seed=3, dup_fraction=0.0)
    base, q = vectors[:rows], np.ascontiguousarray(vectors[rows:])  # queries: same distribution
    t = time.perf_counter()
    truth = exact_top(base, q, 10)
    exact_s = time.perf_counter() - t
    t = time.perf_counter()
    index = train_ivfpq(base, nlist, m, min(rows, 40 * nlist))
    train_s = time.perf_counter() - t
    directory = WORK / f"scale-ivfpq-{rows}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        t = time.perf_counter()
        mapped = sharded_mmap(index, base, 4, directory)
        build_s = time.perf_counter() - t
        disk = sum(p.stat().st_size for p in directory.glob("merged.*"))
        result = {"rows": rows, "nlist": nlist, "m": m, "queries": queries, "exact_s": exact_s}
        result |= {"train_s": train_s, "build_merge_s": build_s, "disk_bytes": disk}
        result["bytes_per_vector"] = disk / rows
        result["code_bytes_per_vector"] = m + 8  # PQ code + int64 id in the inverted lists
        result["recall"] = {}
        for nprobe in (8, 32, 128):
            result["recall"][nprobe] = search_recall(mapped, nprobe, base, q, truth)
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------------

ANALYSIS_MARK = "## Analysis"  # everything from this heading on is kept when the tables are redone
TARGET_ROWS = 10_000_000


def store_table(runs: list[dict]) -> str:
    """Every measured run (layout, rows); a blobs run is also scaled linearly to TARGET_ROWS."""
    head = ["layout", "rows", "SQLite GB", "vector file GB", "bulk rows/s", "incr. rows/s"]
    head += ["open s", "known_under s", "vectors() s", "read all s", "private RSS GB"]
    head += ["peak RSS GB"]
    rows = []
    for r in sorted(runs, key=lambda r: (r.get("layout", "blobs"), r["rows"])):
        rows.append(_store_row(r, 1.0, str(r["rows"])))
        if r.get("layout", "blobs") == "blobs" and r["rows"] < TARGET_ROWS:
            scale = TARGET_ROWS / r["rows"]
            rows.append(_store_row(r, scale, f"{TARGET_ROWS} (x{scale:g}, extrapolated)"))
    return table(head, rows)


def _store_row(r: dict, scale: float, label: str) -> list:
    anon = r.get("anon_rss_mb")
    return [
        r.get("layout", "blobs"),
        label,
        r["db_bytes"] * scale / 1e9,
        r.get("vector_file_bytes", 0) * scale / 1e9,
        r["bulk_rows_per_s"],
        r["incremental_rows_per_s"],
        r["open_s"],
        r["known_under_s"] * scale,
        r.get("vectors_s", 0) * scale,
        r.get("read_all_s", "-") if scale == 1.0 else "-",
        "-" if anon is None else anon * scale / 1024,
        r["peak_rss_mb"] * scale / 1024,
    ]


def ivfpq_table(r: dict) -> str:
    head = ["nprobe", "recall@10 PQ", "ms/query", f"recall@10 PQ top-{RERANK_CANDIDATES} re-ranked"]
    head += ["ms/query", "index bytes/vector", f"index at {TARGET_ROWS // 10**6}M"]
    per = r["bytes_per_vector"]
    rows = [
        [p, v["recall@10"], v["ms"], v.get("recall@10_reranked", "-"), v.get("ms_reranked", "-")]
        + [per, f"{per * TARGET_ROWS / 1e9:.2f} GB"]
        for p, v in r["recall"].items()
    ]
    return table(head, rows)


def write_report(data: dict) -> None:
    runs = [v for k, v in data.items() if k.startswith("store-")]
    ivf = [v for k, v in data.items() if k.startswith("ivfpq-")]
    md = "# The store at 1M-10M images (simulated)\n\n"
    md += "Each run's own machine record is in scale_store.json beside its figures; the cores are "
    md += "shared. Generated by `bench/store_scale.py` (its docstring says how).\n\n"
    md += "## The store: vectors in SQLite blobs (before m004) and in the vector file\n\n"
    md += store_table(runs) + "\n"
    for r in ivf:
        md += f"## IVF{r['nlist']},PQ{r['m']} at {r['rows']} rows (4 shards merged, mmapped)\n\n"
        md += f"Train {r['train_s']:.0f} s, build + merge {r['build_merge_s']:.0f} s, "
        md += f"exact ground truth {r['exact_s']:.0f} s for {r['queries']} queries.\n\n"
        md += ivfpq_table(r) + "\n"
    report = harness.results_dir() / f"{NAME}.md"
    old = report.read_text() if report.exists() else ""
    keep = old[old.index(ANALYSIS_MARK) :] if ANALYSIS_MARK in old else ANALYSIS_MARK + "\n"
    harness.write_results(NAME, md + keep, data)


def load_results() -> dict:
    """The figures of every run so far (key -> figures with their own machine record)."""
    data = harness.read_results(NAME) or {}
    return {k: v for k, v in data.items() if k.startswith(("store-", "ivfpq-"))}


def save_result(key: str, value: dict) -> None:
    data = load_results()
    data[key] = {**value, "machine": machine()}
    print(json.dumps(value, indent=1))
    write_report(data)


def main() -> None:
    parser = harness.parser(__doc__, quick="smoke run: 20,000 rows (ivfpq: nlist 64, 200 queries)")
    parser.add_argument("what", choices=["store", "ivfpq", "measure", "report"])
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-vectors", action="store_true")
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--m", type=int, default=48)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.nlist, args.queries = 20_000, 64, 200
    if args.what == "measure":
        return measure_child(args.directory, not args.no_vectors)
    if args.what == "store":
        key = f"store-{args.rows}-{'meta' if args.no_vectors else 'vectors'}-file"
        return save_result(key, bench_store(args.rows, not args.no_vectors))
    if args.what == "ivfpq":
        key = f"ivfpq-{args.rows}-m{args.m}"
        return save_result(key, bench_ivfpq(args.rows, args.nlist, args.m, args.queries))
    write_report(load_results())


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
