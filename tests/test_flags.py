"""`dinosearch flags`: quality flags measured at index time from the decoded pixels, stored by
content hash, added to a library made before them by its next `index`, over the CLI and the API.

The planted defects are made from the shared real photos: darkened, blown out, blurred, grey,
shrunk, cut to a strip, and flattened to one colour.
"""

import json
import shutil
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from indexer.decode import Recipe, decode_file
from indexer.quality import FLAGS, flags_of, measure, shape_values
from search.collection import Collection
from search.web.app import create_app
from tests.helpers import PHOTOS, invoke

CLEAN = ["kodim01.png", "kodim03.png", "kodim07.png", "kodim13.png", "kodim21.png"]


def planted(folder) -> dict[str, str]:
    """file name -> the flag it was made to raise."""
    img = Image.open(PHOTOS / "kodim05.png").convert("RGB")
    arr = np.asarray(img, dtype=np.float32)
    w, h = img.size
    made = {
        "dark.png": (Image.fromarray((arr * 0.1).astype(np.uint8)), "dark"),
        "bright.png": (
            Image.fromarray(np.clip(arr * 3 + 60, 0, 255).astype(np.uint8)),
            "overexposed",
        ),
        "blurred.jpg": (img.filter(ImageFilter.GaussianBlur(12)), "blurry"),
        "grey.jpg": (img.convert("L"), "grayscale"),
        "tiny.png": (img.resize((80, 80), Image.Resampling.LANCZOS), "tiny"),
        "strip.png": (img.crop((0, 0, w, w // 3)), "odd-aspect-ratio"),
        "flat.png": (Image.new("RGB", (w, h), (120, 90, 60)), "low-information"),
    }
    for name, (picture, _) in made.items():
        picture.save(folder / name, quality=92)
    return {name: flag for name, (_, flag) in made.items()}


@pytest.fixture
def curated(tmp_path, library):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in CLEAN:
        shutil.copy(PHOTOS / name, folder / name)
    expected = planted(folder)
    index(folder, library)
    return folder, library, expected


def index(folder, library) -> dict:
    return json.loads(
        invoke("index", folder, "--index", library, "--json", "--workers", "1").stdout
    )


def flags_json(library, *args) -> dict:
    return json.loads(invoke("flags", "--index", library, "--json", *args).stdout)


def test_planted_defects_are_flagged_and_real_photos_are_not(curated):
    folder, library, expected = curated
    out = flags_json(library)
    assert set(out) == {"flags", "stats"}
    by_name = {item["path"].rsplit("/", 1)[1]: item for item in out["flags"]}
    assert set(by_name) == set(expected)  # no clean photo is flagged
    for name, flag in expected.items():
        item = by_name[name]
        assert set(item) == {"path", "id", "flags", "values"}
        assert flag in item["flags"], (name, item)
        assert isinstance(item["id"], int) and item["path"] == str(folder / name)
        assert {"brightness", "sharpness"} <= set(item["values"])
    assert by_name["dark.png"]["flags"] == ["dark"]  # dark is not also "blurry" or "grey"
    assert by_name["grey.jpg"]["flags"] == ["grayscale"]
    stats = out["stats"]
    assert stats["images"] == stats["measured"] == len(CLEAN) + len(expected)
    assert stats["flagged"] == len(expected) and set(stats["counts"]) == set(FLAGS)


def test_the_flag_filter_and_the_table(curated):
    _, library, _ = curated
    out = flags_json(library, "--flag", "dark,tiny")
    names = sorted(item["path"].rsplit("/", 1)[1] for item in out["flags"])
    assert names == ["dark.png", "tiny.png"]
    assert out["stats"]["shown"] == 2 and out["stats"]["flagged"] == 7
    table = invoke("flags", "--index", library).stdout
    assert "blurred.jpg" in table and "low-information" in table
    assert f"7 of {len(CLEAN) + 7} images flagged" in table
    bad = invoke("flags", "--index", library, "--flag", "dim", expect=1)
    assert "unknown flag dim" in bad.stderr and "Traceback" not in bad.output


def test_the_api_answers_as_the_cli(curated):
    _, library, _ = curated
    with TestClient(create_app(Collection(library)), base_url="http://127.0.0.1:8000") as client:
        got = client.get("/api/flags", params={"flag": "blurry"})
        assert got.status_code == 200
        assert got.json() == flags_json(library, "--flag", "blurry")
        assert client.get("/api/flags", params={"flag": "nope"}).status_code == 400


def test_a_library_from_before_gets_its_measures_at_the_next_index(curated):
    folder, library, expected = curated
    with sqlite3.connect(library / "library.db") as db:  # as a library made before m005
        db.execute("drop table quality")
        db.execute("drop table evidence")  # m006 came later still
        db.execute("update meta set value = '4' where key = 'schema_version'")
    before = flags_json(library)
    assert before["stats"]["measured"] == 0
    # aspect and size come from the rows: those two flags hold without measures
    assert {i["path"].rsplit("/", 1)[1] for i in before["flags"]} == {"tiny.png", "strip.png"}
    again = index(folder, library)
    assert again["indexed"] == 0 and again["unchanged"] == len(CLEAN) + len(expected)
    after = flags_json(library)
    assert after["stats"]["measured"] == len(CLEAN) + len(expected)
    assert {i["path"].rsplit("/", 1)[1] for i in after["flags"]} == set(expected)
    moved = folder / "sub"
    moved.mkdir()
    (folder / "dark.png").rename(moved / "dark.png")  # measures follow the content
    index(folder, library)
    dark = flags_json(library, "--flag", "dark")["flags"]
    assert [d["path"] for d in dark] == [str(moved / "dark.png")]


def test_measures_do_not_depend_on_resolution(tmp_path):
    img = Image.open(PHOTOS / "kodim05.png").convert("RGB")
    img.save(tmp_path / "small.png")
    img.resize((2000, 2000), Image.Resampling.BICUBIC).save(tmp_path / "big.jpg", quality=95)
    small = decode_file(str(tmp_path / "small.png"), Recipe(), None).quality
    big = decode_file(str(tmp_path / "big.jpg"), Recipe(), None).quality  # JPEG-drafted
    assert abs(small["brightness"] - big["brightness"]) < 0.02
    assert 0.6 < big["sharpness"] / small["sharpness"] < 1.6
    assert flags_of({**small, **shape_values(500, 500)}) == []


def test_degenerate_images_measure_without_error():
    for img in (Image.new("RGB", (1, 1)), Image.new("RGB", (2, 300), (255, 255, 255))):
        values = measure(img)
        assert values["sharpness"] == 0 and values["information"] == 0
