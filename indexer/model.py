"""--model string -> Embedder: the final-layer CLS token after the final layer norm, L2-normalised.

Backends and the tensor each returns:
  transformers Dinov2Model / Dinov2WithRegistersModel / ViTModel (DINO v1):
      ``last_hidden_state[:, 0]`` (the encoder output after ``model.layernorm``; never ViT's pooler,
      which adds a randomly initialised dense + tanh)
  timm VisionTransformer: ``forward_features(x)[:, 0]`` (after ``model.norm``)
"""

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.decode import Recipe
from indexer.errors import RuntimeUnavailable, UnknownModel, WeightsUnavailable

REGISTRY = {
    "dinov2-small": "facebook/dinov2-small",
    "dinov2-base": "facebook/dinov2-base",
    "dinov2-large": "facebook/dinov2-large",
    "dinov2-giant": "facebook/dinov2-giant",
    "dino-vits16": "facebook/dino-vits16",
    "dino-vitb16": "facebook/dino-vitb16",
    "dino-vits8": "facebook/dino-vits8",
    "dino-vitb8": "facebook/dino-vitb8",
}
HF_MODEL_TYPES = {"dinov2", "dinov2_with_registers", "vit"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PIL_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}
# Before anything is fetched, one request tells whether the hub answers at all: unreachable, the
# hub client would retry each file with backoff for ~30 s, printing a line per retry.
HUB_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ModelSpec:
    id: str  # what the library records: a hub id, "timm/<name>", or an absolute local path
    backend: str  # "hf" or "timm"
    source: str  # what the backend loads from: hub id, timm name, directory or file


def resolve(text: str) -> ModelSpec:
    """Parse a --model string (registry name, hub id, timm name, local dir or file)."""
    text = text.strip()
    if text in REGISTRY:
        return ModelSpec(REGISTRY[text], "hf", REGISTRY[text])
    if text.startswith(("timm/", "hf-hub:timm/")):
        name = text.split("timm/", 1)[1]
        return ModelSpec(f"timm/{name}", "timm", name)
    local = Path(text).expanduser()
    if local.exists():
        local = local.resolve()
        backend = "timm" if _is_timm_dir(local) or _is_timm_file(local) else "hf"
        return ModelSpec(str(local), backend, str(local))
    if text.startswith((".", "/", "~")) or text.endswith(WEIGHT_SUFFIXES):
        raise UnknownModel(f"model path {text} does not exist")
    if text.count("/") == 1:
        return ModelSpec(text, "hf", text)
    raise UnknownModel(
        f"unknown model {text!r}: use one of {', '.join(REGISTRY)}, a Hugging Face id such as "
        "facebook/dinov2-small, a timm name such as timm/vit_small_patch14_dinov2.lvd142m, "
        "or a local directory / weights file"
    )


def _is_timm_dir(path: Path) -> bool:
    config = path / "config.json"
    if not (path.is_dir() and config.exists()):
        return False
    data = json.loads(config.read_text())
    return "architecture" in data and "model_type" not in data


def _is_timm_file(path: Path) -> bool:
    if not path.is_file():
        return False
    return not any(k.startswith("embeddings.") for k in _state_dict(path))


class Embedder:
    """A loaded model: uint8 pixel batches -> L2-normalised float32 CLS vectors."""

    def __init__(self, spec: ModelSpec, net, recipe: Recipe, device: str, dtype: str):
        import torch  # 1.4 s to import: only once a model is needed

        self.spec, self.net, self.recipe = spec, net, recipe
        self.device, self.dtype = torch.device(device), dtype
        self.net.to(self.device).eval()
        self._mean = torch.tensor(recipe.mean, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(recipe.std, device=self.device).view(1, 3, 1, 1) * 255
        self.dim = int(self.embed(np.zeros((1, *recipe.input_size, 3), np.uint8)).shape[1])

    runtime = "torch"

    @property
    def id(self) -> str:
        return self.spec.id

    def record(self) -> dict:
        """What the library keeps of how its vectors were made."""
        out = {"runtime": self.runtime, "dtype": self.dtype}
        if why := getattr(self, "why", None):  # set by runtime.load: why this path serves
            out["why"] = why
        return {**out, "fast": True} if getattr(self, "fast", False) else out

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, D) float32, unit length."""
        import torch  # 1.4 s to import: only once a model is needed

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, non_blocking=True)
            x = (x.permute(0, 3, 1, 2).float() - self._mean) / self._std
            with _autocast(self.device, self.dtype):
                cls = self._cls(x)
            cls = torch.nn.functional.normalize(cls.float(), dim=1)
            return cls.cpu().numpy()

    def _cls(self, x):
        if self.spec.backend == "timm":
            return self.net.forward_features(x)[:, 0]
        return self.net(pixel_values=x).last_hidden_state[:, 0]


def _autocast(device, dtype: str):
    import torch  # 1.4 s to import: only once a model is needed

    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def pick_device(device: str = "auto") -> str:
    import torch  # 1.4 s to import: only once a model is needed

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str) -> str:
    """fp32 on CPU (exact, and bf16 only pays on CPUs with native bf16); fp16 on GPUs."""
    if dtype != "auto":
        return dtype
    return "fp32" if device == "cpu" else "fp16"


def load(text: str, device: str = "auto", dtype: str = "auto") -> Embedder:
    """Load a model for embedding; raises WeightsUnavailable with a way out when it can't."""
    spec = resolve(text)
    _require_fetchable(spec)
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    if spec.backend == "timm":
        net, recipe = _load_timm(spec)
    else:
        net, recipe = _load_hf(spec)
    return Embedder(spec, net, recipe, device, dtype)


