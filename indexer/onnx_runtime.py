"""The ONNX Runtime path: a checkpoint exported once to ONNX (fp32, and int8 if it passes the
accuracy gate), cached beside the Hugging Face cache, then run with onnxruntime alone.

Exporting needs torch and transformers (the checkpoint is loaded once, by the same path as
`--runtime torch`). A later process loads only onnxruntime: no torch, no transformers. The cache
file's name holds the weights' content hash, the preprocessing and the onnxruntime version, so
new weights, another recipe or another runtime build export again; a file that no longer loads
is exported again too.

int8 is static quantization (QDQ, per-channel int8 weights, uint8 activations): the activation
scales are calibrated once, on the photos the accuracy gate is measured on, and are constants of
the model, so an image's vector does not depend on the images batched with it and int8 runs
whole batches. The scales go into the library's record: a later process, another machine or a
Ray worker without the cached file rebuilds the same model from the weights and the record. The
weight MatMuls are quantized (their outputs stay float); attention, LayerNorm, softmax, GELU and
the patch embedding stay fp32. FP32_LAST_LAYERS = 1 would keep the last transformer layer fp32
too: closer to fp32 (min cosine 0.9978 instead of 0.9971 on 61 real photos), ~10% slower
(bench/results/int8_batched.md).

Libraries made before that hold dynamic int8 (QUANT_DYNAMIC, what their record's missing "quant"
means): activations quantized at run time with a scale measured over the whole input, so a
vector depends on its batch neighbours and that path runs one image per call. They keep it.
When static int8 misses the gate, dynamic int8 is tried next, then fp32 serves.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer import atomic, model, privacy
from indexer.decode import Recipe
from indexer.errors import RuntimeUnavailable

log = logging.getLogger(__name__)
ENV_CACHE = "DINOSEARCH_ONNX_CACHE"
OPSET = 17
GATE_MIN_COSINE = 0.99  # int8 vs fp32 on the library's own photos: the lowest ...
GATE_MEAN_COSINE = 0.995  # ... and the mean cosine int8 must reach to be used
GATE_IMAGES = 16  # photos the gate is measured on; a gate on fewer is not kept for later runs
GATE_MIN_IMAGES = 8  # fewer photos than this say too little: fp32 serves
HASH_CHUNK_BYTES = 1 << 20
QUANT_STATIC, QUANT_DYNAMIC = "static", "dynamic"  # record["quant"]; absent: dynamic (older)
FP32_LAST_LAYERS = 0  # transformer layers at the end whose MatMuls stay fp32 (module doc)
CALIBRATION_BATCH = 4  # photos per calibration run (its activations are held at once)
# intra-op threads: every core (decode workers are separate processes, mostly ahead of the
# model); spin-waiting between calls off: with whole batches per call the session is idle while
# the next batch is gathered, and a spinning pool steals that time from the decode workers
# (bench/results/int8_batched.md, "Threads")
SPINNING = "0"
_LAYER = re.compile(r"/layer\.(\d+)/")


class OnnxUnavailable(RuntimeUnavailable):
    """onnxruntime (or the export) cannot serve this model: the caller falls back to torch, or,
    where ONNX Runtime or int8 was insisted on, says so (HTTP 503, as for a missing runtime)."""


class GateFailed(OnnxUnavailable):
    """int8 is too far from fp32 on this model (or could not be checked): fp32 serves."""

    def __init__(self, message: str, few: bool = False):
        super().__init__(message)
        self.few = few  # too few photos to tell: no other int8 is tried on them


@dataclass
class Gate:
    """int8 against fp32 on real photos, when the int8 file was made."""

    min_cosine: float
    mean_cosine: float
    images: int

    @property
    def passed(self) -> bool:
        close = self.min_cosine >= GATE_MIN_COSINE and self.mean_cosine >= GATE_MEAN_COSINE
        return close and self.images >= GATE_MIN_IMAGES

    def to_json(self) -> dict:
        return {
            "min_cosine": round(self.min_cosine, 5),
            "mean_cosine": round(self.mean_cosine, 5),
            "images": self.images,
            "passed": self.passed,
        }


class OnnxEmbedder:
    """uint8 pixel batches -> L2-normalised float32 CLS vectors, with onnxruntime only."""

    runtime = "onnx"
    threads: int | None = None  # intra-op threads (None: every core); a Ray actor sets its share

    def __init__(
        self,
        spec: model.ModelSpec,
        path: Path,
        recipe: Recipe,
        dtype: str,
        gate=None,
        quant: str | None = None,
        scales: dict | None = None,
    ):
        ort = privacy.onnxruntime()  # telemetry off; 0.2 s, the torch path never needs it

        self.session = ort.InferenceSession(
            str(path), session_options(ort, self.threads), providers=["CPUExecutionProvider"]
        )
        self.spec, self.path, self.recipe, self.dtype, self.gate = spec, path, recipe, dtype, gate
        self.quant = quant if dtype == "int8" else None
        self.scales = scales
        self.why: str | None = None  # set by runtime.load: why this path serves
        self._mean = np.array(recipe.mean, np.float32).reshape(1, 3, 1, 1) * 255
        self._std = np.array(recipe.std, np.float32).reshape(1, 3, 1, 1) * 255
        self.dim = int(self.embed(np.zeros((1, *recipe.input_size, 3), np.uint8)).shape[1])

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def batched(self) -> bool:
        """Whether a vector is independent of its batch neighbours (then whole batches run)."""
        return self.dtype != "int8" or self.quant == QUANT_STATIC

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float32, the model's input."""
        return (pixels.transpose(0, 3, 1, 2).astype(np.float32) - self._mean) / self._std

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, D) float32, unit length."""
        x = self.normalise(pixels)
        step = len(x) if self.batched else 1  # dynamic int8: one image per call (module doc)
        parts = [
            self.session.run(None, {"pixels": x[i : i + step]})[0] for i in range(0, len(x), step)
        ]
        cls = np.concatenate(parts).astype(np.float32)
        return cls / np.maximum(np.linalg.norm(cls, axis=1, keepdims=True), 1e-12)

    def record(self) -> dict:
        """What the library keeps of how its vectors were made."""
        out: dict[str, object] = {"runtime": self.runtime, "dtype": self.dtype}
        out["file"] = self.path.name
        if self.quant:
            out["quant"] = self.quant
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        if self.scales:
            out["scales"] = self.scales
        if self.why:
            out["why"] = self.why
        return {**out, "fast": True} if getattr(self, "fast", False) else out


def session_options(ort, threads: int | None = None):
    """The CPU session's settings (SPINNING: the constant's comment)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
    options.log_severity_level = 3
    return options


