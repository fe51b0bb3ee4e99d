"""Files -> decoded pixels (in worker processes) -> batched CLS vectors (in this process).

Decoding runs ahead in a pool while the model works on the previous batch, with a bounded number
of files in flight so memory stays flat however large the collection.
"""

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.config import DEFAULT_DECODE_MEMORY_BYTES, DEFAULT_DECODE_TIMEOUT_S
from indexer.decode import Decoded, Recipe, decode_file, set_heif_threads
from indexer.errors import ImageError
from indexer.files import HEIF_EXTENSIONS

IN_FLIGHT_PER_WORKER = 8  # files queued per decode worker: enough to hide decode jitter
# Decoded pixels held ahead of the model, however few workers: when decoding starts first it
# runs through the model's load time (~5 s, ~150 12-MP JPEGs here) instead of stealing cores from
# the forward pass later. A 224 px image is 150 KB: 64 MiB is ~440 of them (~80 at 518 px).
PREFETCH_BYTES = 64 << 20
# The worker's own alarm cuts a slow decode between two of the decoder's chunks; the parent waits
# this much longer before it decides the worker is stuck inside native code (or dead) and kills it.
BACKSTOP_GRACE_S = 5.0
# Files whose decode, not the model, sets the pace (HEIC: HEVC in software, ~1 s a 12 MP file)
DECODE_BOUND_EXTENSIONS = HEIF_EXTENSIONS
FREED = np.zeros(0, np.uint8)  # what an embedded item's pixels become: their memory given back


@dataclass
class Embedded:
    path: str
    decoded: Decoded | None
    vector: np.ndarray | None = None
    error: str | None = None


class DecodeTimeout(BaseException):
    """Raised by the alarm inside a worker whose decode ran past its time limit.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` in a decoder or in
    our EXIF reading swallows it and lets the slow decode carry on."""


def too_slow(timeout_s: float) -> str:
    return (
        f"decoding took longer than {timeout_s:g}s; skipped "
        "(raise --decode-timeout if this file is just huge)"
    )


def _on_alarm(signum, frame):
    raise DecodeTimeout


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise DecodeTimeout in this thread once `seconds` of wall time have passed.

    The limit counts the decode itself, wherever the caller is: a file's fate must not depend
    on when the parent got round to waiting for it (it may be loading the model meanwhile).
    Python checks the alarm between the decoder's chunks, so a decoder stuck in native code is
    left to the parent's backstop. Without SIGALRM (Windows) or off the main thread: no limit.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not seconds or not usable:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decode_task(path: str, recipe: Recipe, max_pixels: int | None, timeout_s: float | None = None):
    """Runs in a worker: never raises for a bad image, returns its reason instead."""
    return guarded_decode(decode_file, path, recipe, max_pixels, timeout_s)


def guarded_decode(decode: Callable, source, recipe: Recipe, max_pixels, timeout_s):
    """(Decoded, None) or (None, reason) from `decode(source, ...)` within the time limit; a
    decoder bug costs one file, never the job (local workers and Ray tasks alike)."""
    try:
        with time_limit(timeout_s):
            return decode(source, recipe, max_pixels), None
    except DecodeTimeout:
        return None, too_slow(timeout_s)
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # a decoder bug must cost one file, never the job
        return None, f"unexpected decoder error: {type(exc).__name__}: {exc}"


def default_workers(paths: Sequence[str] = ()) -> int:
    """Decode processes: one per core beyond the first, which the model's threads keep busy;
    one per core when most files are HEIC, whose decode (~1 s a 12-MP file) leaves the model
    idle most of the time (bench/results/perf_runtime_heic*.md)."""
    cores = os.cpu_count() or 2
    if paths and 2 * sum(decode_bound(p) for p in paths) >= len(paths):
        return cores
    return max(1, cores - 1)


