"""`dups --ray`: neighbour_pairs' work spread over Ray tasks, with the same pairs out.

Up to EXACT_SEARCH_MAX vectors the driver builds the exact range index as the local run does,
serialises it once into the object store with the vectors, and each task answers whole
QUERY_BLOCK blocks against it. Above, the driver plans the clustered join (k-means lists and
probes, seeded: the local run's plan) and each task joins a range of lists. Tasks use the
driver's thread count (BLAS rounding depends on it: scores would otherwise differ in the last bit
and a pair sitting exactly on the threshold could flip), and results are merged in the local
order, so pairs, order and scores are the local ones; grouping runs on the driver.
"""

import faiss
import numpy as np

from indexer.ray_backend import connect
from search.dups.pairs import (
    EXACT_SEARCH_MAX,
    QUERY_BLOCK,
    Pairs,
    Progress,
    join_lists,
    merge_join,
    no_pairs,
    plan_join,
    range_index,
    range_pairs,
)

# `ray` is an optional extra: the functions that need it import it themselves.

BLOCKS_PER_TASK = 4  # query blocks per task: 8192 queries, a few seconds of work on one core
LISTS_PER_TASK = 128  # clustered-join lists per task: ~64k rows x 16 probes at 1M vectors
_INDEX_CACHE: dict[str, object] = {}  # per worker process: deserialise each shipped index once


def _worker_index(ref_box: list):
    """The shipped index in this worker, deserialised on first use."""
    import ray  # optional extra

    key = ref_box[0].hex()
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()  # one dups run at a time: keep one index in memory
        _INDEX_CACHE[key] = faiss.deserialize_index(ray.get(ref_box[0]))
    return _INDEX_CACHE[key]


def search_blocks(
    ref_box: list, space: np.ndarray, start: int, stop: int, threshold: float, threads: int
) -> Pairs:
    """Ray task body: pairs (i < j) for query rows start..stop, one QUERY_BLOCK at a time."""
    faiss.omp_set_num_threads(threads)  # the driver's count: BLAS sums round the same way
    return range_pairs(_worker_index(ref_box), space, start, stop, threshold)


def ray_neighbour_pairs(
    space: np.ndarray,
    threshold: float,
    address: str | None = "auto",
    progress: Progress | None = None,
) -> Pairs:
    """Same result as pairs.neighbour_pairs, computed by Ray tasks."""
    n = space.shape[0]
    if n < 2:
        return no_pairs()
    import ray  # optional extra

    connect(address)
    space = np.ascontiguousarray(space, dtype=np.float32)
    threads = faiss.omp_get_max_threads()
    if n > EXACT_SEARCH_MAX:
        return _ray_join(space, threshold, threads, progress)
    ref_box = [ray.put(faiss.serialize_index(range_index(space)))]  # shipped once
    space_ref = ray.put(space)
    task = ray.remote(search_blocks).options(num_cpus=_task_cpus(threads))
    step = QUERY_BLOCK * BLOCKS_PER_TASK
    starts = list(range(0, n, step))
    futures = [
        task.remote(ref_box, space_ref, s, min(s + step, n), threshold, threads) for s in starts
    ]
    return _gather(futures, [min(step, n - s) for s in starts], progress, n)


def join_task(space: np.ndarray, plan, first: int, stop: int, threshold: float):
    """Ray task body: the clustered join of lists first..stop (OpenBLAS splits a product by
    output blocks, never along the summed dimension, so scores match the driver's exactly)."""
    return join_lists(space, plan, first, stop, threshold)


def _ray_join(space: np.ndarray, threshold: float, threads: int, progress) -> Pairs:
    import ray  # optional extra

    plan = plan_join(space)
    space_ref, plan_ref = ray.put(space), ray.put(plan)
    task = ray.remote(join_task).options(num_cpus=_task_cpus(threads))
    starts = list(range(0, plan.nlist, LISTS_PER_TASK))
    futures = [
        task.remote(space_ref, plan_ref, s, min(s + LISTS_PER_TASK, plan.nlist), threshold)
        for s in starts
    ]
    rows_done = [
        int(plan.member_at[min(s + LISTS_PER_TASK, plan.nlist)] - plan.member_at[s]) for s in starts
    ]
    parts = _gather(futures, rows_done, progress, len(space))
    return merge_join(len(space), *parts)


def _task_cpus(threads: int) -> float:
    """CPUs a task reserves: the driver's thread count, capped by the largest node."""
    import ray  # optional extra

    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=1)
    return float(max(1, min(threads, largest)))


def _gather(futures: list, rows_done: list[int], progress, n: int) -> Pairs:
    """Wait for every task, reporting progress (rows each covers), and concatenate in order."""
    import ray  # optional extra

    by_ref = {f.hex(): i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    pending, done = list(futures), 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        i = by_ref[ready[0].hex()]
        results[i] = ray.get(ready[0])
        done += rows_done[i]
        if progress:
            progress("dups", done, n)
    rows, cols, sims = (np.concatenate([r[k] for r in results]) for k in range(3))
    return rows, cols, sims