def cache_dir() -> Path:
    if env := os.environ.get(ENV_CACHE):
        return Path(env).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(hf_home) / "dinosearch-onnx"


def weights_file(spec: model.ModelSpec) -> Path | None:
    """The checkpoint's weights on disk (a local directory's, or the hub cache's), or None."""
    if spec.backend != "hf":
        return None
    names = ("model.safetensors", "pytorch_model.bin")
    source = Path(spec.source)
    if source.is_dir():
        return next((source / n for n in names if (source / n).is_file()), None)
    if source.is_file():
        return None  # a bare state dict: no recipe without loading it
    try:
        from huggingface_hub import try_to_load_from_cache  # 0.4 s (its HTTP stack)
    except ImportError:
        return None
    for name in names:
        found = try_to_load_from_cache(spec.source, name)
        if isinstance(found, str):
            return Path(found)
    return None


def content_hash(path: Path) -> str:
    """SHA-256 of the weights, remembered by (path, size, mtime) so it is read once."""
    st = path.stat()
    memo = cache_dir() / "hashes.json"
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    known[key] = digest.hexdigest()
    atomic.write_bytes(memo, json.dumps(known, indent=1).encode(), parents=True)
    return known[key]


def file_stem(spec: model.ModelSpec, weights: Path, recipe: Recipe) -> str:
    import onnxruntime as ort  # 0.2 s; the torch path never needs it

    name = "".join(c if c.isalnum() else "-" for c in Path(spec.id).name)[-40:]
    recipe_hash = hashlib.sha256(recipe.to_json().encode()).hexdigest()[:8]
    return f"{name}-{content_hash(weights)[:16]}-{recipe_hash}-ort{ort.__version__}"