def decode_bound(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in DECODE_BOUND_EXTENSIONS


def heif_threads(workers: int) -> int:
    """libheif's threads per worker (it decodes a grid's tiles in parallel): the cores shared
    out, so that one worker alone still uses them all on a phone's tiled HEIC."""
    return max(1, (os.cpu_count() or 2) // max(1, workers))


def _init_worker(limit_bytes: int | None, threads: int) -> None:
    """Worker initializer: libheif's thread count, and the memory cap."""
    set_heif_threads(threads)
    _limit_memory(limit_bytes)


def _limit_memory(limit_bytes: int | None) -> None:
    """Cap the address space so a memory blow-up fails one file."""
    if not limit_bytes:
        return
    try:
        import resource  # POSIX only: not importable on Windows

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ImportError, ValueError, OSError):  # not on this platform: no cap
        pass


@dataclass
class Isolation:
    """Per-file limits for decoding in worker processes."""

    timeout_s: float = DEFAULT_DECODE_TIMEOUT_S
    memory_bytes: int | None = DEFAULT_DECODE_MEMORY_BYTES


class DecodePool:
    """Worker processes that can be killed: a hang or a crash costs one file, not the job.

    multiprocessing.Pool replaces a worker that dies, but the task it held never returns, so
    both a hang and a native crash show up as a file exceeding its time limit; the pool is then
    terminated and restarted, and the other files in flight are submitted again.
    """

    def __init__(self, workers: int, isolation: Isolation):
        self.workers, self.isolation = workers, isolation
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        self.ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(["indexer.decode"])
        self.pool = self._start()

    def _start(self):
        limits = (self.isolation.memory_bytes, heif_threads(self.workers))
        return self.ctx.Pool(self.workers, _init_worker, limits)

    def submit(self, path: str, recipe: Recipe, max_pixels: int | None):
        args = (path, recipe, max_pixels, self.isolation.timeout_s)
        return self.pool.apply_async(decode_task, args)

    def restart(self) -> None:
        self.pool.terminate()
        self.pool.join()
        self.pool = self._start()

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


class DecodeStream:
    """Files decoded in order by `workers` processes, starting as soon as it is made.

    Work begins in the constructor, so the caller can load the model meanwhile (start-up is ~15 %
    of a 200-image run on 2 cores). Iterate it once; close it (or use `with`) in any case.
    """

    def __init__(
        self,
        paths: Iterable[str],
        recipe: Recipe,
        max_pixels: int | None,
        workers: int,
        isolation: Isolation | None = None,
    ):
        self.recipe, self.max_pixels, self.workers = recipe, max_pixels, workers
        self.isolation = isolation or Isolation()
        self.pending = iter(paths)
        self.window: deque = deque()
        self.pool = DecodePool(workers, self.isolation) if workers > 0 else None
        height, width = recipe.input_size
        ahead = PREFETCH_BYTES // (height * width * 3)
        self.in_flight = max(workers * IN_FLIGHT_PER_WORKER, ahead)
        self._fill()

    def __enter__(self) -> "DecodeStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _submit(self, path: str):
        if self.pool is None:
            raise RuntimeError("the decode pool is closed")
        return self.pool.submit(path, self.recipe, self.max_pixels)

    def _fill(self) -> None:
        while self.pool is not None and len(self.window) < self.in_flight:
            path = next(self.pending, None)
            if path is None:
                return
            self.window.append((path, self._submit(path)))

    def __iter__(self) -> Iterator[Embedded]:
        if self.pool is None:  # workers=0: in this process, no limits
            for path in self.pending:
                decoded, error = decode_task(path, self.recipe, self.max_pixels)
                yield Embedded(path, decoded, error=error)
            return
        try:
            while self.window:
                path, result = self.window.popleft()
                decoded, error = self._result(result)
                self._fill()
                yield Embedded(path, decoded, error=error)
        finally:
            self.close()

    def _result(self, result):
        timeout = self.isolation.timeout_s
        try:
            return result.get(timeout=timeout + BACKSTOP_GRACE_S)
        except multiprocessing.TimeoutError:
            # A hang or a native crash: restart the pool and resubmit what had not finished.
            done = [(p, r) for p, r in self.window if r.ready()]
            redo = [p for p, r in self.window if not r.ready()]
            self.pool.restart()
            self.window.clear()
            self.window.extend(done)
            self.window.extend((p, self._submit(p)) for p in redo)
            return None, (
                f"decoding took longer than {timeout:g}s or crashed the decoder; skipped "
                "(raise --decode-timeout if this file is just huge)"
            )


def decode_all(
    paths: Iterable[str],
    recipe: Recipe,
    max_pixels: int | None,
    workers: int,
    isolation: Isolation | None = None,
) -> Iterator[Embedded]:
    """Decode files in order, `workers` processes at a time (0 = in this process, no limits)."""
    with DecodeStream(paths, recipe, max_pixels, workers, isolation) as stream:
        yield from stream


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
    ok = [(item, item.decoded) for item in batch if item.decoded is not None]
    if ok:
        vectors = embed(np.stack([decoded.pixels for _, decoded in ok]))
        for (item, decoded), vector in zip(ok, vectors, strict=True):
            item.vector = vector
            decoded.pixels = FREED  # free the pixels once embedded
    return batch