# --- transformers -------------------------------------------------------------------------------


def _load_hf(spec: ModelSpec):
    import transformers  # 0.7 s to import: only on this backend
    from transformers import AutoConfig, AutoModel  # 0.7 s

    transformers.logging.set_verbosity_error()  # "some weights not used" noise for ViT's pooler
    transformers.logging.disable_progress_bar()  # stderr belongs to our own progress line
    if os.path.isfile(spec.source):
        return _load_hf_file(Path(spec.source))
    # The cache first: a cached model loads without touching the network (an offline machine
    # would otherwise wait ~30 s in the hub client's retries before falling back to the cache).
    try:
        with _offline():
            config = AutoConfig.from_pretrained(spec.source, local_files_only=True)
        cached = True
    except (OSError, ValueError) as exc:
        cached = False
        if why := hub_unreachable():
            raise _unavailable(spec, exc, why) from None
        try:
            with _quiet_retries():
                config = AutoConfig.from_pretrained(spec.source)
        except (OSError, ValueError) as exc:
            raise _unavailable(spec, exc) from None
    if config.model_type not in HF_MODEL_TYPES:
        raise UnknownModel(
            f"{spec.id} is a {config.model_type!r} model; dinosearch embeds with DINOv2 or DINO "
            "vision transformers (model_type dinov2 or vit)"
        )
    kwargs = {"add_pooling_layer": False} if config.model_type == "vit" else {}
    try:
        with _offline(cached), _quiet_retries():
            net = _from_pretrained(AutoModel, spec.source, config, cached, kwargs)
    except (OSError, ValueError) as exc:
        raise _unavailable(spec, exc) from None
    return net, _hf_recipe(spec, config.model_type)


def _require_fetchable(spec: ModelSpec) -> None:
    """A hub model neither cached nor fetchable fails now, before torch and transformers are
    imported (seconds of a command that cannot succeed)."""
    if spec.backend != "hf" or os.path.exists(spec.source):
        return
    try:
        from huggingface_hub import try_to_load_from_cache  # 0.4 s (its HTTP stack)

        if isinstance(try_to_load_from_cache(spec.source, "config.json"), str):
            return
    except Exception:  # not a valid hub id, say: the loader's own error says more
        return
    if why := hub_unreachable():
        raise _unavailable(spec, OSError(f"{spec.source} is not in the cache"), why)


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be asked for files now (None: it answers), found with one
    request of at most HUB_PROBE_TIMEOUT_S; any HTTP answer counts as reachable."""
    from huggingface_hub import constants  # 0.4 s (its HTTP stack)
    from huggingface_hub.utils import get_session  # 0.4 s (its HTTP stack)

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    seen = _PROBED.get(constants.ENDPOINT)
    if seen and time.monotonic() - seen[0] < HUB_PROBE_REUSE_S:
        return seen[1]  # one load asks up to three times: one probe answers them all
    why = None
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as exc:  # the client's own errors: connection refused, timeout, DNS, TLS
        why = f"no answer from {constants.ENDPOINT} within {HUB_PROBE_TIMEOUT_S:g} s ({exc})"
    _PROBED[constants.ENDPOINT] = (time.monotonic(), why)
    return why


HUB_PROBE_REUSE_S = 60.0  # a probe's answer stands this long within one process
_PROBED: dict[str, tuple[float, str | None]] = {}  # endpoint -> (when, why unreachable)


@contextlib.contextmanager
def _offline(when: bool = True):
    """The hub client in offline mode for a cache-only load: it would otherwise still fetch its
    own registry from the hub first (waiting out a hub that does not answer)."""
    from huggingface_hub import constants  # 0.4 s (its HTTP stack)

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or when
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


@contextlib.contextmanager
def _quiet_retries():
    """The hub client's per-retry warnings would bury our own error: keep them off stderr."""
    http_log = logging.getLogger("huggingface_hub.utils._http")
    previous = http_log.level
    http_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        http_log.setLevel(previous)


