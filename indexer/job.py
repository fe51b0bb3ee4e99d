"""An incremental, resumable indexing run: diff disk against the library, embed what is new."""

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from indexer.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS
from indexer.decode import Recipe
from indexer.decode_pool import (
    DEFAULT_DECODE_MEMORY_BYTES,
    DEFAULT_DECODE_TIMEOUT_S,
    DecodeStream,
    Isolation,
    default_workers,
    embed_batches,
)
from indexer.files import FileStat, sha256_file, walk
from indexer.library import evidence as pixel_evidence
from indexer.library import flags
from indexer.library.rows import ImageRow, Known, ModelInfo
from indexer.library.store import Store
from indexer.model import Embedder
from indexer.ray_backend import ray_embedded_batches

HASH_THREADS = 4  # hashing is I/O bound and hashlib releases the GIL
MEASURE_BATCH = 256  # quality measures of old rows committed this many at a time

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class IndexOptions:
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None  # decode processes; None = one per spare core
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    exclude: tuple[str, ...] = ()
    include_hidden: bool = False
    retry_failed: bool = False
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S
    decode_memory_bytes: int | None = DEFAULT_DECODE_MEMORY_BYTES
    ray: str | None = None  # Ray cluster address or "auto": embed on Ray (ray_backend.py)


@dataclass
class IndexSummary:
    indexed: int = 0  # new or changed files now in the library (embedded or reused)
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    failed: list[dict] = field(default_factory=list)  # {"path", "error"} of this run
    seconds: float = 0.0
    model: str = ""
    embedded: int = 0  # of `indexed`, how many went through the model (others reused a vector)

    def to_json(self) -> dict:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "embedded": self.embedded,
        }


@dataclass
class IndexPlan:
    """What a run has to do, worked out before any model is loaded."""

    embed: list[tuple[FileStat, str]] = field(default_factory=list)  # (file, content hash)
    reuse: list[tuple[FileStat, str, dict]] = field(default_factory=list)  # copy a known vector
    moves: list[tuple[int, str, int, int]] = field(default_factory=list)
    touches: list[tuple[int, int, int]] = field(default_factory=list)
    removals: list[int] = field(default_factory=list)
    failed: list[ImageRow] = field(default_factory=list)
    unchanged: int = 0


def plan(
    store: Store, roots: list[str], options: IndexOptions, progress: Progress | None = None
) -> tuple[IndexPlan, list[dict]]:
    """Walk, diff against the library and hash what changed; returns the plan and walk errors."""
    walk_errors: list = []
    files = list(
        walk(
            roots,
            skip=[store.directory],
            exclude=options.exclude,
            include_hidden=options.include_hidden,
            errors=walk_errors,
        )
    )
    # a root that is not there (an unmounted drive) removes nothing from the library
    known = store.known_under([r for r in roots if os.path.exists(r)])
    seen = {f.path for f in files}
    result = IndexPlan()
    candidates: list[FileStat] = []
    for f in files:
        row = known.get(f.path)
        if (
            row
            and row.size == f.size
            and row.mtime_ns == f.mtime_ns
            and not (options.retry_failed and row.status == "failed")
        ):
            result.unchanged += 1
        else:
            candidates.append(f)
    gone = {
        row.hash: row
        for row in known.values()
        if row.path not in seen and row.status == "ok" and row.hash is not None
    }
    gone_ids = {row.id for row in known.values() if row.path not in seen}
    hashes = _hash_all(candidates, result, progress)
    reusable = store.rows_with_hashes(h for _, h in hashes)
    for f, digest in hashes:
        _classify(f, digest, known.get(f.path), gone, gone_ids, reusable, result)
    result.removals = sorted(gone_ids)
    errors = [{"path": e.path, "error": e.error} for e in walk_errors]
    return result, errors


def _hash_all(
    files: list[FileStat], result: IndexPlan, progress: Progress | None
) -> list[tuple[FileStat, str]]:
    out = []
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        futures = [(f, pool.submit(sha256_file, f.path)) for f in files]
        for done, (f, future) in enumerate(futures, 1):
            try:
                out.append((f, future.result()))
            except OSError as exc:
                result.failed.append(
                    ImageRow(
                        f.path,
                        f.size,
                        f.mtime_ns,
                        None,
                        "failed",
                        f"cannot read file: {exc.strerror or exc}",
                    )
                )
            if progress:
                progress("hash", done, len(futures))
    return out


def _classify(
    f: FileStat,
    digest: str,
    row: Known | None,
    gone: dict[str, Known],
    gone_ids: set[int],
    reusable: dict[str, dict],
    result: IndexPlan,
) -> None:
    if row and row.hash == digest and row.status == "ok":
        result.touches.append((row.id, f.size, f.mtime_ns))  # touched, same bytes
    elif digest in gone and row is None:
        moved = gone.pop(digest)
        gone_ids.discard(moved.id)
        result.moves.append((moved.id, f.path, f.size, f.mtime_ns))
    elif digest in reusable:
        result.reuse.append((f, digest, reusable[digest]))
    else:
        result.embed.append((f, digest))