def load(
    spec: model.ModelSpec,
    dtype: str,
    gate_pixels=None,
    loaded=None,
    recipe: Recipe | None = None,
    held: dict | None = None,
    quant: str | None = None,
    scales: dict | None = None,
) -> OnnxEmbedder:
    """The ONNX embedder of `spec` in `dtype` ("fp32" or "int8"), exported first if needed.

    int8 is made only when its gate passes on `gate_pixels` (a callable giving real photos as
    uint8 pixels, or None); otherwise GateFailed says why and the caller keeps fp32. `loaded`:
    the torch embedder of `spec` when the caller has one (it is exported rather than loaded);
    `recipe`: another input size than the checkpoint's own (exported at that size). A library's
    own int8 is given by its record: `held` the gate its vectors passed (it stands, nothing to
    measure), `quant` QUANT_STATIC (with the `scales` it was calibrated to) or QUANT_DYNAMIC
    (also what None means with `held`). A new library (`held` None): `quant` None tries static,
    then dynamic when static misses the gate; QUANT_STATIC or QUANT_DYNAMIC tries that one."""
    try:
        import onnxruntime  # noqa: F401  missing: say so, torch serves
    except ImportError:
        raise OnnxUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
    weights = weights_file(spec)
    recipe = recipe or (model.local_recipe(spec.source) if weights else None)
    if weights is None or recipe is None:
        raise OnnxUnavailable(f"{spec.id}: no exportable Hugging Face checkpoint on disk")
    stem = cache_dir() / file_stem(spec, weights, recipe)
    fp32 = stem.with_name(stem.name + "-fp32.onnx")
    if not _loads(fp32):
        _export(loaded or _torch_embedder(spec), fp32, recipe)
    if dtype == "fp32":
        return OnnxEmbedder(spec, fp32, recipe, "fp32")
    if held:  # a library's own int8 (no "quant" in its record: dynamic, from before static)
        if quant == QUANT_STATIC:
            return _held_static(spec, fp32, stem, recipe, held, scales)
        return _dynamic(spec, fp32, stem, recipe, gate_pixels, held)
    if quant in (None, QUANT_STATIC):
        pixels = _once(gate_pixels)
        try:
            return _static(spec, fp32, stem, recipe, pixels)
        except GateFailed as exc:
            if quant == QUANT_STATIC or exc.few:
                raise
            log.warning("dinosearch: static %s; trying dynamic int8 (one image per call)", exc)
        gate_pixels = pixels
    return _dynamic(spec, fp32, stem, recipe, gate_pixels, held)


def _static(spec, fp32: Path, stem: Path, recipe: Recipe, gate_pixels) -> OnnxEmbedder:
    """Static int8: the cached file and its gate, else calibrated and gated on the photos."""
    int8, gate_file, scales_file = (
        stem.with_name(stem.name + s)
        for s in ("-int8s.onnx", "-int8s.gate.json", "-int8s.scales.json")
    )
    gate = _read_gate(gate_file) if _loads(int8) else None
    scales = _read_json(scales_file) if gate is not None else None
    if gate is None or scales is None:
        if gate_pixels is None:
            raise GateFailed("int8 needs real photos to calibrate on and check against fp32")
        for stale in (gate_file, scales_file):  # they describe the file about to be replaced
            stale.unlink(missing_ok=True)
        pixels = gate_pixels()
        reference = OnnxEmbedder(spec, fp32, recipe, "fp32")
        if pixels is None or len(pixels) < GATE_MIN_IMAGES:
            gate, scales = Gate(0.0, 0.0, 0 if pixels is None else len(pixels)), {}
        else:
            _quantize_static(fp32, int8, reference.normalise(pixels))
            scales = activation_scales(int8)
            gate = measure_gate(reference, int8, recipe, spec, pixels, QUANT_STATIC)
        if gate.images >= GATE_IMAGES:  # a full sample: later libraries reuse the verdict
            atomic.write_bytes(scales_file, json.dumps(scales).encode(), parents=True)
            atomic.write_bytes(gate_file, json.dumps(gate.to_json()).encode(), parents=True)
    if not gate.passed:
        raise GateFailed(_missed(gate), few=gate.images < GATE_MIN_IMAGES)
    return OnnxEmbedder(spec, int8, recipe, "int8", gate, QUANT_STATIC, scales)