def _from_pretrained(auto, source: str, config, cached: bool, kwargs: dict):
    """Fused scaled-dot-product attention where this transformers version has it for the model
    (bench/compute_bound.py: faster than eager on CPU, same vectors), else its default."""
    try:
        return auto.from_pretrained(
            source, config=config, local_files_only=cached, attn_implementation="sdpa", **kwargs
        )
    except (ValueError, ImportError, TypeError) as exc:
        if "attn" not in str(exc).lower() and "sdpa" not in str(exc).lower():
            raise
        return auto.from_pretrained(source, config=config, local_files_only=cached, **kwargs)


def _hf_recipe(spec: ModelSpec, model_type: str) -> Recipe:
    """Read preprocessor_config.json from the checkpoint, as AutoImageProcessor would."""
    path = Path(spec.source) / "preprocessor_config.json"
    if not path.exists():
        try:
            from huggingface_hub import hf_hub_download  # 0.4 s (its HTTP stack)

            with _offline():
                path = Path(
                    hf_hub_download(spec.source, "preprocessor_config.json", local_files_only=True)
                )
        except Exception:
            try:
                if hub_unreachable():
                    raise OSError("the hub cannot be reached")
                with _quiet_retries():
                    path = Path(hf_hub_download(spec.source, "preprocessor_config.json"))
            except Exception:  # no processor config published: the DINO default
                return Recipe()
    if not path.exists():
        return Recipe()  # the DINO/DINOv2 default: shorter side 256 bicubic, centre crop 224
    return recipe_from_processor_config(json.loads(path.read_text()))


