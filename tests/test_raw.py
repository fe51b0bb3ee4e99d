"""Camera RAW (indexer/raw.py) through the real commands, on real DNGs made from real photos
(tests/raw_samples.py): the embedded preview when it is large enough, else a demosaic, upright
either way; bad RAWs reported with a reason; a RAW and its JPEG one capture, each finding the
other."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.decode import Recipe, decode_file, thumbnail_jpeg
from indexer.errors import ImageError
from tests.helpers import PHOTOS, SHARED, invoke, stored_rows
from tests.raw_samples import write_dng

SOURCE = SHARED / "photos-more" / "set14_img_001_SRF_2_HR.png"  # 500x480: orientation shows
OTHERS = sorted(PHOTOS.glob("*.png"))[:4]


def upright_correlation(pixels: np.ndarray, source: Path) -> float:
    """Correlation of a decoded picture with the upright source at the same size."""
    h, w = pixels.shape[:2]
    with Image.open(source) as img:
        ref = np.asarray(img.convert("L").resize((w, h)), dtype=float)
    return float(np.corrcoef(pixels.mean(axis=2).ravel(), ref.ravel())[0, 1])


@pytest.mark.parametrize(
    "preview, orientation, how",
    [
        (None, 1, "demosaic"),
        (None, 6, "demosaic"),
        (400, 6, "preview"),
        (400, 3, "preview"),
        (100, 8, "demosaic"),
    ],  # a preview smaller than the model's input: demosaic instead
)
def test_a_dng_is_read_upright_the_fast_way_when_it_can(tmp_path, preview, orientation, how):
    dng = write_dng(SOURCE, tmp_path / "photo.dng", preview, orientation)
    recipe = Recipe(shortest_edge=256, crop=None)  # no crop: the whole frame is compared
    decoded = decode_file(str(dng), recipe, None)
    assert decoded.format == f"DNG ({how})"
    assert (decoded.width, decoded.height) == Image.open(SOURCE).size  # the upright full size
    # turned the wrong way the correlation is under 0.1
    assert upright_correlation(decoded.pixels, SOURCE) > (0.95 if how == "preview" else 0.8)


def test_bad_raws_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.nef"
    junk.write_bytes(b"not a raw file at all" * 100)
    cut = write_dng(SOURCE, tmp_path / "cut.dng")
    cut.write_bytes(cut.read_bytes()[:2000])
    for path in (junk, cut):
        with pytest.raises(ImageError, match="RAW"):
            decode_file(str(path), Recipe(), None)


def test_raw_files_are_indexed_with_their_jpeg_as_one_capture(tmp_path, trash):
    folder = tmp_path / "card"
    folder.mkdir()
    write_dng(SOURCE, folder / "IMG_0001.DNG", preview_px=480, orientation=6)
    with Image.open(SOURCE) as img:
        img.convert("RGB").save(folder / "IMG_0001.JPG", quality=92)
    for n, other in enumerate(OTHERS):
        write_dng(other, folder / f"IMG_01{n}.dng")  # demosaiced: no preview
    (folder / "IMG_0099.CR2").write_bytes(b"\x00" * 4096)  # a corrupt RAW
    library = tmp_path / "library"
    summary = json.loads(invoke("index", folder, "--index", library, "--json").stdout)
    assert summary["indexed"] == 2 + len(OTHERS)
    assert [Path(f["path"]).name for f in summary["failed"]] == ["IMG_0099.CR2"]
    assert "RAW" in summary["failed"][0]["error"]
    formats = {
        Path(r["path"]).name: r["format"] for r in stored_rows(library) if r["status"] == "ok"
    }
    assert formats["IMG_0001.DNG"] == "DNG (preview)" and formats["IMG_010.dng"] == "DNG (demosaic)"
    # the RAW finds its JPEG and the JPEG its RAW
    for query, other in (("IMG_0001.DNG", "IMG_0001.JPG"), ("IMG_0001.JPG", "IMG_0001.DNG")):
        hits = json.loads(
            invoke("query", folder / query, "--index", library, "-k", "2", "--json").stdout
        )["results"]
        assert Path(hits[1]["path"]).name == other
    # a plan never trashes the RAW for its JPEG or the other way round
    plan_path = tmp_path / "plan.json"
    invoke("dups", "--index", library, "--threshold", "0.9", "--plan", plan_path)
    plan = json.loads(plan_path.read_text())
    pair = [g for g in plan["groups"] if {Path(f["path"]).stem for f in g["files"]} == {"IMG_0001"}]
    assert pair and all(f["action"] == "keep" for f in pair[0]["files"])


def test_a_raw_has_a_thumbnail(tmp_path):
    dng = write_dng(SOURCE, tmp_path / "photo.dng")
    data = thumbnail_jpeg(str(dng), 128, None)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and max(img.size) == 128