def _held_static(spec, fp32: Path, stem: Path, recipe: Recipe, held: dict, scales) -> OnnxEmbedder:
    """A library's static int8: the model its scales make (the cached file when it has them,
    else rebuilt from the fp32 export: the same model, so the same vectors)."""
    if not scales:
        raise GateFailed("this int8 library's record has no activation scales to rebuild from")
    int8 = stem.with_name(stem.name + "-int8s.onnx")
    if (
        not _loads(int8)
        or _scales_of(int8, stem.with_name(stem.name + "-int8s.scales.json")) != scales
    ):
        digest = hashlib.sha256(json.dumps(scales, sort_keys=True).encode()).hexdigest()[:12]
        int8 = stem.with_name(f"{stem.name}-int8s-{digest}.onnx")  # never the shared file
        if not _loads(int8):
            _quantize_static(fp32, int8, None, scales)
            if activation_scales(int8) != scales:
                int8.unlink(missing_ok=True)
                raise OnnxUnavailable(
                    "this onnxruntime cannot rebuild the library's int8 model from its scales"
                )
    gate = Gate(held["min_cosine"], held["mean_cosine"], held["images"])
    return OnnxEmbedder(spec, int8, recipe, "int8", gate, QUANT_STATIC, scales)


def _scales_of(int8: Path, sidecar: Path) -> dict:
    """The scales of the shared static file: its sidecar (written with it), else the file's."""
    return _read_json(sidecar) if sidecar.is_file() else activation_scales(int8)


def _dynamic(spec, fp32: Path, stem: Path, recipe: Recipe, gate_pixels, held) -> OnnxEmbedder:
    """Dynamic int8 (one image per call): libraries from before static int8, and the fallback."""
    int8, gate_file = (stem.with_name(stem.name + s) for s in ("-int8.onnx", "-int8.gate.json"))
    gate = _read_gate(gate_file) if _loads(int8) else None
    if gate is None and held:  # the library's own vectors passed it: it stands
        if not _loads(int8):
            _quantize(fp32, int8)  # deterministic: the same int8 model as the library's
        gate = Gate(held["min_cosine"], held["mean_cosine"], held["images"])
    if gate is None:
        _quantize(fp32, int8)
        if gate_pixels is None:
            raise GateFailed("int8 needs real photos to check its accuracy against fp32")
        gate = measure_gate(
            OnnxEmbedder(spec, fp32, recipe, "fp32"), int8, recipe, spec, gate_pixels()
        )
        if gate.images >= GATE_IMAGES:  # a full sample: later libraries reuse the verdict
            atomic.write_bytes(gate_file, json.dumps(gate.to_json()).encode(), parents=True)
    if not gate.passed:
        raise GateFailed(_missed(gate))
    return OnnxEmbedder(spec, int8, recipe, "int8", gate, QUANT_DYNAMIC)


def _missed(gate: Gate) -> str:
    return (
        f"int8 misses the accuracy gate on {gate.images} photos (min cosine "
        f"{gate.min_cosine:.4f}, mean {gate.mean_cosine:.4f} vs fp32; needs "
        f"{GATE_MIN_COSINE} / {GATE_MEAN_COSINE} on at least {GATE_MIN_IMAGES} photos)"
    )


