"""Which runtime embeds: `--runtime auto|torch|onnx` and `--dtype auto|fp32|fp16|bf16|int8`.

`auto` on a CPU is ONNX Runtime, in int8 when the accuracy gate passes (onnx_runtime.py), else
fp32; on a GPU it is torch (fp16). On a CPU with native bf16 (avx512_bf16, AMX, Arm bf16) a new
library takes the faster of static int8 and torch bf16, by a short probe measured once per
machine and kept in the ONNX cache (PROBE_FILE). A library keeps one precision: int8 vectors
and float vectors never mix in it (fp32 from torch and from ONNX Runtime agree to 1e-6 and do
mix), and it keeps its int8 (static or dynamic) and a bf16 library stays on torch bf16. When
ONNX Runtime cannot serve a model (a timm checkpoint, no onnxruntime, an export that fails),
torch does, with one line saying why. The embedder's `why` (kept in the library's record, shown
by `dinosearch info`) says which path serves and why.
"""

import dataclasses
import itertools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from indexer import atomic, model, onnx_runtime, privacy
from indexer.config import DEFAULT_MAX_PIXELS, DTYPES, RUNTIMES
from indexer.decode import Recipe
from indexer.decode_pool import Isolation, decode_all, default_workers
from indexer.errors import BadQuery, ModelMismatch
from indexer.files import walk

log = logging.getLogger(__name__)
FAST_MODEL_TYPES = ("dinov2", "dinov2_with_registers")  # position embeddings interpolate
FAST_SHORTEST_EDGE, FAST_CROP = 224, 196  # 14 x 14 patches instead of 16 x 16
PROBE_FILE = "probe.json"  # in the ONNX cache: int8 vs bf16 images/s, per machine and model
PROBE_BATCH = 8  # images per timed call of the probe (two calls each, interleaved)
ENV_PROBE = "DINOSEARCH_PROBE"  # "0": no probe, static int8 when it passes its gate


