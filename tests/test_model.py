"""Model loading through the real transformers path, its preprocessing, and its failure modes."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor

from indexer import model
from indexer.decode import decode_file, preprocess, to_rgb
from indexer.errors import UnknownModel
from indexer.model import load, local_recipe
from tests.checkpoints import tiny_dinov2
from tests.helpers import PHOTOS, model_input, run_cli

PHOTO_FILES = sorted(PHOTOS.glob("*.png"))


@pytest.mark.parametrize("repo_id", ["facebook/dinov2-small", "facebook/dino-vits16"])
def test_preprocessing_matches_the_hf_image_processor(repo_id):
    processor = AutoImageProcessor.from_pretrained(repo_id)
    recipe = model.load(repo_id).recipe
    for path in PHOTO_FILES:
        with Image.open(path) as img:
            expected = processor(images=img, return_tensors="np")["pixel_values"][0]
        ours = decode_file(str(path), recipe, None).pixels.astype(np.float32) / 255
        ours = (ours - np.array(recipe.mean)) / np.array(recipe.std)
        np.testing.assert_allclose(ours.transpose(2, 0, 1), expected, atol=1e-4, err_msg=str(path))


def test_jpeg_draft_decoding_stays_close_to_full_decode(tmp_path):
    """Draft (DCT-domain downscale) is a speed lever; it must not change what the model sees
    by more than JPEG noise."""
    recipe = model.load("dinov2-small").recipe
    with Image.open(PHOTO_FILES[0]) as img:
        big = img.convert("RGB").resize((3072, 2048), Image.Resampling.LANCZOS)
    path = tmp_path / "big.jpg"
    big.save(path, quality=92)
    drafted = decode_file(str(path), recipe, None).pixels.astype(np.float32)
    with Image.open(path) as img:
        full = np.asarray(preprocess(to_rgb(img.convert("RGB")), recipe), dtype=np.float32)
    assert np.abs(drafted - full).mean() < 3.0  # of 255


def test_embedding_is_the_normalised_cls_token_after_the_final_norm():
    embedder = model.load("facebook/dinov2-small")
    pixels = decode_file(str(PHOTO_FILES[0]), embedder.recipe, None).pixels[None]
    ours = embedder.embed(pixels)[0]
    with torch.no_grad():
        out = embedder.net(pixel_values=model_input(pixels, embedder.recipe))
    cls = out.last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(ours, cls / np.linalg.norm(cls), atol=1e-5)
    assert abs(np.linalg.norm(ours) - 1) < 1e-5


def test_dino_v1_uses_the_cls_token_not_the_random_pooler():
    embedder = model.load("dino-vits16")
    assert getattr(embedder.net, "pooler", None) is None


def test_registry_and_name_resolution(tmp_path):
    assert model.resolve("dinov2-small") == model.ModelSpec(
        "facebook/dinov2-small", "hf", "facebook/dinov2-small"
    )
    assert model.resolve("dino-vitb8").id == "facebook/dino-vitb8"
    assert model.resolve("timm/vit_small_patch14_dinov2.lvd142m").backend == "timm"
    assert model.resolve("someone/their-dinov2").backend == "hf"
    with pytest.raises(UnknownModel):
        model.resolve("resnet50")
    with pytest.raises(UnknownModel):
        model.resolve(str(tmp_path / "missing.safetensors"))


def test_local_weights_file_infers_the_architecture(tmp_path):
    net = tiny_dinov2(5, hidden_size=128, num_attention_heads=2)
    net.save_pretrained(tmp_path / "dir")
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    from_file = model.load(str(weights))
    from_hub = model.load(str(tmp_path / "dir"))
    pixels = decode_file(str(PHOTO_FILES[1]), from_hub.recipe, None).pixels[None]
    np.testing.assert_allclose(from_file.embed(pixels), from_hub.embed(pixels), atol=1e-5)


def test_unavailable_weights_exit_2_with_the_ways_out(tmp_path):
    proc = run_cli(
        "index", PHOTOS, "--index", tmp_path / "lib", "--model", "dinov2-large", check=False
    )
    assert proc.returncode == 2
    err = proc.stderr
    assert "facebook/dinov2-large" in err and "hub" in err
    assert "hf download facebook/dinov2-large" in err and "--model /path/to/" in err
    assert "Traceback" not in err


def test_local_recipe_reads_the_checkpoint_config_without_loading_it(hub_cache):
    # The cached hub checkpoint: same recipe as the loaded model, no torch needed to get it.
    assert local_recipe("dinov2-small") == load("dinov2-small", device="cpu").recipe
    assert local_recipe("timm/vit_small_patch14_dinov2.lvd142m") is None  # only timm can tell
    assert local_recipe("facebook/not-cached") is None
