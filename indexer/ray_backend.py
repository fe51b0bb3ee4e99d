"""Embedding on a Ray cluster: the same decode, model and runtime as a local run, spread over
workers (the driver's embedder record travels to the actors: ONNX Runtime int8 with its gate and
scales where the local run would use it).

The driver lists the files (the incremental plan is unchanged); Ray Data reads and decodes them in
tasks with `decode_file`, an actor pool of model replicas embeds them (one GPU per actor when the
cluster has GPUs), and batches stream back to the driver, which stays the library's only writer.
Paths must be readable by every worker under the same name: a shared filesystem mounted at the same
place, or an object-store URI (s3://, gs://) that pyarrow can open (README: "Beyond one machine").
"""

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from indexer import onnx_runtime, privacy, runtime
from indexer.decode import Decoded, Recipe, decode_bytes
from indexer.decode_pool import FREED, Embedded, guarded_decode
from indexer.errors import DinosearchError, RuntimeUnavailable
from indexer.model import load

DECODE_BLOCK_FILES = 32  # files per decode task: big enough to amortise task overhead
CPUS_PER_GPU_ACTOR = 1.0
# what workers started by connect() inherit: the model caches (the ONNX export's too)
HF_ENV = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    onnx_runtime.ENV_CACHE,
)
READ_HINT = (
    "every Ray worker must see the same path (shared filesystem mounted at the same place, or "
    "an s3:// / gs:// URI); see the README, 'Beyond one machine'"
)


_COLUMN_TYPES = {"width": np.int64, "height": np.int64}


class RayUnavailable(RuntimeUnavailable):
    """Ray is not installed, or the cluster cannot be reached."""

    exit_code = 2


class RayJobFailed(DinosearchError):
    """A Ray task or actor failed past its retries (e.g. a worker cannot load the model)."""


@dataclass(frozen=True)
class Layout:
    """How many model replicas, and what each holds."""

    actors: int
    num_gpus: float
    num_cpus: float  # per actor, and per decode task
    threads: int  # torch threads per CPU actor


