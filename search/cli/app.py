"""The command line: each command parses options, calls the Collection facade, renders the result.

Heavy libraries (torch, transformers, faiss) are imported inside commands so --help stays instant.
"""

import json
import os
import sys

import click

from indexer.config import DB_NAME, DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS, ENV_MODEL
from indexer.errors import BadQuery, DinosearchError
from search.cli.cleanup import apply_cmd, undo_cmd
from search.cli.export import export
from search.cli.options import json_option, library_options
from search.cli.serve import serve
from search.cli.upkeep import check


class Group(click.Group):
    """Turns our errors into one readable line and an exit status; never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # one line, as every other error, with where to look
            hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            ctx.exit(exc.exit_code)
        except DinosearchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: everything committed so far is kept; re-run to continue", err=True
            )
            ctx.exit(130)


def model_options(f):
    f = click.option(
        "--dtype",
        type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
        default="auto",
        show_default=True,
        help="Inference precision (auto: fp32 on CPU, fp16 on GPU).",
    )(f)
    f = click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda", "mps"]),
        default="auto",
        show_default=True,
    )(f)
    f = click.option(
        "--model",
        "-m",
        envvar=ENV_MODEL,
        help="Registry name, Hugging Face id, timm/<name>, or local dir/file "
        "[default: the library's model, else dinov2-small].",
    )(f)
    return f


def ray_option(f):
    return click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="auto",
        default=None,
        metavar="[ADDRESS]",
        help="Run on a Ray cluster: ADDRESS (ray://head:10001, head:6379) or, bare, the running "
        "cluster else a local one. Put it last or give a value (README: Beyond one machine).",
    )(f)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def collection(index_dir, model=None, device="auto", dtype="auto"):
    from search.collection import Collection

    return Collection(index_dir, model=model, device=device, dtype=dtype)


class LocalPath(click.Path):
    """A local path; an object-store URI gets the way to index it instead of "does not exist"."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "://" in value:
            self.fail(
                f"{value}: dinosearch lists and hashes files on the local filesystem only. Mount "
                "the bucket (e.g. mountpoint-s3, gcsfuse) and index the mount; with --ray, mount "
                "it at the same path on every worker (README: Beyond one machine)",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dinosearch")
def cli():
    """dinosearch: find similar and duplicate images with DINOv2, locally."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=LocalPath(exists=True))
@library_options
@model_options
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1))
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
    show_default=True,
    type=click.IntRange(0),
    help="Refuse images claiming more pixels (decompression bombs); 0 = no limit.",
)
@click.option("--retry-failed", is_flag=True, help="Try files that failed before again.")
@click.option(
    "--decode-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds one file may take to decode before it is skipped.",
)
@click.option(
    "--decode-memory",
    default=4096,
    show_default=True,
    type=click.IntRange(0),
    help="MiB of address space per decode worker (0: no cap).",
)
@click.option(
    "--index-type",
    type=click.Choice(["auto", "flat", "hnsw", "ivfpq"]),
    default=None,
    help="FAISS index, kept for the library: auto = exact up to 200k vectors, HNSW up to 5M, "
    "IVF-PQ (re-ranked with the exact vectors) above.",
)
@ray_option
@json_option
def index(
    paths,
    index_dir,
    model,
    device,
    dtype,
    batch_size,
    workers,
    exclude,
    include_hidden,
    max_pixels,
    retry_failed,
    decode_timeout,
    decode_memory,
    index_type,
    ray_address,
    as_json,
):
    """Embed the images under PATHS into the library (incremental and resumable).

    \b
    Example:
        dinosearch index ~/Pictures --exclude '*/thumbnails/*'
    """
    from indexer.job import IndexOptions
    from search.cli.progress import TerminalProgress

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
    coll = collection(index_dir, model, device, dtype)
    summary = coll.index(paths, options, progress, index_type)
    progress.finish()
    if as_json:
        return emit_json(summary.to_json())
    for failure in summary.failed:
        click.echo(f"skipped {failure['path']}: {failure['error']}", err=True)
    click.echo(
        f"{summary.indexed} indexed ({summary.embedded} embedded), {summary.unchanged} unchanged, "
        f"{summary.moved} moved, {summary.removed} removed, {len(summary.failed)} failed "
        f"in {summary.seconds:.1f}s with {summary.model or 'no model needed'}"
    )
    if (coll.directory / DB_NAME).exists():
        click.echo(f"library: {coll.directory}")
    else:
        click.echo(f"no library made at {coll.directory}: nothing was embedded")


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-k", default=10, show_default=True, type=click.IntRange(1), help="How many results.")
@click.option("--within", type=click.Path(), help="Only results under this folder.")
@library_options
@model_options
@json_option
def query(images, k, within, index_dir, model, device, dtype, as_json):
    """Find the indexed images most similar to IMAGES (several: their mean).

    \b
    Example:
        dinosearch query cat.jpg -k 5
    """
    coll = collection(index_dir, model, device, dtype)
    result = coll.query(list(images), k=k, within=within)
    if as_json:
        return emit_json(result.to_json())
    click.echo(f"{'rank':>4}  {'score':>6}  path")
    for hit in result.results:
        click.echo(f"{hit.rank:>4}  {hit.score:6.3f}  {hit.path}")
    if not result.results:
        click.echo(
            "(no results: the library is empty or nothing lies --within that folder)", err=True
        )


@cli.command()
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
    click.echo(f"size:    {data['bytes'] / 1e6:.1f} MB")
    c = data["calibration"]
    if c:
        click.echo(
            f"dups:    threshold {c['threshold']:.4f} ({c['normalisation']}), precision "
            f"{c['precision']:.3f}, recall {c['recall']:.3f} on {c['sample']} sampled images"
        )
    else:
        click.echo("dups:    not calibrated yet (dinosearch calibrate, or the first dups run)")


@cli.command()
@click.option(
    "--threshold",
    default="auto",
    show_default=True,
    metavar="auto|FLOAT",
    help="auto: calibrated on this library (whitened scores); a number: raw cosine.",
)
@click.option(
    "--precision",
    default=0.99,
    show_default=True,
    type=click.FloatRange(0.5, 1.0),
    help="Target precision for --threshold auto.",
)
@click.option("--within", type=click.Path(), help="Only images under this folder.")
@click.option(
    "--against",
    multiple=True,
    type=click.Path(exists=True),
    help="Which images under PATH already have a duplicate in the library.",
)
@click.option(
    "--of", "of", type=click.Path(exists=True, dir_okay=False), help="Duplicates of one image."
)
@click.option("--include-similar", is_flag=True, help="Also report 'similar' groups (bursts).")
@click.option("--similar-threshold", type=float, help="Score for the 'similar' tier.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write rows to FILE.")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False),
    help="Write an editable plan for `dinosearch apply` (JSON; a .csv name: CSV).",
)
@click.option(
    "--keep",
    "keep_policy",
    metavar="POLICY",
    help="Keep-best policy, e.g. 'resolution > largest-file > oldest', or a policy file.",
)
@click.option(
    "--action",
    type=click.Choice(["trash", "move", "hardlink", "symlink", "delete"]),
    default="trash",
    show_default=True,
    help="What the plan does with each duplicate.",
)
@click.option("--move-to", type=click.Path(file_okay=False), help="Destination of --action move.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write a self-contained review page (thumbnails, kept file and why).",
)
@click.option(
    "--mark-distinct",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False),
    metavar="A B",
    help="Record that A and B are not duplicates (by content: survives renames), then exit.",
)
@click.option(
    "--keep-both",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False),
    metavar="A B",
    help="Record that A and B are duplicates to keep both of, then exit.",
)
@library_options
@ray_option
@json_option
def dups(
    threshold,
    precision,
    within,
    against,
    of,
    include_similar,
    similar_threshold,
    csv_path,
    plan_path,
    keep_policy,
    action,
    move_to,
    html_path,
    mark_distinct,
    keep_both,
    index_dir,
    ray_address,
    as_json,
):
    """Find duplicate groups: exact, pixels, copy (and similar with --include-similar).

    \b
    Examples:
        dinosearch dups
        dinosearch dups --against ~/new-sd-card --json
        dinosearch dups --threshold 0.95 --csv dups.csv
        dinosearch dups --plan plan.json --html review.html --keep 'resolution > oldest'
    """
    from search.cleanup.policy import parse_policy
    from search.cli.progress import TerminalProgress
    from search.dups.run import DupOptions

    if mark_distinct or keep_both:
        return _mark_decisions(index_dir, mark_distinct, keep_both, as_json)
    for path in (csv_path, plan_path, html_path):
        _check_writable(path)  # before the run, not after minutes of work
    policy = parse_policy(keep_policy) if plan_path or html_path else None

    options = DupOptions(
        threshold=threshold,
        precision=precision,
        within=within,
        against=tuple(against),
        of=of,
        include_similar=include_similar,
        similar_threshold=similar_threshold,
        ray=ray_address,
    )
    progress = TerminalProgress(enabled=False if as_json else None)
    coll = collection(index_dir)
    if (copies := coll.calibration_due(options)) and not as_json:
        click.echo(
            f"calibrating the threshold on this library first: {copies} known copies of its own "
            "photos to embed (once; stored for later runs). A fixed --threshold, e.g. 0.95, "
            "skips this",
            err=True,
        )
    report = coll.duplicates(options, progress)
    progress.finish()
    if csv_path:
        report.write_csv(csv_path)
    if policy is not None:
        _write_plan(coll, report, policy, action, move_to, plan_path, html_path)
    if as_json:
        return emit_json(report.to_json())
    _print_dups(report)


def _check_writable(path: str | None) -> None:
    """A clear error now for an output file that cannot be written."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadQuery(f"cannot write {path}: folder {folder} does not exist")
    if os.path.isdir(path) or not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise BadQuery(f"cannot write {path}: not a writable file")


def _mark_decisions(index_dir, distinct, keep_both, as_json) -> None:
    from search.dups.decisions import mark

    store = collection(index_dir).store()
    store.require_writable("recording a decision")
    pairs = [(distinct, "distinct"), (keep_both, "keep-both")]
    done = [mark(store, a, b, kind) for (a, b), kind in ((p, k) for p, k in pairs if p)]
    if as_json:
        return emit_json({"decisions": done})
    for d in done:
        click.echo(f"recorded {d['kind']}: {d['a']}  {d['b']} (later dups runs respect it)")


def _write_plan(coll, report, policy, action, move_to, plan_path, html_path) -> None:
    from search.cleanup.plan import build_plan
    from search.cleanup.report_html import write_html

    plan = build_plan(report, coll.store(), policy, action, move_to)
    if plan_path and plan_path.lower().endswith(".csv"):
        plan.write_csv(plan_path)
    elif plan_path:
        plan.write(plan_path)
    if html_path:
        write_html(plan, html_path)
    counts = ", ".join(f"{n} {a}" for a, n in plan.summary()["actions"].items() if n)
    written = " and ".join(p for p in (plan_path, html_path) if p)
    click.echo(f"plan {plan.id[:8]} ({counts or 'no groups'}) written to {written}", err=True)


NEW_SHOWN = 20  # new files listed after a --against run (all of them with --json)


def _how(member: dict) -> str:
    """How a member matched, in a few words: `copy 0.99`, `copy (crop)`, `exact`."""
    if member["verified"]:
        return f"{member['match']} ({member['verified']})"
    if member["confidence"] is not None and member["match"] in ("copy", "similar"):
        return f"{member['match']} {member['confidence']:.2f}"
    return member["match"]


def _print_dups(report) -> None:
    data = report.to_json()
    for number, group in enumerate(data["groups"], 1):
        click.echo(f"group {number} [{group['tier']}]")
        first = group["members"][0]["path"]
        for m in group["members"]:
            size = f"{m['width']}x{m['height']}" if m["width"] else ""
            twin = m["twin_of"] or m["via"]
            of = f"  (of {os.path.basename(twin)})" if twin and twin != first else ""
            click.echo(f"  {m['score']:6.3f}  {_how(m):<15}  {size:>11}  {m['path']}{of}")
    stats = data["stats"]
    how = "calibrated" if stats["mode"] == "auto" else "cosine"
    groups = f"{stats['groups']} group{'' if stats['groups'] == 1 else 's'}"
    click.echo(
        f"{groups}, {stats['duplicates']} duplicates among "
        f"{stats['images']} images (threshold {data['threshold']:.3f}, {how}) "
        f"in {stats['seconds']:.1f}s"
    )
    if "checked" in stats:  # --against / --of: say what is new, not only what is known
        new = data["new"]
        click.echo(
            f"{stats['checked']} checked: {stats['checked'] - len(new)} already in the library, "
            f"{len(new)} new" + (":" if new else "")
        )
        for path in new[:NEW_SHOWN]:
            click.echo(f"  new  {path}")
        if len(new) > NEW_SHOWN:
            click.echo(f"  ... and {len(new) - NEW_SHOWN} more (--json lists them all)")


@cli.command()
@click.option(
    "--sample",
    type=click.IntRange(2),
    help="Library images to make known copies of (15 copies each) "
    "[default: one per 20 indexed images, 8 to 60].",
)
@click.option("--precision", default=0.99, show_default=True, type=click.FloatRange(0.5, 1.0))
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Which images are sampled and how they are copied (another seed: another sample).",
)
@library_options
@json_option
def calibrate(sample, precision, seed, index_dir, as_json):
    """Calibrate the duplicate threshold on this library's own photos.

    \b
    Example:
        dinosearch calibrate --sample 200
    """
    from search.cli.progress import TerminalProgress

    progress = TerminalProgress(enabled=False if as_json else None)
    result = collection(index_dir).calibrate(precision, sample, progress, seed)
    progress.finish()
    data = result.to_json()
    if as_json:
        return emit_json(data)
    click.echo(
        f"model {data['model']}, {data['images']} images, {data['sample']} sampled, "
        f"{data['positives']} known copies vs {data['negatives']} nearest distinct images"
    )
    click.echo(f"scores: {data['normalisation']}")
    click.echo(f"{'threshold':>9}  {'precision':>9}  {'recall':>6}")
    for row in data["table"]:
        click.echo(f"{row['threshold']:9.4f}  {row['precision']:9.4f}  {row['recall']:6.4f}")
    click.echo(
        f"chosen threshold {data['threshold']:.4f}: precision {data['precision']:.4f}, "
        f"recall {data['recall']:.4f} (target precision {precision})"
    )
    click.echo(
        "recall per transform: "
        + ", ".join(f"{k} {v:.2f}" for k, v in data["per_transform_recall"].items())
    )


cli.add_command(apply_cmd)
cli.add_command(undo_cmd)
cli.add_command(export)
cli.add_command(serve)
cli.add_command(check)


def main() -> None:
    cli(prog_name="dinosearch")


if __name__ == "__main__":
    sys.exit(main())
