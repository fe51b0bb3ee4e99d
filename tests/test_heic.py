"""HEIC/HEIF read the fast way: the embedded thumbnail when it is large enough for the model's
input, the primary image otherwise, upright, with the capture time; cut or corrupt files are
failures with a reason, never a vector made from what is left.

The HEICs are made from the shared real photos with pillow-heif (libheif + x265), with and
without thumbnails, like a phone's (a 320x240 thumbnail beside a tiled grid primary image).
"""

import json
import os
import shutil

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from indexer import decode_pool
from indexer.decode import Recipe, decode_file, thumbnail_jpeg
from tests.helpers import HEIF, PHOTOS, invoke

DEFAULT = Recipe()  # DINOv2: shorter side 256, centre crop 224
FAST = Recipe(shortest_edge=224, crop=(196, 196))  # index --fast
WEIGHTS = os.environ.get("DINOSEARCH_REAL_WEIGHTS")


def photo(name: str = "kodim05.png", size: tuple[int, int] | None = None) -> Image.Image:
    img = Image.open(PHOTOS / name).convert("RGB")
    return img.resize(size, Image.Resampling.BICUBIC) if size else img


def save_heic(img: Image.Image, path, thumbnails: list[int], tile: int = 0, **kwargs):
    pillow_heif.from_pillow(img).save(
        path,
        quality=85,
        thumbnails=thumbnails,
        tile_size=tile,
        enc_params={"preset": "fast"},
        **kwargs,
    )
    return path


def exif(orientation: int, taken: str) -> bytes:
    data = Image.Exif()
    data[274] = orientation
    data[0x8769] = {36867: taken}
    return data.tobytes()


