"""Pixel confirmation of hard copies (search/verify.py): grey and re-toned copies and crops of
real photos are confirmed, distinct real photos never are."""

import itertools
import random

import pytest
from PIL import Image, ImageEnhance, ImageOps

from search.dups import verify
from tests.helpers import PHOTOS

KODAK = sorted(PHOTOS.glob("*.png"))


def save(img: Image.Image, path, **options) -> str:
    img.convert("RGB").save(path, **options)
    return str(path)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """A Kodak photo as JPEG, and its hard copies a person makes."""
    folder = tmp_path_factory.mktemp("copies")
    rng = random.Random(0)
    with Image.open(KODAK[3]) as img:
        img = img.convert("RGB")
    made = {"original": save(img, folder / "original.jpg", quality=92)}
    made["grey"] = save(ImageOps.grayscale(img), folder / "grey.jpg", quality=85)
    bright = ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.3)).enhance(1.15)
    made["brighter"] = save(bright, folder / "brighter.jpg", quality=85)
    half = (img.width // 2, img.height // 2)
    made["smaller-grey"] = save(ImageOps.grayscale(img).resize(half), folder / "sg.jpg")
    for keep in (0.9, 0.8):
        w, h = round(img.width * keep), round(img.height * keep)
        left, top = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        crop = img.crop((left, top, left + w, top + h))
        made[f"crop-{keep}"] = save(crop, folder / f"crop{keep}.jpg", quality=85)
    wide = img.crop((0, 80, img.width, img.height - 80))  # another aspect: the full width
    made["wide-crop"] = save(wide, folder / "wide.jpg", quality=85)
    return made


@pytest.mark.parametrize(
    "name, how",
    [
        ("grey", "tone"),
        ("brighter", "tone"),
        ("smaller-grey", "tone"),
        ("crop-0.9", "crop"),
        ("crop-0.8", "crop"),
        ("wide-crop", "crop"),
    ],
)
def test_hard_copies_of_a_photo_are_confirmed(copies, name, how):
    assert verify.confirm(copies["original"], copies[name]) == how
    assert verify.confirm(copies[name], copies["original"]) == how  # either way round


def test_a_tone_check_alone_does_not_look_for_crops(copies):
    assert verify.confirm(copies["original"], copies["crop-0.8"], crops=False) is None


def test_distinct_real_photos_are_never_confirmed(tmp_path):
    """Every pair of the 24 Kodak photos (several share a subject: houses, boats, faces)."""
    confirmed = [
        (a.name, b.name, how)
        for a, b in itertools.combinations(KODAK, 2)
        if (how := verify.confirm(str(a), str(b)))
    ]
    assert confirmed == []


def test_grey_copy_of_another_photo_is_not_confirmed(tmp_path):
    with Image.open(KODAK[5]) as img:
        other = save(ImageOps.grayscale(img), tmp_path / "other-grey.jpg")
    assert verify.confirm(str(KODAK[3]), other) is None


def test_unreadable_files_are_not_confirmed(tmp_path, copies):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert verify.confirm(str(bad), copies["original"]) is None
    assert verify.confirm(str(tmp_path / "missing.jpg"), copies["original"]) is None


def test_a_changed_file_gets_a_new_thumbnail(tmp_path, copies):
    path = tmp_path / "changing.jpg"
    with Image.open(copies["grey"]) as img:
        img.save(path)
    assert verify.confirm(copies["original"], str(path)) == "tone"
    with Image.open(KODAK[7]) as img:
        img.convert("RGB").resize((768, 512)).save(path)
    assert verify.confirm(copies["original"], str(path)) is None