def load(
    text: str,
    device: str = "auto",
    dtype: str = "auto",
    runtime: str = "auto",
    library: str | None = None,
    sample_roots: list[str] | None = None,
    fast: bool = False,
    held_gate: dict | None = None,
    held: dict | None = None,
):
    """The embedder for --model `text`. `library` is the precision the library already holds
    ("int8", "float"; None for a new one); `sample_roots` give the int8 gate its real photos;
    `fast`: the smaller input (fast_recipe) of a `--fast` library; `held`: the library's runtime
    record (its int8's gate, quantization and scales: not measured again; a bf16 library stays
    bf16); `held_gate`: the gate alone, when the caller has no more of the record."""
    if runtime not in RUNTIMES:
        raise BadQuery(f"--runtime: one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if dtype not in DTYPES:
        raise BadQuery(f"--dtype: one of {', '.join(DTYPES)}, not {dtype!r}")
    refuse_mixing(dtype, library)
    recipe = fast_recipe(model.resolve(text)) if fast else None
    held = {**(held or {}), **({"gate": held_gate} if held_gate else {})}
    embedder = _load(text, device, dtype, runtime, library, sample_roots, recipe, held)
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


def _load(text, device, dtype, runtime, library, sample_roots, recipe, held):
    gpu = _on_gpu(device)
    kept = held.get("runtime") == "torch" and held.get("dtype") == "bf16"
    if runtime == "auto" and dtype == "auto" and kept:
        dtype = "bf16"  # the library's own: bf16 and fp32 would mix, but its runtime stays
    if runtime == "torch" or (runtime == "auto" and (gpu or dtype in ("fp16", "bf16"))):
        if dtype == "int8" or library == "int8":
            raise BadQuery("int8 runs on ONNX Runtime: use --runtime onnx (or auto) on the CPU")
        embedder = model.load(text, device, dtype)
        embedder.why = _why_torch(runtime, gpu, dtype, kept)
        return embedder
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
        embedder = _onnx(spec, want, library, sample_roots, loaded, recipe, held)
    except onnx_runtime.OnnxUnavailable as exc:
        if runtime == "onnx" or library == "int8" or dtype == "int8":
            raise exc
        log.warning("dinosearch: %s; embedding with torch instead", exc)
        embedder = loaded or model.load(text, device, "fp32")
        embedder.why = f"ONNX Runtime cannot serve this model ({exc}): torch fp32"
        return embedder
    if embedder.dtype == "int8" and embedder.batched and library is None and dtype == "auto":
        probing = os.environ.get(ENV_PROBE, "1") != "0"
        if runtime == "auto" and cpu_features()["bf16"] and probing:
            return _fastest(text, embedder, recipe)
        alone = "--runtime onnx" if runtime == "onnx" else "no native bf16 on this CPU to probe"
        alone = alone if probing else f"{ENV_PROBE}=0: no probe"
        embedder.why = _why_int8(embedder, alone)
    return embedder


def _onnx(spec, want: str, library: str | None, sample_roots, loaded, recipe, held):
    if want == "fp32":
        embedder = onnx_runtime.load(spec, "fp32", loaded=loaded, recipe=recipe)
        embedder.why = (
            "this library holds float vectors: ONNX Runtime fp32"
            if library == "float"
            else "--dtype fp32: ONNX Runtime fp32"
        )
        return embedder
    try:
        sample = lambda: _sample_pixels(spec, sample_roots, recipe)  # noqa: E731
        if library == "int8":  # its own int8 (a record without "quant": dynamic, older)
            quant = held.get("quant", onnx_runtime.QUANT_DYNAMIC)
            embedder = onnx_runtime.load(
                spec, "int8", sample, loaded, recipe, held.get("gate"), quant, held.get("scales")
            )
            embedder.why = _why_int8(embedder, "this library holds int8 vectors: it keeps its own")
            return embedder
        embedder = onnx_runtime.load(spec, "int8", sample, loaded, recipe)
        embedder.why = _why_int8(embedder, "--dtype int8" if library is None else "")
        return embedder
    except onnx_runtime.GateFailed as exc:
        if library == "int8":
            raise
        log.warning("dinosearch: %s; using fp32", exc)
        embedder = onnx_runtime.load(spec, "fp32", loaded=loaded, recipe=recipe)
        embedder.why = f"{exc}: ONNX Runtime fp32"
        return embedder


def _why_int8(embedder, reason: str) -> str:
    gate = embedder.gate
    how = (
        "static int8, whole batches per call"
        if embedder.batched
        else "dynamic int8, one image per call (static int8 missed the gate or predates it)"
    )
    passed = (
        f"gate: min cosine {gate.min_cosine:.4f} to fp32 on {gate.images} photos" if gate else ""
    )
    return "; ".join(p for p in (f"ONNX Runtime {how}", passed if gate else "", reason) if p)


def _why_torch(runtime: str, gpu: bool, dtype: str, kept: bool) -> str:
    if kept:
        return "this library holds torch bf16 vectors: it keeps its runtime"
    if runtime == "torch":
        return "--runtime torch"
    return "a GPU: torch" if gpu else f"--dtype {dtype}: torch"


def _fastest(text: str, int8, recipe):
    """A new library on a CPU with native bf16: static int8 or torch bf16, whichever the probe
    (measured once on this machine, then read from PROBE_FILE) finds faster."""
    rates, probed = probe(text, int8, recipe)
    said = f"probe: int8 {rates['onnx_int8']:.2f} vs torch bf16 {rates['torch_bf16']:.2f} img/s"
    if rates["torch_bf16"] <= rates["onnx_int8"]:
        int8.why = _why_int8(int8, said + " on this CPU")
        return int8
    bf16: Any = probed or model.load(text, "cpu", "bf16")
    if recipe is not None:
        bf16.recipe = recipe
    bf16.why = f"torch bf16 (native bf16 on this CPU); {said}"
    return bf16


def probe(text: str, int8, recipe=None) -> tuple[dict, object]:
    """({"onnx_int8": img/s, "torch_bf16": img/s}, the bf16 embedder when it was loaded to
    measure): two interleaved calls of PROBE_BATCH images each, the better of each kept (the
    machine may be shared); remembered per CPU, library versions and int8 file."""
    import onnxruntime as ort  # 0.2 s; loaded already (the int8 embedder)

    facts = cpu_features()
    key = f"{facts['model']}|{','.join(facts['flags'])}|ort{ort.__version__}|{int8.path.name}"
    path = onnx_runtime.cache_dir() / PROBE_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key], None
    bf16 = model.load(text, "cpu", "bf16")
    if recipe is not None:
        bf16.recipe = recipe
    h, w = int8.recipe.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (PROBE_BATCH, h, w, 3), dtype=np.uint8)
    best = {"onnx_int8": 0.0, "torch_bf16": 0.0}
    runs = {"onnx_int8": int8.embed, "torch_bf16": bf16.embed}
    for embed in runs.values():
        embed(pixels[:1])  # warm-up: first-call allocations, oneDNN's kernel choice
    for _ in range(2):
        for name, embed in runs.items():
            started = time.perf_counter()
            embed(pixels)
            best[name] = max(best[name], len(pixels) / (time.perf_counter() - started))
    import torch  # loaded by now

    rates = {**{k: round(v, 2) for k, v in best.items()}, "torch": torch.__version__}
    known[key] = rates
    atomic.write_bytes(path, json.dumps(known, indent=1).encode(), parents=True)
    return rates, bf16


def explain(record: dict | None) -> dict:
    """A library's runtime record as `info` shows it: without the int8 scales, with `batched`
    (whole batches per call) and a `why` for libraries made before the reason was kept."""
    shown = dict(record or {"runtime": "torch", "dtype": None})
    shown.pop("scales", None)
    int8 = shown.get("dtype") == "int8"
    if int8:
        shown.setdefault("quant", onnx_runtime.QUANT_DYNAMIC)
    shown["batched"] = not int8 or shown["quant"] == onnx_runtime.QUANT_STATIC
    if "why" not in shown:
        shown["why"] = (
            "dynamic int8, one image per call: this library's vectors were made so, and it "
            "keeps them"
            if int8
            else "made before dinosearch recorded why"
        )
    return shown


def cpu_features() -> dict:
    """The CPU's model and the flags that choose the kernels: int8 (VNNI, AMX) and bf16."""
    text = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    name = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    have: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            break
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")
    flags = [f for f in (*wanted, "asimddp", "i8mm", "bf16") if f in have]
    int8 = next(
        (f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp") if f in have), None
    )
    bf16 = next((f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in have), None)
    return {"model": name, "flags": flags, "int8": int8, "bf16": bf16}


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
