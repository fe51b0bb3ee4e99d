"""`dinosearch index`, `query` and `info`: build the library, search it, describe it."""

import contextlib
import json
import signal
import time

import click

from indexer.config import (
    DB_NAME,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODE_MEMORY_BYTES,
    DEFAULT_DECODE_TIMEOUT_S,
    DEFAULT_K,
    DEFAULT_MAX_PIXELS,
    INDEX_TYPES,
)
from search.cli.options import (
    LocalPath,
    collection,
    emit_json,
    json_option,
    library_options,
    model_options,
    ray_option,
    wait_option,
    waits_for_writer,
    within_option,
)
from search.cli.progress import TerminalProgress


@click.command()
@click.argument("paths", nargs=-1, required=True, type=LocalPath(exists=True))
@library_options
@model_options
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, type=click.IntRange(1))
@click.option(
    "--workers",
    type=click.IntRange(0),
    help="Decode processes (0: decode in-process) [default: one per spare core].",
)
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching files/folders.")
@click.option("--include-hidden", is_flag=True, help="Also walk hidden files and folders.")
@click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    type=click.IntRange(0),
    help="Refuse images claiming more pixels (decompression bombs); 0 = no limit.",
)
@click.option("--retry-failed", is_flag=True, help="Try files that failed before again.")
@click.option(
    "--decode-timeout",
    default=DEFAULT_DECODE_TIMEOUT_S,
    type=click.FloatRange(0.1),
    help="Seconds one file may take to decode before it is skipped.",
)
@click.option(
    "--decode-memory",
    default=DEFAULT_DECODE_MEMORY_BYTES >> 20,
    type=click.IntRange(0),
    help="MiB of address space per decode worker (0: no cap).",
)
@click.option(
    "--index-type",
    type=click.Choice(INDEX_TYPES),
    default=None,
    help="FAISS index, kept for the library: auto = exact up to 200k vectors, HNSW up to 5M, "
    "IVF-PQ (re-ranked with the exact vectors) above.",
)
@click.option(
    "--fast",
    is_flag=True,
    help="A new library embedded at 196 px instead of 224 (DINOv2): 1.35x less compute, the "
    "same duplicate quality on our near-duplicate set; kept for the library.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="After indexing, keep watching PATHS and index what is added, changed, moved or "
    "deleted, until Ctrl-C.",
)
@click.option(
    "--watch-poll",
    is_flag=True,
    help="With --watch: look for changes every few seconds instead of being told by the OS "
    "(network shares, where inotify/FSEvents see nothing).",
)
@wait_option
@ray_option
@json_option
def index(
    paths,
    index_dir,
    model,
    device,
    dtype,
    runtime,
    batch_size,
    workers,
    exclude,
    include_hidden,
    max_pixels,
    retry_failed,
    decode_timeout,
    decode_memory,
    index_type,
    fast,
    ray_address,
    as_json,
    watch,
    watch_poll,
    wait_for_writer,
):
    """Embed the images under PATHS into the library (incremental and resumable).

    \b
    Example:
        dinosearch index ~/Pictures --exclude '*/thumbnails/*'
    """
    from search.collection import IndexOptions  # the facade's own import cost: see collection()

    options = IndexOptions(
        batch_size=batch_size,
        workers=workers,
        max_pixels=max_pixels or None,
        exclude=tuple(exclude),
        include_hidden=include_hidden,
        retry_failed=retry_failed,
        ray=ray_address,
        decode_timeout_s=decode_timeout,
        decode_memory_bytes=(decode_memory << 20) or None,
    )
    progress = TerminalProgress(enabled=False if as_json else None)
    coll = collection(index_dir, model, device, dtype, runtime, fast)
    waits_for_writer(coll, wait_for_writer)
    if watch or watch_poll:
        if ray_address:
            raise click.UsageError("--watch indexes on this machine: drop --ray")
        return _watch(coll, paths, options, progress, watch_poll, as_json, index_type)
    summary = coll.index(paths, options, progress, index_type)
    progress.finish()
    if as_json:
        return emit_json(summary.to_json())
    _print_summary(coll, summary)


def _print_summary(coll, summary, prefix: str = "") -> None:
    for failure in summary.failed:
        click.echo(f"skipped {failure['path']}: {failure['error']}", err=True)
    click.echo(
        f"{prefix}{summary.indexed} indexed ({summary.embedded} embedded), "
        f"{summary.unchanged} unchanged, {summary.moved} moved, {summary.removed} removed, "
        f"{len(summary.failed)} failed in {summary.seconds:.1f}s with "
        f"{summary.model or 'no model needed'}"
    )
    if prefix:
        return
    if (coll.directory / DB_NAME).exists():
        click.echo(f"library: {coll.directory}")
    else:
        click.echo(f"no library made at {coll.directory}: nothing was embedded")


