"""Which runtime embeds: `--runtime auto|torch|onnx` and `--dtype auto|fp32|fp16|bf16|int8`.

`auto` on a CPU is ONNX Runtime, in int8 when the accuracy gate passes (onnx_runtime.py), else
fp32; on a GPU it is torch (fp16). A library keeps one precision: int8 vectors and float
vectors never mix in it (fp32 from torch and from ONNX Runtime agree to 1e-6 and do mix). When
ONNX Runtime cannot serve a model (a timm checkpoint, no onnxruntime, an export that fails),
torch does, with one line saying why.
"""

import itertools
import logging
import os
import sys

import numpy as np

from indexer import model, onnx_runtime
from indexer.config import DEFAULT_MAX_PIXELS, DTYPES, RUNTIMES
from indexer.decode_pool import Isolation, decode_all, default_workers
from indexer.errors import BadQuery, ModelMismatch
from indexer.files import walk

log = logging.getLogger(__name__)


def load(
    text: str,
    device: str = "auto",
    dtype: str = "auto",
    runtime: str = "auto",
    library: str | None = None,
    sample_roots: list[str] | None = None,
):
    """The embedder for --model `text`. `library` is the precision the library already holds
    ("int8", "float"; None for a new one); `sample_roots` give the int8 gate its real photos."""
    if runtime not in RUNTIMES:
        raise BadQuery(f"--runtime: one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if dtype not in DTYPES:
        raise BadQuery(f"--dtype: one of {', '.join(DTYPES)}, not {dtype!r}")
    refuse_mixing(dtype, library)
    gpu = device not in ("auto", "cpu") or (device == "auto" and _gpu_likely())
    if runtime == "torch" or (runtime == "auto" and (gpu or dtype in ("fp16", "bf16"))):
        if dtype == "int8" or library == "int8":
            raise BadQuery("int8 runs on ONNX Runtime: use --runtime onnx (or auto) on the CPU")
        return model.load(text, device, dtype)
    if gpu:
        raise BadQuery("--runtime onnx runs on the CPU here: drop --device, or use --runtime torch")
    if dtype in ("fp16", "bf16"):
        raise BadQuery(f"--runtime onnx runs fp32 or int8, not {dtype}")
    spec = model.resolve(text)
    want = "int8" if dtype == "int8" or (dtype == "auto" and library != "float") else "fp32"
    loaded = None
    if onnx_runtime.weights_file(spec) is None and spec.backend == "hf":
        loaded = model.load(text, "cpu", "fp32")  # fetches the weights, or says why it can't
    try:
        return _onnx(spec, want, library, sample_roots, loaded)
    except onnx_runtime.OnnxUnavailable as exc:
        if runtime == "onnx" or library == "int8" or dtype == "int8":
            raise exc
        log.warning("dinosearch: %s; embedding with torch instead", exc)
        return loaded or model.load(text, device, "fp32")


def _onnx(spec, want: str, library: str | None, sample_roots, loaded):
    if want == "fp32":
        return onnx_runtime.load(spec, "fp32", loaded=loaded)
    try:
        sample = lambda: _sample_pixels(spec, sample_roots)  # noqa: E731
        return onnx_runtime.load(spec, "int8", sample, loaded)
    except onnx_runtime.GateFailed as exc:
        if library == "int8":
            raise
        log.warning("dinosearch: %s; using fp32", exc)
        return onnx_runtime.load(spec, "fp32", loaded=loaded)


def import_backend(runtime: str = "auto", device: str = "auto") -> None:
    """Import the libraries the embedder will need (torch + transformers: ~2 s; onnxruntime:
    0.2 s), e.g. in a server's start-up thread before it takes any lock."""
    if runtime == "torch" or device not in ("auto", "cpu") or (device == "auto" and _gpu_likely()):
        import torch  # noqa: F401  1.4 s: the point of this function
        import transformers  # noqa: F401  0.7 s: likewise
    else:
        import onnxruntime  # noqa: F401  0.2 s: likewise


def refuse_mixing(dtype: str, library: str | None) -> None:
    if library is None or dtype == "auto":
        return
    if (dtype == "int8") != (library == "int8"):
        held = "int8" if library == "int8" else "float (fp32/fp16/bf16)"
        raise ModelMismatch(
            f"this library holds {held} vectors; --dtype {dtype} would mix precisions. "
            "Drop --dtype to keep the library's, or index into another --index"
        )


def _gpu_likely() -> bool:
    """A CUDA or Apple GPU torch would pick, told without importing torch (1.4 s)."""
    if sys.platform == "darwin":
        return os.uname().machine == "arm64"
    return os.path.exists("/dev/nvidiactl")


def _sample_pixels(spec, roots: list[str] | None) -> np.ndarray:
    """Up to GATE_IMAGES photos under the roots being indexed, decoded for the model (in the
    worker pool, with its limits: a hostile file costs a skipped sample, never the process)."""
    recipe = model.local_recipe(spec.source)
    paths = [f.path for f in itertools.islice(walk(roots or []), 4 * onnx_runtime.GATE_IMAGES)]
    pixels = []
    if recipe and paths:
        decoded = decode_all(paths, recipe, DEFAULT_MAX_PIXELS, default_workers(), Isolation())
        pixels = [item.decoded.pixels for item in decoded if item.decoded is not None]
    if not pixels:
        raise onnx_runtime.OnnxUnavailable("int8 needs photos to check its accuracy on; none")
    return np.stack(pixels[: onnx_runtime.GATE_IMAGES])
