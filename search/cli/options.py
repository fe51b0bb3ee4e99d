"""What every command shares: options defined once, JSON output, and the way to the facade."""

import json
import os

import click

from indexer.config import DTYPES, ENV_INDEX, ENV_MODEL, RUNTIMES
from indexer.errors import BadQuery


def library_option(default: str = "per-user data dir"):
    """`--index DIR` (env DINOSEARCH_INDEX); `default` says where it falls back to."""
    return click.option(
        "--index",
        "index_dir",
        envvar=ENV_INDEX,
        type=click.Path(file_okay=False),
        help=f"Library directory [env {ENV_INDEX}; default: {default}].",
    )


library_options = library_option()


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def model_options(f):
    f = click.option(
        "--dtype",
        type=click.Choice(DTYPES),
        default="auto",
        show_default=True,
        help="Inference precision (auto: the library's; new: int8 on CPU if it passes the "
        "accuracy gate, else fp32; fp16 on GPU).",
    )(f)
    f = click.option(
        "--runtime",
        type=click.Choice(RUNTIMES),
        default="auto",
        show_default=True,
        help="What runs the model (auto: ONNX Runtime on CPU, torch on GPU).",
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
        "cluster else a local one. Put it last or give a value (docs/operations.md: Beyond one "
        "machine).",
    )(f)


def wait_option(f):
    return click.option(
        "--wait",
        "wait_for_writer",
        is_flag=True,
        help="If another process is writing the library, wait for it instead of stopping.",
    )(f)


def waits_for_writer(coll, wait: bool) -> None:
    """With --wait, a busy library is waited for (saying once for whom) instead of refused."""
    if wait:
        coll.writer_wait = None
        coll.on_writer_wait = lambda who: click.echo(
            f"waiting: pid {who.get('pid', '?')} ({who.get('doing', '?')}) has been writing "
            f"the library since {who.get('since', '?')}",
            err=True,
        )


def check_writable(path: str | None) -> None:
    """A clear error now for an output file that cannot be written (not after a long run)."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadQuery(f"cannot write {path}: folder {folder} does not exist")
    if os.path.isdir(path) or not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise BadQuery(f"cannot write {path}: not a writable file")


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def collection(index_dir=None, model=None, device="auto", dtype="auto", runtime="auto", fast=False):
    """The library's facade. Imported here, on first use: it costs ~0.7 s (sqlite-utils, FAISS,
    Pillow), and `--help` or a usage error answers in 0.06 s without it."""
    from search.collection import Collection  # ~0.7 s: see above

    return Collection(index_dir, model, device, dtype, runtime=runtime, fast=fast)


class LocalPath(click.Path):
    """A local path; an object-store URI gets the way to index it instead of "does not exist"."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "://" in value:
            self.fail(
                f"{value}: dinosearch lists and hashes files on the local filesystem only. Mount "
                "the bucket (e.g. mountpoint-s3, gcsfuse) and index the mount; with --ray, mount "
                "it at the same path on every worker (docs/operations.md: Beyond one machine)",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)
