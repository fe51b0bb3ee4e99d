"""Files -> decoded pixels (in worker processes) -> batched CLS vectors (in this process).

Decoding runs ahead in a pool while the model works on the previous batch, with a bounded number
of files in flight so memory stays flat however large the collection.
"""

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from .decode import Decoded, Recipe, decode_file
from .errors import ImageError

IN_FLIGHT_PER_WORKER = 8  # files queued per decode worker: enough to hide decode jitter


@dataclass
class Embedded:
    path: str
    decoded: Decoded | None
    vector: np.ndarray | None = None
    error: str | None = None


def decode_task(path: str, recipe: Recipe, max_pixels: int | None):
    """Runs in a worker: never raises for a bad image, returns its reason instead."""
    try:
        return decode_file(path, recipe, max_pixels), None
    except ImageError as exc:
        return None, str(exc)


def default_workers() -> int:
    """Decode processes: one per core beyond the first, which the model's threads keep busy."""
    return max(1, (os.cpu_count() or 2) - 1)


def _pool(workers: int) -> ProcessPoolExecutor:
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["indexer.decode"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def decode_all(
    paths: Iterable[str], recipe: Recipe, max_pixels: int | None, workers: int
) -> Iterator[Embedded]:
    """Decode files in order, `workers` processes at a time (0 = in this process)."""
    if workers <= 0:
        for path in paths:
            decoded, error = decode_task(path, recipe, max_pixels)
            yield Embedded(path, decoded, error=error)
        return
    pending = iter(paths)
    window: deque[tuple[str, Future]] = deque()
    pool = _pool(workers)
    try:

        def submit() -> bool:
            path = next(pending, None)
            if path is not None:
                window.append((path, pool.submit(decode_task, path, recipe, max_pixels)))
            return path is not None

        while len(window) < workers * IN_FLIGHT_PER_WORKER and submit():
            pass
        while window:
            path, future = window.popleft()
            try:
                decoded, error = future.result()
            except BrokenProcessPool:
                # A native decoder crashed a worker: that costs the files in flight their
                # parallel decode, not the job. Retry them one by one in fresh pools.
                pool.shutdown(cancel_futures=True)
                retry = [path] + [p for p, _ in window]
                window.clear()
                pool = _pool(workers)
                yield from _isolated(retry, recipe, max_pixels)
                while len(window) < workers * IN_FLIGHT_PER_WORKER and submit():
                    pass
                continue
            submit()
            yield Embedded(path, decoded, error=error)
    finally:
        pool.shutdown(cancel_futures=True)


def _isolated(paths: list[str], recipe: Recipe, max_pixels: int | None) -> Iterator[Embedded]:
    for path in paths:
        with _pool(1) as pool:
            try:
                decoded, error = pool.submit(decode_task, path, recipe, max_pixels).result()
            except BrokenProcessPool:
                decoded, error = None, "the image decoder crashed on this file"
        yield Embedded(path, decoded, error=error)


def embed_batches(
    items: Iterable[Embedded],
    embed: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
) -> Iterator[list[Embedded]]:
    """Group decoded items into batches, run the model once per batch, yield them with vectors.

    Failed items ride along in the batch they arrived in, so the output keeps input order.
    """
    batch: list[Embedded] = []
    n_ok = 0
    for item in items:
        batch.append(item)
        n_ok += item.decoded is not None
        if n_ok >= batch_size:
            yield _run(batch, embed)
            batch, n_ok = [], 0
    if batch:
        yield _run(batch, embed)


def _run(batch: list[Embedded], embed: Callable[[np.ndarray], np.ndarray]) -> list[Embedded]:
    ok = [item for item in batch if item.decoded is not None]
    if ok:
        vectors = embed(np.stack([item.decoded.pixels for item in ok]))
        for item, vector in zip(ok, vectors, strict=True):
            item.vector = vector
            item.decoded.pixels = None  # free the pixels once embedded
    return batch