@pytest.fixture(scope="module")
def heics(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("heics")
    wide = photo(size=(600, 400))
    made = {
        "thumb": save_heic(wide, folder / "thumb.heic", [480]),  # 480x320: both recipes
        "small-thumb": save_heic(wide, folder / "small-thumb.heic", [120]),
        "none": save_heic(wide, folder / "none.heic", []),
        # a phone's: 1024x768 grid of 256 px tiles, thumbnail 320x240 (240 px: within 0.9 of
        # the default recipe's 256, so both recipes take it)
        "phone": save_heic(photo("kodim07.png", (1024, 768)), folder / "phone.heic", [320], 256),
        "rotated": save_heic(
            wide, folder / "rotated.heic", [480], exif=exif(6, "2023:07:14 09:30:05")
        ),
    }
    return {k: str(v) for k, v in made.items()}


def test_a_large_enough_thumbnail_is_read_instead_of_the_image(heics):
    for recipe in (DEFAULT, FAST):
        d = decode_file(heics["thumb"], recipe, None)
        assert d.format == "HEIF (thumbnail)"
        assert (d.width, d.height) == (600, 400)  # the image's size, not the thumbnail's
        assert d.pixels.shape == (*recipe.input_size, 3)


def test_a_thumbnail_smaller_than_the_model_input_is_not_used(heics):
    assert decode_file(heics["small-thumb"], DEFAULT, None).format == "HEIF (primary)"
    assert decode_file(heics["none"], DEFAULT, None).format == "HEIF (primary)"
    # the phone's 320x240 thumbnail: 240 px is 0.94 of the default 256 (>= 0.9: taken), and
    # over --fast's 224 px; the sizes recorded are the image's
    phone = decode_file(heics["phone"], DEFAULT, None)
    assert phone.format == "HEIF (thumbnail)" and (phone.width, phone.height) == (1024, 768)
    assert decode_file(heics["phone"], FAST, None).format == "HEIF (thumbnail)"
    just_short = Recipe(shortest_edge=267, crop=(224, 224))  # 240 < 0.9 * 267 = 240.3: not
    assert decode_file(heics["phone"], just_short, None).format == "HEIF (primary)"
    # a recipe larger than every thumbnail reads the primary image
    big = Recipe(shortest_edge=384, crop=(384, 384))
    assert decode_file(heics["thumb"], big, None).format == "HEIF (primary)"


def test_orientation_and_capture_time_hold_on_both_paths(heics):
    upright = photo(size=(600, 400)).transpose(Image.Transpose.ROTATE_270)  # EXIF 6: 90° CW
    for recipe, how in ((DEFAULT, "thumbnail"), (Recipe(shortest_edge=384, crop=None), "primary")):
        d = decode_file(heics["rotated"], recipe, None)
        assert d.format == f"HEIF ({how})"
        assert (d.width, d.height) == (400, 600)
        assert d.taken == "2023-07-14T09:30:05"
        ref = np.asarray(upright.resize(d.pixels.shape[1::-1], Image.Resampling.BICUBIC))
        wrong = np.asarray(
            photo(size=(600, 400)).resize(d.pixels.shape[1::-1], Image.Resampling.BICUBIC)
        )
        if recipe.crop:
            ref = wrong = None  # centre crops: compare against the full decode instead
            full = decode_file(heics["rotated"], Recipe(shortest_edge=384, crop=None), None)
            small = Image.fromarray(full.pixels).resize((256, 384), Image.Resampling.BICUBIC)
            top = (384 - 224) // 2
            ref = np.asarray(small)[top : top + 224, 16:240]
            wrong = np.asarray(Image.fromarray(ref).transpose(Image.Transpose.ROTATE_180))
        err = np.abs(d.pixels.astype(float) - ref).mean()
        assert err < 12 < np.abs(d.pixels.astype(float) - wrong).mean(), err


def test_the_thumbnail_path_gives_nearly_the_full_decodes_model_input(heics):
    pillow_heif.options.THUMBNAILS = False
    try:
        full = decode_file(heics["thumb"], DEFAULT, None)
    finally:
        pillow_heif.options.THUMBNAILS = True
    assert full.format == "HEIF (primary)"
    fast = decode_file(heics["thumb"], DEFAULT, None)
    other = decode_file(heics["phone"], DEFAULT, None)  # another photo: the scale of "far"
    diff = np.abs(fast.pixels.astype(float) - full.pixels.astype(float)).mean()
    far = np.abs(other.pixels.astype(float) - full.pixels.astype(float)).mean()
    # libheif scales the thumbnail from the image (nearest neighbour), then HEVC-codes it
    assert diff < 12 and far > 4 * diff, (diff, far)


@pytest.mark.skipif(not WEIGHTS, reason="set DINOSEARCH_REAL_WEIGHTS to the real weights dir")
def test_the_thumbnail_vector_is_close_to_the_full_decodes_with_real_weights(tmp_path):
    from indexer import runtime  # loads torch: only with the real weights

    embedder = runtime.load(WEIGHTS, "cpu", "fp32", "torch")
    paths = [
        str(save_heic(photo(f"kodim{i:02d}.png"), tmp_path / f"{i}.heic", [320]))
        for i in (1, 5, 9, 13, 17, 21)
    ]
    thumbs = [decode_file(p, embedder.recipe, None) for p in paths]
    pillow_heif.options.THUMBNAILS = False
    try:
        full = [decode_file(p, embedder.recipe, None) for p in paths]
    finally:
        pillow_heif.options.THUMBNAILS = True
    assert {d.format for d in thumbs} == {"HEIF (thumbnail)"}
    a = embedder.embed(np.stack([d.pixels for d in thumbs]))
    b = embedder.embed(np.stack([d.pixels for d in full]))
    assert (a * b).sum(axis=1).min() > 0.97


def test_cut_and_corrupt_heics_are_failures_with_a_reason(tmp_path, heics, library):
    folder = tmp_path / "bad"
    shutil.copytree(HEIF / "heif_corrupted", folder / "corrupted")
    shutil.copytree(HEIF / "heif_truncated", folder / "truncated")
    for name in ("thumb", "phone"):
        data = open(heics[name], "rb").read()
        for percent in (10, 50, 90, 99):  # a grid with missing tiles, a thumbnail left intact
            (folder / f"{name}-cut{percent}.heic").write_bytes(data[: len(data) * percent // 100])
    shutil.copy(heics["thumb"], folder / "good.heic")
    out = invoke("index", folder, "--index", library, "--json", "--workers", "1")
    summary = json.loads(out.stdout)
    failed = {os.path.basename(f["path"]): f["error"] for f in summary["failed"]}
    assert len(failed) == 4 + 8 and all(failed.values())
    assert all("truncated" in failed[f"phone-cut{p}.heic"] for p in (10, 50, 90, 99))
    assert summary["indexed"] == 1 and "Traceback" not in out.stderr


def test_page_thumbnails_of_a_heic_are_upright(heics):
    data = thumbnail_jpeg(heics["rotated"], 160, None)
    from io import BytesIO

    with Image.open(BytesIO(data)) as img:
        assert img.size == (107, 160)  # 400x600 upright, fitted into 160 px


def test_heic_folders_get_a_decode_worker_per_core(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert decode_pool.default_workers() == 7
    assert decode_pool.default_workers(["a.jpg", "b.png", "c.heic"]) == 7
    assert decode_pool.default_workers(["a.HEIC", "b.heif", "c.jpg"]) == 8
    assert decode_pool.heif_threads(1) == 8 and decode_pool.heif_threads(8) == 1
