"""Which runtime embeds: `--runtime auto|torch|onnx` and `--dtype auto|fp32|fp16|bf16|int8`.

`auto` on a CPU is ONNX Runtime, in int8 when the accuracy gate passes (onnx_runtime.py), else
fp32; on a GPU it is torch (fp16). A library keeps one precision: int8 vectors and float
vectors never mix in it (fp32 from torch and from ONNX Runtime agree to 1e-6 and do mix). When
ONNX Runtime cannot serve a model (a timm checkpoint, no onnxruntime, an export that fails),
torch does, with one line saying why.
"""

import dataclasses
import itertools
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from indexer import model, onnx_runtime, privacy
from indexer.config import DEFAULT_MAX_PIXELS, DTYPES, RUNTIMES
from indexer.decode import Recipe
from indexer.decode_pool import Isolation, decode_all, default_workers
from indexer.errors import BadQuery, ModelMismatch
from indexer.files import walk

log = logging.getLogger(__name__)
FAST_MODEL_TYPES = ("dinov2", "dinov2_with_registers")  # position embeddings interpolate
FAST_SHORTEST_EDGE, FAST_CROP = 224, 196  # 14 x 14 patches instead of 16 x 16


def load(
    text: str,
    device: str = "auto",
    dtype: str = "auto",
    runtime: str = "auto",
    library: str | None = None,
    sample_roots: list[str] | None = None,
    fast: bool = False,
    held_gate: dict | None = None,
):
    """The embedder for --model `text`. `library` is the precision the library already holds
    ("int8", "float"; None for a new one); `sample_roots` give the int8 gate its real photos;
    `fast`: the smaller input (fast_recipe) of a `--fast` library; `held_gate`: the gate an int8
    library's record carries (it is not measured again)."""
    if runtime not in RUNTIMES:
        raise BadQuery(f"--runtime: one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if dtype not in DTYPES:
        raise BadQuery(f"--dtype: one of {', '.join(DTYPES)}, not {dtype!r}")
    refuse_mixing(dtype, library)
    recipe = fast_recipe(model.resolve(text)) if fast else None
    embedder = _load(text, device, dtype, runtime, library, sample_roots, recipe, held_gate)
    if recipe is not None:
        embedder.recipe, embedder.fast = recipe, True
    return embedder


def keeps_fast(record: dict | None, asked: bool, library) -> bool:
    """A library keeps the input size it was made with: --fast on a full-size one is refused."""
    held = bool(record and record.get("fast"))
    if record is not None and asked and not held:
        raise ModelMismatch(
            f"library {library} was embedded at the full input size; --fast would mix sizes. "
            "Drop --fast, or index into another --index"
        )
    return held or asked


def fast_recipe(spec) -> Recipe:
    """`--fast`: DINOv2 at 196 px (shorter side 224, centre crop 196) instead of 224 (256/224):
    1.35x less compute a forward pass for the same pair F1 (-0.0004) and query recall@1 (+0.004)
    on the near-duplicate set (bench/results/resolution_study.md). DINOv2 interpolates its
    position embeddings; other models are refused."""
    config = config_on_disk(spec)
    recipe = model.local_recipe(spec.source)
    if not config or config.get("model_type") not in FAST_MODEL_TYPES or recipe is None:
        raise BadQuery(f"--fast is measured for DINOv2 checkpoints only, not {spec.id}")
    return dataclasses.replace(
        recipe, shortest_edge=FAST_SHORTEST_EDGE, crop=(FAST_CROP, FAST_CROP)
    )


def config_on_disk(spec) -> dict | None:
    """The checkpoint's config.json from a local directory or the hub cache (no network)."""
    path = Path(spec.source) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache  # 0.4 s (its HTTP stack)

            cached = try_to_load_from_cache(spec.source, "config.json")
        except Exception:  # not a hub id
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load(text, device, dtype, runtime, library, sample_roots, recipe, held_gate):
    gpu = _on_gpu(device)
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
        return _onnx(spec, want, library, sample_roots, loaded, recipe, held_gate)
    except onnx_runtime.OnnxUnavailable as exc:
        if runtime == "onnx" or library == "int8" or dtype == "int8":
            raise exc
        log.warning("dinosearch: %s; embedding with torch instead", exc)
        return loaded or model.load(text, device, "fp32")


def _onnx(spec, want: str, library: str | None, sample_roots, loaded, recipe, held_gate):
    if want == "fp32":
        return onnx_runtime.load(spec, "fp32", loaded=loaded, recipe=recipe)
    try:
        sample = lambda: _sample_pixels(spec, sample_roots, recipe)  # noqa: E731
        held = held_gate if library == "int8" else None
        return onnx_runtime.load(spec, "int8", sample, loaded, recipe, held)
    except onnx_runtime.GateFailed as exc:
        if library == "int8":
            raise
        log.warning("dinosearch: %s; using fp32", exc)
        return onnx_runtime.load(spec, "fp32", loaded=loaded, recipe=recipe)


def import_backend(runtime: str = "auto", device: str = "auto") -> None:
    """Import the libraries the embedder will need (torch + transformers: ~2 s; onnxruntime:
    0.2 s), e.g. in a server's start-up thread before it takes any lock."""
    if runtime == "torch" or _on_gpu(device):
        import torch  # noqa: F401  1.4 s: the point of this function
        import transformers  # noqa: F401  0.7 s: likewise
    else:
        privacy.onnxruntime()  # 0.2 s: likewise (its telemetry off)


def refuse_mixing(dtype: str, library: str | None) -> None:
    if library is None or dtype == "auto":
        return
    if (dtype == "int8") != (library == "int8"):
        held = "int8" if library == "int8" else "float (fp32/fp16/bf16)"
        raise ModelMismatch(
            f"this library holds {held} vectors; --dtype {dtype} would mix precisions. "
            "Drop --dtype to keep the library's, or index into another --index"
        )


def _on_gpu(device: str) -> bool:
    """--device names a GPU, or auto finds one (told without importing torch)."""
    return device not in ("auto", "cpu") or (device == "auto" and _gpu_likely())


def _gpu_likely() -> bool:
    """A CUDA or Apple GPU torch would pick, told without importing torch (1.4 s)."""
    if sys.platform == "darwin":
        return os.uname().machine == "arm64"
    return os.path.exists("/dev/nvidiactl")


def _sample_pixels(spec, roots: list[str] | None, recipe=None) -> np.ndarray:
    """Up to GATE_IMAGES photos under the roots being indexed, decoded for the model (in the
    worker pool, with its limits: a hostile file costs a skipped sample, never the process)."""
    recipe = recipe or model.local_recipe(spec.source)
    paths = [f.path for f in itertools.islice(walk(roots or []), 4 * onnx_runtime.GATE_IMAGES)]
    pixels = []
    if recipe and paths:
        decoded = decode_all(paths, recipe, DEFAULT_MAX_PIXELS, default_workers(), Isolation())
        pixels = [item.decoded.pixels for item in decoded if item.decoded is not None]
    if not pixels:
        raise onnx_runtime.OnnxUnavailable("int8 needs photos to check its accuracy on; none")
    return np.stack(pixels[: onnx_runtime.GATE_IMAGES])
