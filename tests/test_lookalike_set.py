"""The look-alike benchmark set's ground truth (bench/make_lookalike_set.py): sizes, one source
per file, no overlapping content, planted copies listed, deterministic for a seed. No model."""

import hashlib
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import ROOT, SHARED

if not (SHARED / "photos").is_dir():
    pytest.skip("needs ../shared/testdata", allow_module_level=True)

if str(ROOT / "bench") not in sys.path:  # the builder imports its sibling bench/harness.py
    sys.path.append(str(ROOT / "bench"))
_spec = importlib.util.spec_from_file_location(
    "make_lookalike_set", ROOT / "bench" / "make_lookalike_set.py"
)
lookalike = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lookalike)

LOWINFO = {"near-black", "document", "graphic", "sky"}


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("lookalike")
    return {
        size: (base / f"set{size}", lookalike.build(size, base / f"set{size}", seed=0))
        for size in (20, 60)
    }


@pytest.mark.parametrize("size", [20, 60])
def test_every_file_is_listed_once_with_one_source(built, size):
    folder, truth = built[size]
    on_disk = {p for p in _digest(folder) if p != "groundtruth.json"}
    assert len(on_disk) == size == truth["counts"]["files"]
    assert on_disk == set(truth["files"])
    # Each file belongs to exactly one source, and each source lists exactly its own files.
    listed = Counter(f for s in truth["sources"].values() for f in s["files"])
    assert set(listed) == on_disk and max(listed.values()) == 1
    for path, info in truth["files"].items():
        assert path in truth["sources"][info["source"]]["files"]
    for path in on_disk:  # every file is a readable image
        with Image.open(folder / path) as img:
            img.verify()


@pytest.mark.parametrize("size", [20, 60])
def test_most_files_have_no_copy_and_kinds_are_labelled(built, size):
    _, truth = built[size]
    sources = truth["sources"]
    copied = [s for s in sources.values() if len(s["files"]) > 1]
    assert 1 <= len(copied) <= 0.15 * len(sources)
    kinds = Counter(s["kind"] for s in sources.values())
    for kind in LOWINFO:
        assert 2 <= kinds[kind] <= 4, kinds
    assert set(kinds) <= LOWINFO | {"photo", "tile"}
    file_kinds = {f["kind"] for f in truth["files"].values()}
    assert file_kinds <= LOWINFO | {"original", "copy"}


@pytest.mark.parametrize("size", [20, 60])
def test_planted_copies_are_listed_as_pairs(built, size):
    folder, truth = built[size]
    pairs = {tuple(p) for p in truth["planted_pairs"]}
    copies = {p: f for p, f in truth["files"].items() if f["kind"] == "copy"}
    assert copies and len(copies) == truth["counts"]["copies"]
    for path, info in copies.items():
        assert info["transform"] in lookalike.TRANSFORMS
        assert truth["files"][info["copy_of"]]["source"] == info["source"]
        assert tuple(sorted((path, info["copy_of"]))) in pairs
    # Exactly the same-source pairs, nothing else.
    expected = {
        tuple(sorted((a, b)))
        for s in truth["sources"].values()
        for i, a in enumerate(s["files"])
        for b in s["files"][i + 1 :]
    }
    assert pairs == expected
    rotated = [p for p, f in copies.items() if f["transform"] == "exif_orient6"]
    for path in rotated:  # stored turned, tagged so that the upright view is the original's shape
        with Image.open(folder / path) as img:
            assert img.getexif().get(0x0112) == 6
            original = Image.open(folder / copies[path]["copy_of"])
            assert img.size == (original.height, original.width)


@pytest.mark.parametrize("size", [20, 60])
def test_no_content_is_shared_between_sources(built, size):
    _, truth = built[size]
    grids: dict[str, set] = {}
    cells: Counter = Counter()
    for s in truth["sources"].values():
        if "origin" in s:
            assert s["origin"] not in lookalike.EXCLUDED
            grids.setdefault(s["origin"], set()).add(s.get("grid", "dark"))
            cells[s["origin"], s.get("grid"), tuple(s.get("cell", ()))] += 1
    # One photo is used one way only: whole, one grid's tiles, or darkened; never two of those.
    assert all(len(g) == 1 for g in grids.values()), grids
    assert max(cells.values()) == 1
    for h in truth["held_out"]:  # unseen pictures are not in the set, but may share a grid
        assert (h["origin"], h["grid"], tuple(h["cell"])) not in cells
        assert grids.get(h["origin"], {h["grid"]}) == {h["grid"]}
    # The known natural duplicates: only one picture of each pair can be used.
    origins = set(grids)
    assert "photos-more/set5_img_004_SRF_2_HR.png" not in origins


def test_tiles_are_non_overlapping_and_upscaled():
    truth = lookalike.plan_sources(250, 0)
    by_photo: dict[str, list] = {}
    for s in truth["sources"]:
        if s["kind"] == "tile":
            by_photo.setdefault(s["origin"], []).append(s)
    assert by_photo
    for tiles in by_photo.values():
        assert len({t["grid"] for t in tiles}) == 1
        assert len({tuple(t["cell"]) for t in tiles}) == len(tiles)
        assert not any(lookalike.is_blank(t["origin"], t["grid"], *t["cell"]) for t in tiles)
    tile = next(iter(by_photo.values()))[0]
    img, box = lookalike.render_tile(tile["origin"], tile["grid"], *tile["cell"], 600)
    assert max(img.size) == 600 and (box[2] - box[0]) < img.width


def test_deterministic_with_a_seed(built, tmp_path):
    folder, truth = built[20]
    again = lookalike.build(20, tmp_path / "again", seed=0)
    assert json.dumps(again["files"]) == json.dumps(truth["files"])
    assert _digest(tmp_path / "again") == _digest(folder)
    other = lookalike.build(20, tmp_path / "other", seed=1)
    assert other["files"] != truth["files"]


def test_against_folder_has_copies_and_unseen(built, tmp_path):
    _, truth = built[60]
    doc = lookalike.build_against(truth, tmp_path / "against", seed=0)
    expect = Counter(q["expect"] for q in doc["queries"].values())
    assert expect == {"duplicate": 3, "new": 3}
    for q in doc["queries"].values():
        if q["expect"] == "duplicate":
            assert q["source"] in truth["sources"]
        else:
            assert q["source"] not in truth["sources"]
