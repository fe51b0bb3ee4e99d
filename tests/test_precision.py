"""Property: on a library where most photos have no copy, with default options, no duplicate group
joins two distinct photos, at any size (below 100 images, where no whitening is fitted, and above),
and `--against` calls an unseen photo new.

Generated libraries of distinct look-alike photos (the shared real photos and non-overlapping
tiles of them: same light, colours and texture, different pictures), a few planted copies, two
different near-black photos and two different pages of text. The model is the tiny random-init
DINOv2 of the test suite: its embeddings put distinct photos close together, the hardest case for
a rule that must not trust them. (The same property with the real weights, at 20 to 1,000
images: bench/lookalike.py, bench/results/lookalike.md.)
"""

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from tests.helpers import PHOTOS, SHARED, invoke

pytestmark = pytest.mark.slow

SIDE = 320  # every picture is shrunk to this long side: the property is about groups
COPIES = {
    "half": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "bright": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "crop": lambda im: im.crop(
        (im.width // 10, im.height // 10, im.width - im.width // 10, im.height - im.height // 10)
    ),
}


def sources() -> list[Image.Image]:
    """Distinct pictures: each real photo and each of its four quarters (a photo and its own
    quarters are never in one library: they overlap)."""
    photos = sorted(PHOTOS.glob("*.png")) + sorted((SHARED / "photos-more").glob("*.tif"))
    out = []
    for k, path in enumerate(photos):
        with Image.open(path) as img:
            img = img.convert("RGB")
        if k % 2:
            out.append(img)
            continue
        w, h = img.size
        for x, y in ((0, 0), (1, 0), (0, 1), (1, 1)):
            out.append(img.crop((x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2)))
    return [_shrunk(im) for im in out]


def _shrunk(img: Image.Image) -> Image.Image:
    img = img.copy()
    img.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    return img


def page(seed: int) -> Image.Image:
    """A page of text, different for each seed."""
    rng = random.Random(seed)
    img = Image.new("RGB", (300, 400), "white")
    draw = ImageDraw.Draw(img)
    for line in range(22):
        words = " ".join(
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
            for _ in range(6)
        )
        draw.text((16, 14 + 17 * line), words, fill="black")
    return img


def build(folder: Path, size: int, seed: int) -> tuple[dict[str, int], list[Image.Image]]:
    """A library of `size` files: file name -> source number; and unused sources (unseen)."""
    rng = random.Random(seed)
    pool = sources()
    rng.shuffle(pool)
    truth: dict[str, int] = {}
    dark = [ImageEnhance.Brightness(pool.pop()).enhance(0.05) for _ in range(2)]
    specials = dark + [page(seed), page(seed + 1)]
    for k, img in enumerate(specials):
        img.save(folder / f"special-{k}.jpg", quality=90)
        truth[f"special-{k}.jpg"] = 1000 + k
    planted = max(1, size // 12)
    originals = size - len(specials) - planted
    for k in range(originals):
        pool[k].save(folder / f"IMG_{k:04d}.jpg", quality=90)
        truth[f"IMG_{k:04d}.jpg"] = k
    for n in range(planted):
        k = rng.randrange(originals)
        how = rng.choice(sorted(COPIES))
        name = f"IMG_{k:04d} ({n}) {how}.jpg"
        COPIES[how](pool[k]).save(folder / name, quality=85)
        truth[name] = k
    return truth, pool[originals : originals + 3]


def mixed_groups(report: dict, truth: dict[str, int]) -> list[list[str]]:
    out = []
    for group in report["groups"]:
        if group["tier"] == "similar":
            continue
        names = [Path(m["path"]).name for m in group["members"]]
        if len({truth[n] for n in names}) > 1:
            out.append(names)
    return out


@pytest.mark.parametrize("size,seed", [(14, 0), (40, 1), (110, 2)])
def test_no_group_joins_two_distinct_photos(tmp_path, size, seed):
    folder, library = tmp_path / "photos", tmp_path / "library"
    folder.mkdir()
    truth, unseen = build(folder, size, seed)
    invoke("index", folder, "--index", library, "--workers", "0")
    report = json.loads(invoke("dups", "--index", library, "--json").stdout)
    assert report["stats"]["mode"] == "auto" and report["stats"]["pixel_checks"] is True
    assert mixed_groups(report, truth) == []
    estimate = report["stats"]["estimate"]
    assert estimate["target"] == 0.99 and estimate["expected_false_pairs"] <= 1
    for group in report["groups"]:  # every member says why it is there
        for m in group["members"][1:]:
            if group["tier"] == "copy":
                assert m["verified"] or m["confidence"] >= 0.99

    # a fixed raw cosine is what it says (no precision), but each member shows its confidence
    fixed = json.loads(invoke("dups", "--index", library, "--threshold", "0.9", "--json").stdout)
    assert fixed["stats"]["mode"] == "cosine" and "estimate" not in fixed["stats"]
    assert all(m["confidence"] is not None for g in fixed["groups"] for m in g["members"][1:])

    # --against: planted copies of library photos are found, unseen photos are new
    card = tmp_path / "card"
    card.mkdir()
    for k, img in enumerate(unseen):
        img.save(card / f"unseen-{k}.jpg", quality=88)
    with Image.open(folder / "IMG_0000.jpg") as img:
        COPIES["half"](img.convert("RGB")).save(card / "reshared.jpg", quality=85)
    against = json.loads(invoke("dups", "--index", library, "--against", card, "--json").stdout)
    new = {Path(p).name for p in against["new"]}
    assert {f"unseen-{k}.jpg" for k in range(len(unseen))} <= new
    for group in against["groups"]:
        names = [Path(m["path"]).name for m in group["members"]]
        assert names[0] == "reshared.jpg", names
        assert {truth[n] for n in names[1:]} == {0}, names


def test_dups_decodes_nothing_once_evidence_is_stored(tmp_path, monkeypatch):
    """Evidence is taken at index time; a library from before it (schema 5) gets the table by
    migration and its rows' evidence from the first `dups`, which stores it: the next `dups`
    reads no image file for its pixel checks."""
    import sqlite3

    from search.dups import evidence

    folder, library = tmp_path / "photos", tmp_path / "library"
    folder.mkdir()
    build(folder, 14, 3)
    invoke("index", folder, "--index", library, "--workers", "0")
    with sqlite3.connect(library / "library.db") as db:
        assert db.execute("select count(*) from evidence").fetchone()[0] == 14
        db.execute("drop table evidence")  # as a library indexed before evidence was kept
        db.execute("update meta set value = '5' where key = 'schema_version'")
    first = json.loads(invoke("dups", "--index", library, "--json").stdout)
    with sqlite3.connect(library / "library.db") as db:
        assert db.execute("select count(*) from evidence").fetchone()[0] == 14

    def no_decoding(path):
        raise AssertionError(f"dups decoded {path}")

    monkeypatch.setattr(evidence, "of_file", no_decoding)
    again = json.loads(invoke("dups", "--index", library, "--json").stdout)
    assert [g["members"] for g in again["groups"]] == [g["members"] for g in first["groups"]]