def run(
    store: Store,
    roots: Iterable[str],
    load_embedder: Callable[[], Embedder],
    options: IndexOptions | None = None,
    progress: Progress | None = None,
    recipe_hint: Recipe | None = None,
) -> IndexSummary:
    """Index roots into the store. The model is loaded only if something needs embedding.

    With `recipe_hint` (the model's preprocessing, known without loading it) decoding starts
    first and runs while the model loads; a wrong hint only costs that head start.
    """
    started = time.perf_counter()
    options = options or IndexOptions()
    roots = [os.path.abspath(os.path.expanduser(str(r))) for r in roots]
    work, walk_errors = plan(store, roots, options, progress)
    summary = IndexSummary(
        unchanged=work.unchanged,
        moved=len(work.moves),
        removed=len(work.removals),
        failed=list(walk_errors),
    )
    store.apply_moves(work.moves, work.touches, work.removals)
    summary.indexed += _write_reused(store, work.reuse)
    store.write_rows(work.failed)
    summary.failed += [{"path": r.path, "error": r.error} for r in work.failed]
    model = store.model()
    summary.model = model.id if model else ""
    if work.embed:
        paths = [f.path for f, _ in work.embed]
        early = _decode_stream(paths, recipe_hint, options) if recipe_hint else None
        try:
            embedder = load_embedder()
            recipe = embedder.recipe.to_json()
            store.bind_model(ModelInfo(embedder.id, embedder.dim, recipe, embedder.record()))
            summary.model = embedder.id
            if early is not None and early.recipe != embedder.recipe:
                early.close()  # the hint was wrong: decode again with the model's own recipe
                early = None
            batches = _batches(paths, embedder, options, early)
            _embed_and_write(store, work.embed, batches, summary, progress)
        finally:
            if early is not None:
                early.close()
    _measure_unmeasured(store, roots, options, progress)
    store.compact_vectors()  # reclaims the vectors of removed and re-embedded files, if many
    summary.seconds = time.perf_counter() - started
    return summary


def _write_reused(store: Store, reuse: list[tuple[FileStat, str, dict]]) -> int:
    rows = [
        _ok_row(f, digest, src["width"], src["height"], src["format"], src["taken"], src["vector"])
        for f, digest, src in reuse
    ]
    store.write_rows(rows)
    return len(rows)


def _ok_row(f: FileStat, digest: str, width, height, fmt, taken, vector: bytes) -> ImageRow:
    return ImageRow(
        f.path, f.size, f.mtime_ns, digest, "ok", None, width, height, fmt, taken, vector
    )


def _embed_and_write(
    store: Store,
    todo: list[tuple[FileStat, str]],
    batches: Iterable[list],
    summary: IndexSummary,
    progress: Progress | None,
):
    by_path = {f.path: (f, digest) for f, digest in todo}
    done = 0
    for batch in batches:
        rows, measured, seen = [], [], []
        for item in batch:
            f, digest = by_path[item.path]
            if item.vector is None:
                rows.append(ImageRow(f.path, f.size, f.mtime_ns, digest, "failed", item.error))
                summary.failed.append({"path": f.path, "error": item.error})
                continue
            d = item.decoded
            vector = item.vector.astype("<f4").tobytes()
            rows.append(_ok_row(f, digest, d.width, d.height, d.format, d.taken, vector))
            if d.quality is not None:
                measured.append((digest, d.quality))
            if d.evidence is not None:
                seen.append((digest, d.evidence))
            summary.indexed += 1
            summary.embedded += 1
        store.write_rows(rows)  # one transaction per batch: a kill loses at most this batch
        flags.write(store, measured)  # a kill between these: the next run measures them
        pixel_evidence.write(store, seen)  # or the next `dups` does
        done += len(batch)
        if progress:
            progress("embed", done, len(todo))


def _measure_unmeasured(
    store: Store, roots: list[str], options: IndexOptions, progress: Progress | None
) -> None:
    """Quality measures for rows indexed before they were taken (or on a Ray cluster): those
    files alone are decoded again, without the model; a file that fails now is left for later."""
    info = store.model()
    present = [r for r in roots if os.path.exists(r)]  # an unmounted drive: nothing to read
    todo = flags.unmeasured(store, present) if info and not options.ray else []
    if not todo or info is None:
        return
    hashes = {path: digest for digest, path in {d: p for p, d in reversed(todo)}.items()}
    stream = _local_stream(list(hashes), Recipe.from_json(info.recipe), options)
    measured: list[tuple[str, dict]] = []
    with stream:
        for done, item in enumerate(stream, 1):
            if item.decoded is not None and item.decoded.quality is not None:
                measured.append((hashes[item.path], item.decoded.quality))
            if len(measured) >= MEASURE_BATCH or done == len(hashes):
                flags.write(store, measured)
                measured = []
            if progress:
                progress("measuring quality", done, len(hashes))


def _decode_stream(paths: list[str], recipe: Recipe, options: IndexOptions) -> DecodeStream | None:
    if options.ray:
        return None  # Ray workers decode on the cluster
    return _local_stream(paths, recipe, options)


def _local_stream(paths: list[str], recipe: Recipe, options: IndexOptions) -> DecodeStream:
    workers = default_workers(paths) if options.workers is None else options.workers
    isolation = Isolation(options.decode_timeout_s, options.decode_memory_bytes)
    return DecodeStream(paths, recipe, options.max_pixels, workers, isolation)


def _batches(
    paths: list[str], embedder: Embedder, options: IndexOptions, early: DecodeStream | None
):
    """Embedded batches: on a Ray cluster with --ray (any order), else locally (input order)."""
    if options.ray:
        record = embedder.record()  # the actors load this embedder: the local run's vectors
        return ray_embedded_batches(
            paths, embedder.id, embedder.recipe, options, options.ray, record=record
        )
    decoded = early or _local_stream(paths, embedder.recipe, options)
    return embed_batches(decoded, embedder.embed, options.batch_size)