def _watch(coll, paths, options, progress, poll, as_json, index_type) -> None:
    """index --watch: the first run, then one line (or, with --json, one JSON line) per batch."""

    def on_batch(batch, summary, error):
        progress.finish()
        stamp = time.strftime("%H:%M:%S")
        if as_json:
            line = {
                "time": stamp,
                "batch": batch.to_json() if batch else None,
                "summary": summary.to_json() if summary else None,
                "error": str(error) if error else None,
            }
            return click.echo(json.dumps(line, ensure_ascii=False))
        if batch is None:
            _print_summary(coll, summary)
            how = "polling every few seconds" if poll else "told by the OS"
            click.echo(f"watching {', '.join(paths)} ({how}); Ctrl-C to stop", err=True)
            return
        for root in batch.gone:
            click.echo(
                f"{stamp} {root} is gone (unmounted or renamed?): nothing under it is removed "
                "from the library; waiting for it to come back",
                err=True,
            )
        for root in batch.back:
            click.echo(f"{stamp} {root} is back: indexing it whole", err=True)
        if error:
            click.echo(
                f"{stamp} not indexed yet ({error}); retrying with the next change", err=True
            )
        elif summary:
            where = ", ".join(batch.roots[:3]) + (" ..." if len(batch.roots) > 3 else "")
            _print_summary(coll, summary, f"{stamp} {where}: ")

    try:
        with _terminate_as_interrupt():
            coll.watch(paths, options, progress, on_batch, poll=poll, kind=index_type)
    except KeyboardInterrupt:
        progress.finish()
        click.echo("stopped watching: everything indexed so far is kept", err=True)


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (`kill`, systemd, `docker stop`) stops a watch as Ctrl-C does. A watch started in
    the background by a script (`dinosearch index --watch &`) is deaf to Ctrl-C, since the shell
    makes it ignore SIGINT, so SIGTERM is how it is stopped."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-k", default=DEFAULT_K, type=click.IntRange(1), help="How many results.")
@within_option("results")
@click.option(
    "--rotations",
    is_flag=True,
    help="Also find the query's copies turned 90/180/270 degrees or mirrored in their pixels.",
)
@library_options
@model_options
@json_option
def query(images, k, within, rotations, index_dir, model, device, dtype, runtime, as_json):
    """Find the indexed images most similar to IMAGES (several: their mean).

    \b
    Example:
        dinosearch query cat.jpg -k 5
    """
    coll = collection(index_dir, model, device, dtype, runtime)
    result = coll.query(list(images), k=k, within=within, rotations=rotations)
    if as_json:
        return emit_json(result.to_json())
    click.echo(f"{'rank':>4}  {'score':>6}  path")
    for hit in result.results:
        turn = f"  ({hit.transform})" if getattr(hit, "transform", None) else ""  # --rotations
        click.echo(f"{hit.rank:>4}  {hit.score:6.3f}  {hit.path}{turn}")
    if not result.results:
        click.echo(
            "(no results: the library is empty or nothing lies --within that folder)", err=True
        )


@click.command()
@library_options
@json_option
def info(index_dir, as_json):
    """Describe the library: model, counts, index, size on disk.

    \b
    Example:
        dinosearch info --json
    """
    data = collection(index_dir).info()
    if as_json:
        return emit_json(data)
    click.echo(f"library: {data['library']}")
    model = f"{data['model']} ({data['dim']}-d)" if data["model"] else "none yet (nothing embedded)"
    click.echo(f"model:   {model}")
    click.echo(f"images:  {data['images']} indexed, {data['failed']} failed")
    click.echo(f"index:   {data['index']['type']}, {data['index']['vectors']} vectors")
    if rt := data["runtime"]:
        gate = rt.get("gate")
        checked = (
            f", gate: min cosine {gate['min_cosine']} to fp32 on {gate['images']} photos"
            if gate
            else ""
        )
        fast = ", --fast (196 px)" if rt.get("fast") else ""
        calls = "batched" if rt.get("batched") else "one image per call"
        quant = f" ({rt['quant']}, {calls})" if rt.get("quant") else ""
        click.echo(f"runtime: {rt['runtime']} {rt['dtype'] or ''}{quant}{fast}{checked}")
        click.echo(f"why:     {rt['why']}")
    cpu = data["cpu"]
    click.echo(f"cpu:     {cpu['model']} (int8: {cpu['int8'] or '-'}, bf16: {cpu['bf16'] or '-'})")
    click.echo(f"size:    {data['bytes'] / 1e6:.1f} MB")
    c = data["calibration"]
    if c:
        click.echo(
            f"dups:    threshold {c['threshold']:.4f} ({c['normalisation']}), precision "
            f"{c['precision']:.3f}, recall {c['recall']:.3f} on {c['sample']} sampled images"
        )
    else:
        click.echo("dups:    not calibrated yet (dinosearch calibrate, or the first dups run)")
