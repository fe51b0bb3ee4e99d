"""Exact (IndexFlatIP) vs HNSW vs IVF-PQ, through the product's search.knn.VectorIndex, at 100k
and 1M realistic 384-d vectors (harness.realistic_vectors): build time, bytes per vector,
single and batched query latency p50/p99, recall@10 against exact, HNSW efSearch trade-offs, and
IVF-PQ with its candidates re-scored from the exact vectors (as a library does from its
memory-mapped vector file).

Queries are library vectors moved to cosine ~0.9 (an image similar to one in the library).

    python bench/search_speed.py [--quick] [--sizes 100000,1000000]
"""

import time

import faiss
import harness
import numpy as np

from search import knn

K = 10


def queries_near(vectors: np.ndarray, count: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = np.array(vectors[rng.choice(len(vectors), count, replace=False)])
    q += rng.standard_normal(q.shape, dtype=np.float32) * (0.48 / np.sqrt(q.shape[1]))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def latencies_ms(index: knn.VectorIndex, queries: np.ndarray) -> dict:
    single = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], K)
        single.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    _, ids = index.search(queries, K)
    batched = 1000 * (time.perf_counter() - t) / len(queries)
    return {
        "p50": float(np.percentile(single, 50)),
        "p99": float(np.percentile(single, 99)),
        "batched_per_query": batched,
        "ids": ids,
    }


def index_bytes(index: knn.VectorIndex) -> int:
    return int(faiss.serialize_index(index.index).size)  # IDMap2 or IVF-PQ: the whole index


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def bench_size(
    n: int, nq: int, ef_values: list[int], hnsw: bool = True, ivf_settings=()
) -> tuple[dict, list]:
    vectors, _ = harness.vectors_cached(n)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.arange(n, dtype=np.int64)
    queries = queries_near(vectors, nq)
    out, rows = {}, []
    flat = knn.VectorIndex.build(ids, vectors, "flat", 0)
    lat = latencies_ms(flat, queries)
    truth = lat.pop("ids")
    out["flat"] = {"build_s": flat.build_seconds, "bytes_per_vector": index_bytes(flat) / n, **lat}
    rows.append(
        [
            n,
            "flat (exact)",
            "-",
            flat.build_seconds,
            out["flat"]["bytes_per_vector"],
            lat["p50"],
            lat["p99"],
            lat["batched_per_query"],
            1.0,
        ]
    )
    del flat
    ivf = knn.VectorIndex.build(ids, vectors, "ivfpq", 0)
    ivf.exact = lambda wanted: vectors[wanted]  # ids are row numbers here
    lists, m = knn.ivfpq_shape(n, vectors.shape[1])
    size = index_bytes(ivf) / n
    out["ivfpq"] = {"build_s": ivf.build_seconds, "bytes_per_vector": size, "settings": {}}
    shipped = (knn.IVFPQ_NPROBE, knn.IVFPQ_CANDIDATES)
    inner = faiss.extract_index_ivf(ivf.index)
    for nprobe, candidates in sorted(set(ivf_settings) | {shipped}):
        inner.nprobe, knn.IVFPQ_CANDIDATES = nprobe, candidates
        lat = latencies_ms(ivf, queries)
        r = recall(lat.pop("ids"), truth)
        out["ivfpq"]["settings"][f"{nprobe}/{candidates}"] = {**lat, "recall_at_10": r}
        mark = " (shipped)" if (nprobe, candidates) == shipped else ""
        rows.append(
            [
                n,
                f"ivfpq IVF{lists},PQ{m} + re-rank {candidates}",
                f"nprobe {nprobe}{mark}",
                ivf.build_seconds,
                size,
                lat["p50"],
                lat["p99"],
                lat["batched_per_query"],
                r,
            ]
        )
        print(rows[-1], flush=True)
    inner.nprobe, knn.IVFPQ_CANDIDATES = shipped
    del ivf
    if not hnsw:
        return out, rows
    hnsw = knn.VectorIndex.build(ids, vectors, "hnsw", 0)
    size = index_bytes(hnsw) / n
    out["hnsw"] = {"build_s": hnsw.build_seconds, "bytes_per_vector": size, "ef": {}}
    inner = hnsw.index.index
    inner = faiss.downcast_index(inner)
    for ef in ef_values:
        inner.hnsw.efSearch = ef
        lat = latencies_ms(hnsw, queries)
        r = recall(lat.pop("ids"), truth)
        out["hnsw"]["ef"][ef] = {**lat, "recall_at_10": r}
        name = f"hnsw M={knn.HNSW_M} efC={knn.HNSW_EF_CONSTRUCTION}"
        shipped = " (shipped)" if ef == knn.HNSW_EF_SEARCH else ""
        rows.append(
            [
                n,
                name,
                f"{ef}{shipped}",
                hnsw.build_seconds,
                size,
                lat["p50"],
                lat["p99"],
                lat["batched_per_query"],
                r,
            ]
        )
        print(rows[-1], flush=True)
    return out, rows


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 20k vectors")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--ef", default="32,64,128,256")
    ap.add_argument("--name", default="search_speed", help="results file: perf_<name>.*")
    ap.add_argument("--no-hnsw", action="store_true", help="skip HNSW (its 1M build is ~10 min)")
    ap.add_argument(
        "--ivf", default="", help="IVF-PQ nprobe/candidates pairs to try, e.g. 128/100,256/200"
    )
    args = ap.parse_args()
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    ef_values = [int(e) for e in args.ef.split(",")]
    data, rows = {}, []
    for n in sizes:
        ivf = [tuple(int(x) for x in s.split("/")) for s in args.ivf.split(",") if s]
        data[n], r = bench_size(
            n, 50 if args.quick else args.queries, ef_values, not args.no_hnsw, ivf
        )
        rows += r
    md = (
        f"{args.queries} queries (library vectors moved to cosine ~0.9), k={K}, faiss "
        f"{_faiss_version()} with {_threads()} threads, through `search.knn.VectorIndex`. "
        "Latency in ms; recall@10 against exact.\n\n"
        + harness.table(
            [
                "vectors",
                "index",
                "efSearch",
                "build s",
                "bytes/vector",
                "p50 ms",
                "p99 ms",
                "batched ms/query",
                "recall@10",
            ],
            rows,
        )
    )
    harness.write_results(f"perf_{args.name}", md, {"quick": args.quick, "sizes": data})


def _faiss_version() -> str:
    return faiss.__version__


def _threads() -> int:
    return faiss.omp_get_max_threads()


if __name__ == "__main__":
    main()