def connect(address: str | None = "auto") -> None:
    """Join the Ray cluster at address ("auto": the running one or a new local one)."""
    try:
        import ray  # optional extra (dinosearch[ray])
    except ImportError:
        raise RayUnavailable(
            "--ray needs Ray: pip install 'dinosearch[ray]' (ray[data] and pyarrow)"
        ) from None
    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in HF_ENV if k in os.environ} | privacy.OFFLINE_ENV
    target = None if address in (None, "", "auto") else address
    try:
        ray.init(address=target, runtime_env={"env_vars": env}, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {exc}") from None


def plan_layout(actors: int | None) -> Layout:
    """Replicas from the cluster's resources: one per GPU, else one per spare CPU."""
    import ray  # optional extra (dinosearch[ray])

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), int(res.get("GPU", 0))
    if gpus:
        n = actors or gpus
        return Layout(n, 1.0, CPUS_PER_GPU_ACTOR, 1)
    n = actors or max(1, int(cpus) - 1)
    share = min(1.0, cpus / (n + 1))  # leave room for decode tasks: never a resource deadlock
    return Layout(n, 0.0, share, max(1, int(cpus // (n + 1))))


def read_bytes(path: str) -> bytes:
    """A local path or an object-store URI, as this worker sees it."""
    if "://" not in path:
        with open(path, "rb") as f:
            return f.read()
    from pyarrow import fs  # optional extra (dinosearch[ray])

    filesystem, inner = fs.FileSystem.from_uri(path)
    with filesystem.open_input_stream(inner) as f:
        return f.read()


def decode_on_worker(
    path: str, recipe: Recipe, max_pixels: int | None, timeout_s: float | None = None
):
    """(Decoded, None) or (None, reason); an unreadable path names this worker and the fix."""
    try:
        data = read_bytes(path)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return None, f"cannot read file on Ray worker {socket.gethostname()}: {reason}; {READ_HINT}"
    decode = partial(decode_bytes, name=path)  # a RAW is read by LibRaw, as a local worker does
    return guarded_decode(decode, data, recipe, max_pixels, timeout_s)


def decode_batch(
    batch: dict, recipe: Recipe, max_pixels: int | None, timeout_s: float | None = None
) -> dict:
    """Ray Data task: a block of paths -> fixed-shape pixels plus metadata columns."""
    paths = [str(p) for p in batch["path"]]
    h, w = recipe.input_size
    pixels = np.zeros((len(paths), h, w, 3), np.uint8)
    cols: dict[str, list] = {k: [] for k in ("width", "height", "format", "taken", "error")}
    for i, path in enumerate(paths):
        decoded, error = decode_on_worker(path, recipe, max_pixels, timeout_s)
        if decoded is not None:
            pixels[i] = decoded.pixels
        cols["width"].append(decoded.width if decoded else -1)
        cols["height"].append(decoded.height if decoded else -1)
        cols["format"].append(decoded.format if decoded else "")
        cols["taken"].append((decoded.taken or "") if decoded else "")
        cols["error"].append(error or "")
    out = {k: np.array(v, dtype=_COLUMN_TYPES.get(k, object)) for k, v in cols.items()}
    return {"path": np.array(paths, dtype=object), "pixels": pixels, **out}


class EmbedActor:
    """One model replica: loaded once per actor through the product's loader. With `record`
    (the driver's embedder.record()) it is the driver's runtime, dtype and int8 model (rebuilt
    from the record's scales where the worker has no cached file), so `index --ray` makes the
    vectors a local run makes; without, torch in `dtype` (dups --ray's and older callers')."""

    def __init__(
        self,
        model: str,
        recipe: Recipe,
        device: str,
        dtype: str,
        threads: int,
        record: dict | None = None,
    ):
        if record and record.get("runtime") == "onnx":
            onnx_runtime.OnnxEmbedder.threads = threads  # this actor's share of the node
            self.embedder = runtime.load(
                model,
                "cpu",
                record["dtype"],
                "onnx",
                "int8" if record["dtype"] == "int8" else "float",
                fast=bool(record.get("fast")),
                held=record,
            )
        else:
            import torch  # on the Ray worker: 1.4 s, only in the actor

            if device in ("auto", "cpu") and not torch.cuda.is_available():
                torch.set_num_threads(threads)
            if record:  # the driver's torch dtype (bf16 on a CPU that has it, say)
                dtype = record.get("dtype") or dtype
                fast = bool(record.get("fast"))
                self.embedder = runtime.load(model, device, dtype, "torch", fast=fast)
            else:
                self.embedder = load(model, device, dtype)
        if self.embedder.recipe != recipe:
            raise DinosearchError(
                f"the Ray worker's {model} preprocesses differently from the driver's; install "
                "the same dinosearch and model weights on every node"
            )

    def __call__(self, batch: dict) -> dict:
        ok = np.array([not e for e in batch["error"]], bool)
        vectors = np.zeros((len(ok), 0), np.float32)
        if ok.any():
            got = self.embedder.embed(batch["pixels"][ok])
            vectors = np.zeros((len(ok), got.shape[1]), np.float32)
            vectors[ok] = got
        batch.pop("pixels")
        return {**batch, "vector": vectors}


def build_dataset(
    paths: list[str],
    model: str,
    recipe: Recipe,
    options,
    layout: Layout,
    device: str,
    dtype: str,
    record: dict | None = None,
):
    """The Ray Data pipeline: paths -> decode tasks -> embedding actors (lazy, streaming)."""
    import ray.data  # optional extra (dinosearch[ray])

    quiet()
    # enough blocks to keep every replica fed, even for a small folder
    blocks = max(-(-len(paths) // DECODE_BLOCK_FILES), min(len(paths), 4 * layout.actors))
    ds: ray.data.Dataset = ray.data.from_items(
        [{"path": p} for p in paths], override_num_blocks=blocks
    )
    ds = ds.map_batches(
        decode_batch,  # type: ignore[arg-type, unused-ignore]  # ray's stubs: a one-argument fn
        batch_size=DECODE_BLOCK_FILES,
        fn_kwargs={
            "recipe": recipe,
            "max_pixels": options.max_pixels,
            "timeout_s": options.decode_timeout_s,
        },
        num_cpus=layout.num_cpus,
        # on GPU clusters (num_gpus differs) decoding stays in its own CPU tasks; on CPU-only
        # clusters Ray Data fuses it into the actors' processes, which saves shipping pixels
    )
    return ds.map_batches(
        EmbedActor,
        batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=layout.actors),
        fn_constructor_kwargs={
            "model": model,
            "recipe": recipe,
            "device": device,
            "dtype": dtype,
            "threads": layout.threads,
            "record": record,
        },
        num_gpus=layout.num_gpus,
        num_cpus=layout.num_cpus,
    )


def quiet() -> None:
    """stderr belongs to our own progress line: no Ray Data progress bars or per-stage logs."""

    import ray.data  # optional extra (dinosearch[ray])

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def to_embedded(batch: dict) -> list[Embedded]:
    """A numpy batch from the pipeline -> Embedded items (pixels dropped, as embed_batches does)."""
    out = []
    for i, path in enumerate(batch["path"]):
        error = str(batch["error"][i]) or None
        if error:
            out.append(Embedded(str(path), None, None, error))
            continue
        taken = str(batch["taken"][i]) or None
        d = Decoded(
            FREED, int(batch["width"][i]), int(batch["height"][i]), str(batch["format"][i]), taken
        )
        out.append(Embedded(str(path), d, np.asarray(batch["vector"][i], np.float32)))
    return out


def ray_embedded_batches(
    paths: list[str],
    model: str,
    recipe: Recipe,
    options,
    address: str | None,
    device: str = "auto",
    dtype: str = "auto",
    record: dict | None = None,
) -> Iterator[list[Embedded]]:
    """Embed paths on Ray; yields batches in completion order (not input order).

    `options` is an IndexOptions: batch_size, max_pixels, and `workers` as the number of model
    replicas (None: one per GPU, else one per spare CPU of the cluster). `record`: the local
    embedder's record, which the replicas load (EmbedActor); None: torch in `dtype`.
    """
    if not paths:
        return
    connect(address)
    layout = plan_layout(options.workers or None)
    ds = build_dataset(paths, model, recipe, options, layout, device, dtype, record)
    from ray.exceptions import RayError  # optional extra

    try:
        for batch in ds.iter_batches(batch_size=options.batch_size, batch_format="numpy"):
            yield to_embedded(batch)
    except RayError as exc:
        raise RayJobFailed(
            f"the Ray job stopped: {str(exc).strip().splitlines()[-1]}\nBatches written so far "
            "are kept; re-run the same command to continue (see the Ray dashboard or "
            "/tmp/ray/session_latest/logs for the worker's traceback)"
        ) from None
