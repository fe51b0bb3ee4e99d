"""Outliers a new user met (issue 26, item 9): one photo's copies filled 4 of the top 10. Now each
picture has one entry, its most unusual file's, with `copies` (how many others it stands for)
and `copy_paths`; the copies are the `dups` groups once the library has its calibration, else the
byte-identical files (outliers never load a model)."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.files import sha256_file
from search.collection import Collection
from search.curate import outliers as O
from search.web.app import create_app
from tests.helpers import PHOTOS, index, invoke
from tests.messy_library import graphics

KEYS = {"rank", "id", "path", "score", "nearest", "copies", "copy_paths"}


@pytest.fixture(scope="module")
def odd_with_copies(tmp_path_factory):
    """10 photos and one odd picture (a checkerboard) with a Backup/ and a Downloads/ byte copy
    and a lossless WebP of the same pixels in Exports/: 14 files, 11 pictures."""
    root = tmp_path_factory.mktemp("outliers") / "pictures"
    (root / "Photos").mkdir(parents=True)
    for src in sorted(PHOTOS.glob("*.png"))[:10]:
        with Image.open(src) as img:
            img.convert("RGB").save(root / "Photos" / f"{src.stem}.jpg", quality=90)
    odd = root / "Scans" / "checkerboard.png"
    odd.parent.mkdir()
    board = graphics()["checkerboard.png"]
    board.save(odd)
    for folder in ("Backup", "Downloads"):
        (root / folder).mkdir()
        shutil.copy(odd, root / folder / odd.name)
    (root / "Exports").mkdir()
    board.save(root / "Exports" / "checkerboard.webp", lossless=True)
    library = root.parent / "library"
    index(root, library)
    return root, library


def outliers(library, *args) -> dict:
    return json.loads(invoke("outliers", "--index", library, "--json", *args).stdout)


def pictures_of(root: Path) -> dict[str, str]:
    """path -> the picture it shows (the odd one's four files are one picture)."""
    return {str(p): "board" if "checkerboard" in p.name else p.stem for p in root.rglob("*.*")}


def test_each_picture_is_listed_once_with_its_byte_copies(odd_with_copies):
    root, library = odd_with_copies
    data = outliers(library, "-n", "14")
    hashes = Counter(sha256_file(o["path"]) for o in data["outliers"])
    assert max(hashes.values()) == 1  # no byte copy listed beside its original
    assert all(set(o) == KEYS for o in data["outliers"])
    assert data["stats"]["copies_from"] == "bytes"  # no calibration yet: no model loaded
    (board,) = [o for o in data["outliers"] if o["path"].endswith("checkerboard.png")]
    assert board["copies"] == 2 and len(board["copy_paths"]) == 2
    assert all(sha256_file(p) == sha256_file(board["path"]) for p in board["copy_paths"])
    assert board["nearest"] not in board["copy_paths"] and board["nearest"] != board["path"]
    assert len(data["outliers"]) == 12  # 14 files, 2 of them byte copies
    assert data["stats"]["copies_folded"] == 2
    text = invoke("outliers", "--index", library, "-n", "14").stdout
    assert "+2 copies" in text


def test_once_dups_has_calibrated_its_groups_fold_the_pixel_twin_too(odd_with_copies, tmp_path):
    root, shared = odd_with_copies
    library = shutil.copytree(shared, tmp_path / "library")  # the module's stays uncalibrated
    invoke("dups", "--index", library, "--json")  # the first dups run stores the calibration
    data = outliers(library, "-n", "14")
    assert data["stats"]["copies_from"] == "dups"
    seen = Counter(pictures_of(root)[o["path"]] for o in data["outliers"])
    assert seen["board"] == 1  # 4 files of one picture: one entry
    (board,) = [o for o in data["outliers"] if pictures_of(root)[o["path"]] == "board"]
    assert board["copies"] == 3
    assert {Path(p).parent.name for p in [board["path"], *board["copy_paths"]]} == {
        "Scans",
        "Backup",
        "Downloads",
        "Exports",
    }
    # the web route answers the same object
    with TestClient(create_app(Collection(library)), base_url="http://127.0.0.1") as client:
        got = client.get("/api/outliers", params={"n": 14}).json()
    assert [(o["path"], o["copies"]) for o in got["outliers"]] == [
        (o["path"], o["copies"]) for o in data["outliers"]
    ]
    # a keep-list that drops the top outliers drops their copies with them
    keep = tmp_path / "keep.txt"
    invoke("dups", "--index", library, "--keep-list", keep, "--drop-outliers", "11")
    assert not {str(p) for p in root.rglob("checkerboard.*")} & set(keep.read_text().split("\n"))


def test_find_outliers_folds_given_groups_and_names_a_nearest_outside_them():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 16)).astype(np.float32) + 3  # a crowd
    vectors[:4] = rng.standard_normal(16) - 3  # one odd picture in 4 identical files
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = {i: f"/img/{i}" for i in range(200)}

    def paths_of(ids):
        return {int(i): paths[int(i)] for i in ids}

    plain = O.find_outliers(np.arange(200), vectors, paths_of, 5)
    assert {o.id for o in plain.outliers[:4]} == {0, 1, 2, 3}  # the copies fill the top
    folded = O.find_outliers(np.arange(200), vectors, paths_of, 5, groups=[[0, 1, 2, 3]])
    first = folded.outliers[0]
    assert first.id in {0, 1, 2, 3} and first.copies == 3
    assert sorted([first.id, *first.copy_ids]) == [0, 1, 2, 3]
    assert all(o.id >= 4 for o in folded.outliers[1:])
    assert first.nearest not in {f"/img/{i}" for i in range(4)}
    assert len(folded.outliers) == 5 and folded.stats["copies_folded"] == 3
