"""What every command shares: options defined once, JSON output, and the way to the facade."""

import json
import os

import click

from indexer.config import (
    DEFAULT_PRECISION,
    DEVICES,
    DTYPES,
    ENV_INDEX,
    ENV_MODEL,
    PRECISION_RANGE,
    RUNTIMES,
)
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


# The model's choices (flag, the library's constant, help), shown in this order; each defaults to
# its constant's first choice, "auto"
MODEL_CHOICES = (
    ("--device", DEVICES, "Where torch runs the model."),
    ("--runtime", RUNTIMES, "What runs the model (auto: ONNX Runtime on CPU, torch on GPU)."),
    (
        "--dtype",
        DTYPES,
        "Inference precision (auto: the library's; new: int8 on CPU if it passes the "
        "accuracy gate, else fp32; fp16 on GPU).",
    ),
)


def model_options(f):
    """`--model`, `--device`, `--runtime`, `--dtype`: every command that loads the model."""
    for flag, choices, text in reversed(MODEL_CHOICES):  # click lists the last applied first
        f = click.option(flag, type=click.Choice(choices), default=choices[0], help=text)(f)
    f = click.option(
        "--model",
        "-m",
        envvar=ENV_MODEL,
        help="Registry name, Hugging Face id, timm/<name>, or local dir/file "
        "[default: the library's model, else dinov2-small].",
    )(f)
    return f


def within_option(what: str = "images"):
    """`--within FOLDER`: the scope of a command that reads the library."""
    return click.option("--within", type=click.Path(), help=f"Only {what} under this folder.")


def threshold_option(auto: str):
    """`--threshold auto|FLOAT`; `auto` says what the calibrated level is."""
    return click.option(
        "--threshold",
        default="auto",
        metavar="auto|FLOAT",
        help=f"auto: {auto} (whitened scores); a number: raw cosine.",
    )


def precision_option(f):
    """`--precision`: the target `--threshold auto` (and `calibrate`) is fitted to."""
    return click.option(
        "--precision",
        default=DEFAULT_PRECISION,
        type=click.FloatRange(*PRECISION_RANGE),
        help="Target precision of the calibrated threshold.",
    )(f)


def output_option(name: str, dest: str, help: str):
    """An output FILE the command writes (checked writable before the run: check_writable)."""
    return click.option(name, dest, type=click.Path(dir_okay=False), help=help)


def files_pair_option(name: str, help: str):
    """An option naming two existing files, `A B`."""
    return click.option(
        name, nargs=2, type=click.Path(exists=True, dir_okay=False), metavar="A B", help=help
    )


def folders_option(name: str, dest: str, help: str):
    """A repeatable option naming existing folders."""
    return click.option(
        name, dest, multiple=True, type=click.Path(exists=True, file_okay=False), help=help
    )


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