def local_recipe(text: str) -> Recipe | None:
    """The model's preprocessing from files already on disk, with neither torch nor the network,
    so decoding can start while the model loads. None when only loading the model can tell."""
    text = text.strip()
    local = Path(text).expanduser()
    if local.is_file() or text.startswith(("timm/", "hf-hub:timm/")):
        return None
    if local.is_dir():
        if _is_timm_dir(local):
            return None
        path = local / "preprocessor_config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache  # 0.4 s (its HTTP stack)

            cached = try_to_load_from_cache(REGISTRY.get(text, text), "preprocessor_config.json")
        except Exception:  # not a valid hub id, or no hub client: let the model load decide
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return recipe_from_processor_config(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recipe_from_processor_config(cfg: dict) -> Recipe:
    size = cfg.get("size", {"shortest_edge": 256}) if cfg.get("do_resize", True) else None
    shortest, fixed = None, None
    if isinstance(size, int):
        fixed = (size, size)
    elif isinstance(size, dict) and "shortest_edge" in size:
        shortest = size["shortest_edge"]
    elif isinstance(size, dict):
        fixed = (size["height"], size["width"])
    crop = None
    if cfg.get("do_center_crop", False):
        c = cfg.get("crop_size", 224)
        crop = (c, c) if isinstance(c, int) else (c["height"], c["width"])
    return Recipe(
        shortest_edge=shortest,
        size=fixed,
        crop=crop,
        resample=int(cfg.get("resample", 3)),
        mean=tuple(cfg.get("image_mean", Recipe.mean)),
        std=tuple(cfg.get("image_std", Recipe.std)),
    )


def _load_hf_file(path: Path):
    """A bare weights file in transformers layout: architecture inferred from tensor shapes."""
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel  # 0.7 s

    state = _state_dict(path)
    proj = state["embeddings.patch_embeddings.projection.weight"]
    hidden, patch = int(proj.shape[0]), int(proj.shape[2])
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    grid = int(round((state["embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    # Heads leave no trace in the shapes: every DINO/DINOv2 ViT uses 64-wide heads.
    common: dict[str, Any] = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        patch_size=patch,
        image_size=grid * patch,
    )
    if "encoder.layer.0.layer_scale1.lambda1" in state:
        mlp = state.get("encoder.layer.0.mlp.fc1.weight")
        ratio = mlp.shape[0] // hidden if mlp is not None else 4
        net: Dinov2Model | ViTModel = Dinov2Model(Dinov2Config(mlp_ratio=ratio, **common))
    else:
        inter = int(state["encoder.layer.0.intermediate.dense.weight"].shape[0])
        net = ViTModel(ViTConfig(intermediate_size=inter, **common), add_pooling_layer=False)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise UnknownModel(f"{path} is missing {len(missing)} tensors, e.g. {missing[0]}")
    return net, Recipe()


def _state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # imports torch

        return load_file(str(path))
    import torch  # 1.4 s to import: only once a model is needed

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("model", state.get("state_dict", state))


# --- timm ---------------------------------------------------------------------------------------


def _load_timm(spec: ModelSpec):
    try:
        import timm  # optional extra (dinosearch[timm])
    except ImportError:
        raise RuntimeUnavailable(
            f"{spec.id} needs timm, which is not installed: pip install 'dinosearch[timm]'"
        ) from None
    kwargs = {}
    name = spec.source
    if os.path.isdir(spec.source):
        name = "local-dir:" + spec.source
    elif os.path.isfile(spec.source):
        name = _timm_arch_for_file(Path(spec.source))
        kwargs["pretrained_cfg_overlay"] = {"file": spec.source}
    try:
        with _offline_if_cached(spec):
            net = timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise UnknownModel(f"timm has no model {spec.source!r}") from None
        raise _unavailable(spec, exc) from None
    except (OSError, ValueError) as exc:
        raise _unavailable(spec, exc) from None
    cfg = timm.data.resolve_data_config({}, model=net)
    _, h, w = cfg["input_size"]
    resize = int(h / cfg["crop_pct"]) if cfg.get("crop_mode", "center") == "center" else h
    recipe = Recipe(
        shortest_edge=resize,
        crop=(h, w),
        resample=PIL_RESAMPLE.get(cfg["interpolation"], 3),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    return net, recipe


@contextlib.contextmanager
def _offline_if_cached(spec: ModelSpec):
    """timm always asks the hub first; when the weights are cached, or the hub does not answer,
    don't (see _load_hf)."""
    from huggingface_hub import try_to_load_from_cache  # 0.4 s (its HTTP stack)

    cached = isinstance(
        try_to_load_from_cache(f"timm/{spec.source}", "model.safetensors"), str
    ) or isinstance(try_to_load_from_cache(f"timm/{spec.source}", "pytorch_model.bin"), str)
    with _offline(cached or bool(hub_unreachable())), _quiet_retries():
        yield


def _timm_arch_for_file(path: Path) -> str:
    state = _state_dict(path)
    dim = int(state["patch_embed.proj.weight"].shape[0])
    patch = int(state["patch_embed.proj.weight"].shape[2])
    size = {384: "small", 768: "base", 1024: "large", 1536: "giant"}.get(dim)
    if size is None:
        raise UnknownModel(f"{path}: cannot tell the ViT size of a {dim}-wide checkpoint")
    return f"vit_{size}_patch{patch}_dinov2" if patch == 14 else f"vit_{size}_patch{patch}_224.dino"


# --- errors -------------------------------------------------------------------------------------


def _unavailable(
    spec: ModelSpec, exc: BaseException, unreachable: str | None = None
) -> WeightsUnavailable:
    if os.path.exists(spec.source):
        return WeightsUnavailable(f"cannot load model from {spec.source}: {exc}")
    from huggingface_hub import constants  # 0.4 s (its HTTP stack)

    hub_id = spec.source if spec.backend == "hf" else f"timm/{spec.source}"
    offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    if unreachable and not offline:
        exc = OSError(unreachable)
    return WeightsUnavailable(
        f"weights for {spec.id} are not available{offline}: not in the Hugging Face cache at "
        f"{constants.HF_HUB_CACHE} and the hub could not be reached.\n"
        "Ways out:\n"
        f"  - run once with network access so the weights are cached, or\n"
        f"  - download them: hf download {hub_id}   (or huggingface-cli download {hub_id}), or\n"
        "  - point at a local copy: --model /path/to/model-dir (config.json + model.safetensors)"
        f"\n(detail: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    )
