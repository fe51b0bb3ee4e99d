"""The ONNX Runtime path: a checkpoint exported once to ONNX (fp32, and int8 if it passes the
accuracy gate), cached beside the Hugging Face cache, then run with onnxruntime alone.

Exporting needs torch and transformers (the checkpoint is loaded once, by the same path as
`--runtime torch`). A later process loads only onnxruntime: no torch, no transformers. The cache
file's name holds the weights' content hash, the preprocessing and the onnxruntime version, so
new weights, another recipe or another runtime build export again; a file that no longer loads
is exported again too.

int8 is ORT's dynamic quantization of the weights (QInt8, per channel). Activations are
quantized at run time with a scale measured over the whole input, so an image's vector would
depend on the images batched with it: int8 runs one image per call, so a file always gets the
same vector (a resumed run equals an uninterrupted one).
"""

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer import model, privacy
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


class OnnxUnavailable(RuntimeUnavailable):
    """onnxruntime (or the export) cannot serve this model: the caller falls back to torch, or,
    where ONNX Runtime or int8 was insisted on, says so (HTTP 503, as for a missing runtime)."""


class GateFailed(OnnxUnavailable):
    """int8 is too far from fp32 on this model (or could not be checked): fp32 serves."""


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

    def __init__(self, spec: model.ModelSpec, path: Path, recipe: Recipe, dtype: str, gate=None):
        ort = privacy.onnxruntime()  # telemetry off; 0.2 s, the torch path never needs it

        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.spec, self.path, self.recipe, self.dtype, self.gate = spec, path, recipe, dtype, gate
        self._mean = np.array(recipe.mean, np.float32).reshape(1, 3, 1, 1) * 255
        self._std = np.array(recipe.std, np.float32).reshape(1, 3, 1, 1) * 255
        self.dim = int(self.embed(np.zeros((1, *recipe.input_size, 3), np.uint8)).shape[1])

    @property
    def id(self) -> str:
        return self.spec.id

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, D) float32, unit length."""
        x = (pixels.transpose(0, 3, 1, 2).astype(np.float32) - self._mean) / self._std
        step = 1 if self.dtype == "int8" else len(x)  # int8: one image per call (module doc)
        parts = [
            self.session.run(None, {"pixels": x[i : i + step]})[0] for i in range(0, len(x), step)
        ]
        cls = np.concatenate(parts).astype(np.float32)
        return cls / np.maximum(np.linalg.norm(cls, axis=1, keepdims=True), 1e-12)

    def record(self) -> dict:
        """What the library keeps of how its vectors were made."""
        out = {"runtime": self.runtime, "dtype": self.dtype, "file": self.path.name}
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        return {**out, "fast": True} if getattr(self, "fast", False) else out


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
    _write_atomic(memo, json.dumps(known, indent=1).encode())
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
) -> OnnxEmbedder:
    """The ONNX embedder of `spec` in `dtype` ("fp32" or "int8"), exported first if needed.

    int8 is made only when its gate passes on `gate_pixels` (a callable giving real photos as
    uint8 pixels, or None); otherwise GateFailed says why and the caller keeps fp32. `loaded`:
    the torch embedder of `spec` when the caller has one (it is exported rather than loaded);
    `recipe`: another input size than the checkpoint's own (exported at that size); `held`: the
    gate a library's int8 vectors already passed (its record): it stands, nothing to measure."""
    try:
        import onnxruntime  # noqa: F401  missing: say so, torch serves
    except ImportError:
        raise OnnxUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
    weights = weights_file(spec)
    recipe = recipe or (model.local_recipe(spec.source) if weights else None)
    if weights is None or recipe is None:
        raise OnnxUnavailable(f"{spec.id}: no exportable Hugging Face checkpoint on disk")
    stem = cache_dir() / file_stem(spec, weights, recipe)
    fp32, int8, gate_file = (
        stem.with_name(stem.name + s) for s in ("-fp32.onnx", "-int8.onnx", "-int8.gate.json")
    )
    if not _loads(fp32):
        _export(loaded or _torch_embedder(spec), fp32, recipe)
    if dtype == "fp32":
        return OnnxEmbedder(spec, fp32, recipe, "fp32")
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
            _write_atomic(gate_file, json.dumps(gate.to_json()).encode())
    if not gate.passed:
        raise GateFailed(
            f"int8 misses the accuracy gate on {gate.images} photos (min cosine "
            f"{gate.min_cosine:.4f}, mean {gate.mean_cosine:.4f} vs fp32; needs "
            f"{GATE_MIN_COSINE} / {GATE_MEAN_COSINE} on at least {GATE_MIN_IMAGES} photos)"
        )
    return OnnxEmbedder(spec, int8, recipe, "int8", gate)


def measure_gate(reference: OnnxEmbedder, int8: Path, recipe, spec, pixels) -> Gate:
    """Cosines of int8 vectors to the fp32 ones of the same photos."""
    if pixels is None or not len(pixels):
        return Gate(0.0, 0.0, 0)
    quantized = OnnxEmbedder(spec, int8, recipe, "int8")
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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    started = time.perf_counter()
    try:
        with _quiet_export():
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
        os.replace(tmp, target)
    except Exception as exc:  # an architecture the exporter cannot trace: torch serves it
        tmp.unlink(missing_ok=True)
        raise OnnxUnavailable(f"cannot export {spec.id} to ONNX: {exc}") from None
    log.info("exported %s to %s in %.1fs", spec.id, target, time.perf_counter() - started)


def _quantize(fp32: Path, int8: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # 1.7 s, once
    except ImportError as exc:
        raise OnnxUnavailable(f"int8 needs onnxruntime's quantization tools ({exc})") from None
    tmp = int8.with_name(f".{int8.name}.{os.getpid()}.tmp")
    try:
        with _quiet_export():
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, int8)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OnnxUnavailable(f"cannot quantize {fp32.name}: {exc}") from None


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


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