def _once(fn):
    """`fn` called at most once (the gate photos are decoded once for static and dynamic)."""
    if fn is None:
        return None
    held: list = []

    def call():
        if not held:
            held.append(fn())
        return held[0]

    return call


def measure_gate(reference: OnnxEmbedder, int8: Path, recipe, spec, pixels, quant=None) -> Gate:
    """Cosines of int8 vectors to the fp32 ones of the same photos."""
    if pixels is None or not len(pixels):
        return Gate(0.0, 0.0, 0)
    quantized = OnnxEmbedder(spec, int8, recipe, "int8", quant=quant)
    cos = (reference.embed(pixels) * quantized.embed(pixels)).sum(axis=1)
    return Gate(float(cos.min()), float(cos.mean()), len(pixels))


def _loads(path: Path) -> bool:
    """An existing file onnxruntime can open (a damaged one is exported again)."""
    if not path.is_file():
        return False
    import onnxruntime as ort  # 0.2 s; the torch path never needs it

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:  # truncated or from another build: make it again
        path.unlink(missing_ok=True)
        return False


def _read_gate(path: Path) -> Gate | None:
    try:
        data = json.loads(path.read_text())
        return Gate(data["min_cosine"], data["mean_cosine"], data["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _torch_embedder(spec: model.ModelSpec):
    try:
        import torch  # noqa: F401  1.4 s: only to export, once per checkpoint
    except ImportError:
        raise OnnxUnavailable("exporting to ONNX needs torch") from None
    return model.load(spec.id, "cpu", "fp32")


def _export(torch_embedder, target: Path, recipe: Recipe) -> None:
    """torch -> ONNX (opset 17, dynamic batch): the CLS token after the final layer norm."""
    import torch  # 1.4 s to import: only to export, once per checkpoint

    spec = torch_embedder.spec

    class Cls(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            return self.net(pixel_values=pixels).last_hidden_state[:, 0]

    h, w = recipe.input_size
    example = torch.zeros(1, 3, h, w)
    started = time.perf_counter()
    try:
        with atomic.atomic_path(target, parents=True) as tmp, _quiet_export():
            torch.onnx.export(
                Cls(torch_embedder.net).eval(),
                (example,),
                str(tmp),
                input_names=["pixels"],
                output_names=["cls"],
                dynamic_axes={"pixels": {0: "batch"}, "cls": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # an architecture the exporter cannot trace: torch serves it
        raise OnnxUnavailable(f"cannot export {spec.id} to ONNX: {exc}") from None
    log.info("exported %s to %s in %.1fs", spec.id, target, time.perf_counter() - started)


def _quantize(fp32: Path, int8: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # 1.7 s, once
    except ImportError as exc:
        raise OnnxUnavailable(f"int8 needs onnxruntime's quantization tools ({exc})") from None
    try:
        with atomic.atomic_path(int8) as tmp, _quiet_export():
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:
        raise OnnxUnavailable(f"cannot quantize {fp32.name}: {exc}") from None


def static_nodes(graph, last: int | None = None) -> list[str]:
    """The MatMuls static int8 quantizes: those with a weight (an initializer) as the second
    input, outside the `last` (default FP32_LAST_LAYERS) transformer layers (module doc)."""
    last_fp32 = FP32_LAST_LAYERS if last is None else last
    weights = {i.name for i in graph.initializer}
    found = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    layer = {name: int(m.group(1)) for name in found if (m := _LAYER.search(name))}
    if not layer:  # names the exporter did not give: every weight MatMul
        return found
    top = max(layer.values()) - last_fp32
    return [name for name in found if layer.get(name, 0) <= top]


def _quantize_static(fp32: Path, int8: Path, inputs: np.ndarray | None, scales=None) -> None:
    """QDQ static quantization of `fp32`, calibrated on `inputs` (normalised photos: the min and
    max of each quantized MatMul's input), or made with the activation `scales` a library
    recorded. Either way the quantizer is handed every range (its own calibration runs on one
    blank input only), so the model is what the ranges say."""
    try:
        import onnx  # 0.3 s, once
        from onnxruntime.quantization import (  # 1.7 s, once
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise OnnxUnavailable(f"int8 needs onnxruntime's quantization tools ({exc})") from None

    class Blank(CalibrationDataReader):
        def __init__(self, shape):
            self.items = iter([{"pixels": np.zeros((1, *shape[1:]), np.float32)}])

        def get_next(self):
            return next(self.items, None)

    graph = onnx.load(str(fp32)).graph
    nodes = static_nodes(graph)
    if scales is not None:  # the MatMuls the library's model quantized, whatever the default now
        every = static_nodes(graph, last=0)
        nodes = [n.name for n in graph.node if n.name in every and n.input[0] in scales]
        overrides = {
            name: [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero, np.uint8)}]
            for name, (scale, zero) in scales.items()
        }
        shape = _input_shape(fp32)
    else:
        inputs_of = {n.name: n.input[0] for n in graph.node if n.input}
        assert inputs is not None  # the dynamic-ranges path is given the gate's inputs
        ranges = _ranges(fp32, sorted({inputs_of[n] for n in nodes}), inputs)
        overrides = {name: [{"rmin": lo, "rmax": hi}] for name, (lo, hi) in ranges.items()}
        shape = inputs.shape
    del graph
    extra = {
        "TensorQuantOverrides": overrides,
        # a MatMul's float output is not quantized again (ORT runs MatMulIntegerToFloat): as
        # fast here, and closer to fp32 (bench/results/int8_batched.md)
        "OpTypesToExcludeOutputQuantization": ["MatMul"],
    }
    started = time.perf_counter()
    try:
        with atomic.atomic_path(int8) as tmp, _quiet_export():
            quantize_static(
                str(fp32),
                str(tmp),
                Blank(shape),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
                per_channel=True,
                activation_type=QuantType.QUInt8,  # u8 x s8: the VNNI / AMX int8 kernels
                weight_type=QuantType.QInt8,
                extra_options=extra,
            )
    except Exception as exc:
        raise OnnxUnavailable(f"cannot quantize {fp32.name} (static): {exc}") from None
    log.info("static int8 of %s in %.1fs", fp32.name, time.perf_counter() - started)


def _ranges(fp32: Path, tensors: list[str], inputs: np.ndarray) -> dict[str, tuple]:
    """(min, max) of each tensor over the inputs, run CALIBRATION_BATCH at a time (memory stays
    that of one batch's activations)."""
    import onnx  # 0.3 s; only when an int8 model is made

    ort = privacy.onnxruntime()
    proto = onnx.load(str(fp32))
    proto.graph.output.extend(
        onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors
    )
    session = ort.InferenceSession(
        proto.SerializeToString(), session_options(ort), providers=["CPUExecutionProvider"]
    )
    del proto
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    for i in range(0, len(inputs), CALIBRATION_BATCH):
        values = session.run(tensors, {"pixels": inputs[i : i + CALIBRATION_BATCH]})
        for name, value in zip(tensors, values, strict=True):
            lo[name] = np.minimum(lo.get(name, np.inf), value.min()).astype(np.float32)
            hi[name] = np.maximum(hi.get(name, -np.inf), value.max()).astype(np.float32)
    return {name: (lo[name], hi[name]) for name in tensors}


def activation_scales(path: Path) -> dict[str, list]:
    """{activation tensor: [scale, zero point]} of a QDQ model: what calibration decided (float32
    scales survive JSON exactly)."""
    import onnx  # 0.3 s; only when an int8 model is made
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {i.name: i for i in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in consts:
            scale = numpy_helper.to_array(consts[node.input[1]])
            zero = numpy_helper.to_array(consts[node.input[2]])
            out[node.input[0]] = [float(scale), int(zero)]
    return out


def _input_shape(path: Path) -> tuple[int, ...]:
    import onnx  # 0.3 s; only when an int8 model is made

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value or 1 for d in dims)


def _quiet_export():
    """The exporter's and quantizer's warnings are for their developers, not our users."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    stack.callback(root.setLevel, level)
    return stack
