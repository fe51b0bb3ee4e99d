"""The one decoder: odd modes, orientation, and the decompression-bomb guard."""

import numpy as np
import pytest
from PIL import Image

from indexer.decode import Recipe, decode_bytes, decode_file
from indexer.errors import DecompressionBomb, ImageError
from tests.helpers import IMAGEDEDUP, PHOTOS, hostile_corpus, png_header_only

RECIPE = Recipe()


def test_small_file_claiming_gigapixels_is_refused_before_decoding():
    data = png_header_only(60_000, 60_000)
    assert len(data) < 200
    with pytest.raises(DecompressionBomb, match="3600 megapixels"):
        decode_bytes(data, RECIPE, 250_000_000)


@pytest.mark.slow
def test_a_real_200_megapixel_photo_indexes(tmp_path):
    """16320 x 12240 (a 200 MP phone sensor) is over Pillow's own guard but must decode."""
    with Image.open(PHOTOS / "kodim03.png") as img:
        big = img.convert("RGB").resize((16320, 12240), Image.Resampling.NEAREST)
    path = tmp_path / "200mp.jpg"
    big.save(path, quality=85)
    del big
    decoded = decode_file(str(path), RECIPE, 250_000_000)
    assert (decoded.width, decoded.height) == (16320, 12240)
    assert decoded.pixels.shape == (224, 224, 3)


@pytest.mark.parametrize(
    "mode", ["L", "LA", "RGBA", "P", "P+transparency", "CMYK", "I;16", "I", "F", "1"]
)
def test_every_mode_becomes_rgb(mode, tmp_path):
    with Image.open(PHOTOS / "kodim04.png") as img:
        src = img.convert("RGB")
    if mode in ("I;16", "I"):
        arr = np.asarray(src.convert("L"), dtype=np.uint16) * 257
        img = Image.fromarray(arr.astype(np.uint16 if mode == "I;16" else np.int32))
        fmt = "PNG" if mode == "I;16" else "TIFF"
    elif mode == "F":
        img = Image.fromarray(np.asarray(src.convert("L"), dtype=np.float32) / 255, "F")
        fmt = "TIFF"
    else:
        img = src.convert(mode.split("+")[0])
        fmt = "TIFF" if mode == "CMYK" else "PNG"
    path = tmp_path / f"img.{fmt.lower()}"
    img.save(path, fmt, **({"transparency": 0} if "transparency" in mode else {}))
    decoded = decode_file(str(path), RECIPE, None)
    assert decoded.pixels.shape == (224, 224, 3) and decoded.pixels.dtype == np.uint8
    assert 20 < decoded.pixels.mean() < 235  # not blank: 16-bit scaled, not clipped to white


def test_16_bit_grey_matches_its_8_bit_version(tmp_path):
    with Image.open(PHOTOS / "kodim04.png") as img:
        grey = img.convert("L")
    Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257).save(tmp_path / "g16.png")
    grey.save(tmp_path / "g8.png")
    a = decode_file(str(tmp_path / "g16.png"), RECIPE, None).pixels.astype(int)
    b = decode_file(str(tmp_path / "g8.png"), RECIPE, None).pixels.astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_decode_upright(orientation, tmp_path):
    with Image.open(PHOTOS / "kodim05.png") as img:
        upright = img.convert("RGB")
    # store the pixels so that applying `orientation` gives the upright picture back
    inverse = hostile_corpus.STORE[orientation]
    stored = upright if inverse is None else upright.transpose(inverse)  # FLIP_LEFT_RIGHT == 0
    exif = Image.Exif()
    exif[274] = orientation
    path = tmp_path / f"o{orientation}.png"
    stored.save(path, exif=exif)
    decoded = decode_file(str(path), RECIPE, None)
    reference = decode_file(str(PHOTOS / "kodim05.png"), RECIPE, None)
    assert (decoded.width, decoded.height) == upright.size
    assert np.abs(decoded.pixels.astype(int) - reference.pixels.astype(int)).max() <= 1


def test_animated_gif_uses_the_first_frame():
    decoded = decode_file(str(IMAGEDEDUP / "formats_images" / "giphy.gif"), RECIPE, None)
    assert decoded.format == "GIF" and decoded.pixels.shape == (224, 224, 3)


def test_exif_capture_time_is_read(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2021:07:04 18:30:05"
    with Image.open(PHOTOS / "kodim06.png") as img:
        img.convert("RGB").save(tmp_path / "t.jpg", exif=exif)
    assert decode_file(str(tmp_path / "t.jpg"), RECIPE, None).taken == "2021-07-04T18:30:05"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"GIF89a" + b"\x00" * 20, "decode|not an image|truncated"),
        (b"hello world, not an image", "not an image"),
    ],
)
def test_bad_bytes_raise_image_error(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_bytes(data, RECIPE, None)


def test_truncated_jpeg_is_an_error(tmp_path):
    with Image.open(PHOTOS / "kodim07.png") as img:
        img.convert("RGB").save(tmp_path / "x.jpg", quality=90)
    data = (tmp_path / "x.jpg").read_bytes()
    for cut in (200, len(data) // 3, len(data) - 100):
        with pytest.raises(ImageError):
            decode_bytes(data[:cut], RECIPE, None)
