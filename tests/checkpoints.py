"""Tiny random-init checkpoints of the real architectures, written where the real loader looks.

They go into a Hugging Face cache (models--org--name/snapshots/<rev>/, refs/main) under the real
repo ids, so `--model facebook/dinov2-small` resolves offline through transformers' normal path.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

REVISION = "0" * 40

DINOV2_PROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 256},
}
# facebook/dino-vits16 publishes a ViT feature extractor config: 224x224 bilinear, no crop.
DINO_V1_PROCESSOR = {
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ViTFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 2,
    "size": 224,
}


def snapshot_dir(hub_cache: Path, repo_id: str) -> Path:
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    snap = repo / "snapshots" / REVISION
    snap.mkdir(parents=True, exist_ok=True)
    return snap


# The real layout at a toy width: 2 layers of 3 heads over 48 features, 224 x 224 input.
TINY = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 3, "image_size": 224}


def seeded(seed: int, build):
    """build() in eval mode, its weights drawn after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return build().eval()


def tiny_dinov2(seed: int = 0, **config):
    """A random-init DINOv2 (ViT/14); `config` overrides the tiny sizes."""
    config = {**TINY, "mlp_ratio": 2, "patch_size": 14, **config}
    return seeded(seed, lambda: Dinov2Model(Dinov2Config(**config)))


def tiny_dino_v1(seed: int = 0):
    """A random-init DINO v1 ViT-S/16 layout, with its pooler as the hub checkpoint has one."""
    config = ViTConfig(**TINY, intermediate_size=96, patch_size=16)
    return seeded(seed, lambda: ViTModel(config, add_pooling_layer=True))


def write_hf(directory: Path, model, processor: dict) -> Path:
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "preprocessor_config.json").write_text(json.dumps(processor))
    return directory


def populate_hub_cache(hub_cache: Path) -> None:
    write_hf(snapshot_dir(hub_cache, "facebook/dinov2-small"), tiny_dinov2(0), DINOV2_PROCESSOR)
    write_hf(snapshot_dir(hub_cache, "facebook/dinov2-base"), tiny_dinov2(1), DINOV2_PROCESSOR)
    write_hf(snapshot_dir(hub_cache, "facebook/dino-vits16"), tiny_dino_v1(2), DINO_V1_PROCESSOR)


def populate_timm_cache(hub_cache: Path, name: str = "vit_small_patch14_dinov2.lvd142m") -> None:
    """timm's own architecture (full size: timm fixes it by name), random init, in hub layout."""
    import timm  # optional extra (dinosearch[timm])

    torch.manual_seed(3)
    model = timm.create_model(name, pretrained=False)
    with torch.no_grad():  # timm starts LayerScale at 1e-5, which makes every image look alike
        for key, param in model.named_parameters():
            if key.endswith(".gamma"):
                param.fill_(1.0)
    snap = snapshot_dir(hub_cache, f"timm/{name}")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "model.safetensors")
    )
    cfg = {
        "architecture": name.split(".")[0],
        "num_classes": model.num_classes,
        "pretrained_cfg": dict(model.pretrained_cfg),
    }
    (snap / "config.json").write_text(json.dumps(cfg, default=str))
