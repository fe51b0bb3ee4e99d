"""Colour agreement of a pixel match (search/dups/tint.py): pictures drawn from one template agree
in grey and are told apart by their colours; a copy's colour edits (brightness, contrast, a
white-balance shift, less saturation, a crop of a re-toned copy, a border) keep its colours."""

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from indexer.evidence import from_file
from search.dups import evidence, tint, verify
from search.dups.evidence import Seen, judge
from tests.helpers import PHOTOS, distractor, invoke

KODAK = sorted(PHOTOS.glob("*.png"))


def judged(path_a: str, path_b: str) -> str | None:
    (ea, wa, ha), (eb, wb, hb) = from_file(path_a), from_file(path_b)
    return judge(ea, (wa, ha), eb, (wb, hb))


@pytest.mark.parametrize(
    "first,second",
    [((973, 0), (2302, 2)), ((1444, 0), (981, 0)), ((3280, 0), (581, 0))],
    ids=["ridges", "boxes", "balls"],
)
def test_pictures_of_one_template_differ_in_colour(tmp_path, monkeypatch, first, second):
    """Three of the false `crop` links among the 5,200 distractors (bench/dups_distractors.py):
    a ridge under a sky, boxes or balls on a floor, in other colours. Their grey thumbnails pass
    every grey check but the parts' mean of a crop (the ridges and the balls fail that too);
    their colours do not agree."""
    a, b = (distractor(i, tmp_path, stream=s) for i, s in (first, second))
    assert judged(a, b) is None
    monkeypatch.setattr(verify, "PARTS_MEAN_NCC", -1.0)  # the colours alone
    assert judged(a, b) is None
    monkeypatch.setattr(tint, "MAX_DISAGREEMENT", np.inf)
    assert judged(a, b) == "crop"  # the grey evidence alone: one picture


def _copies(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    r, g, b = img.split()
    warmer, cooler = r.point(lambda v: min(255, v * 1.08)), b.point(lambda v: v * 0.92)
    warm = Image.merge("RGB", (warmer, g, cooler))
    contrasted = ImageEnhance.Contrast(img).enhance(1.25)
    return {
        "brighter": ImageEnhance.Brightness(img).enhance(1.2),
        "darker": ImageEnhance.Brightness(img).enhance(0.8),
        "more contrast": contrasted,
        "less contrast": ImageEnhance.Contrast(img).enhance(0.75),
        "warm white balance": warm,
        "less saturated": ImageEnhance.Color(img).enhance(0.7),
        "a crop of the contrasted copy": contrasted.crop((w // 10, h // 10, w, h)),
        "a white border": ImageOps.expand(img, border=w // 15, fill="white"),
    }


@pytest.mark.parametrize("photo", [0, 5, 7, 19], ids=lambda k: KODAK[k].stem)
def test_a_copys_colour_edits_keep_its_colours(tmp_path, photo):
    with Image.open(KODAK[photo]) as img:
        img = img.convert("RGB")
    img.save(tmp_path / "original.jpg", quality=90)
    original = str(tmp_path / "original.jpg")
    for name, copy in _copies(img).items():
        path = tmp_path / f"{name}.jpg"
        copy.save(path, quality=85)
        assert judged(original, str(path)) is not None, name


def test_the_disagreement_sees_swapped_colours():
    """The same picture with its red and blue swapped disagrees far above the limit, while a
    re-toned one (every channel x 1.2, chroma x 0.8) does not disagree at all."""
    ev = from_file(str(KODAK[3]))[0]
    assert ev.tint is not None
    rgb = ev.tint.astype(np.float64)
    swapped = np.ascontiguousarray(ev.tint[..., ::-1])
    whole = verify.WHOLE
    assert tint.disagreement(ev.tint, whole, swapped, whole) > 2 * tint.MAX_DISAGREEMENT
    grey = rgb.mean(2, keepdims=True)
    retoned = np.clip((grey + 0.8 * (rgb - grey)) * 1.1, 0, 255).astype(np.uint8)
    assert tint.disagreement(ev.tint, whole, retoned, whole) < 0.1


def test_a_crop_is_located_in_its_original(tmp_path):
    """`verify.locate` says where a crop lies in the picture it was cut from: the colours are
    compared there."""
    with Image.open(KODAK[3]) as img:
        img = img.convert("RGB")
    w, h = img.size
    img.save(tmp_path / "a.jpg", quality=90)
    img.crop((w // 5, h // 5, w, h)).save(tmp_path / "b.jpg", quality=90)
    a, b = verify.thumbnail(str(tmp_path / "a.jpg")), verify.thumbnail(str(tmp_path / "b.jpg"))
    found = verify.locate(a, b)
    assert found is not None and found.how == "crop"
    assert found.box_b == verify.WHOLE
    assert np.allclose(found.box_a, (0.2, 0.2, 1.0, 1.0), atol=0.03), found.box_a
    turned = verify.locate(b, a)
    assert turned is not None and np.allclose(turned.box_b, found.box_a)


def test_colours_are_measured_once_for_evidence_stored_before_them(tmp_path, monkeypatch):
    """A library whose evidence was stored before colours were kept (schema 6): `dups` measures
    the colours of the rows its pixel matches need, once, and stores them; the next run decodes
    nothing and gives the same groups."""
    from tests.test_precision import build

    folder, library = tmp_path / "photos", tmp_path / "library"
    folder.mkdir()
    build(folder, 14, 3)
    invoke("index", folder, "--index", library, "--workers", "0")
    fresh = json.loads(invoke("dups", "--index", library, "--json").stdout)
    with sqlite3.connect(library / "library.db") as db:
        assert db.execute("select count(*) from evidence where tint is null").fetchone()[0] == 0
        db.execute("alter table evidence drop column tint")  # as a library from before m007
        db.execute("update meta set value = '6' where key = 'schema_version'")
    measured: list[str] = []
    of_file = evidence.of_file
    monkeypatch.setattr(evidence, "of_file", lambda p: measured.append(p) or of_file(p))
    first = json.loads(invoke("dups", "--index", library, "--json").stdout)
    assert measured, "the matched rows' colours were measured"
    assert [g["members"] for g in first["groups"]] == [g["members"] for g in fresh["groups"]]
    with sqlite3.connect(library / "library.db") as db:
        filled = db.execute("select count(*) from evidence where tint is not null").fetchone()[0]
    assert filled == len(set(measured))

    def no_decoding(path):
        raise AssertionError(f"dups decoded {path}")

    monkeypatch.setattr(evidence, "of_file", no_decoding)
    again = json.loads(invoke("dups", "--index", library, "--json").stdout)
    assert [g["members"] for g in again["groups"]] == [g["members"] for g in fresh["groups"]]


def test_a_colour_match_is_judged_again_once_its_colours_are_measured():
    """`Seen.judge_pairs` on evidence without colours: the pairs the grey evidence matches are
    judged again with the colours measured for their rows (and only for those rows)."""
    paths = [str(KODAK[3]), str(KODAK[3]), str(KODAK[5])]
    measured = [from_file(p)[0] for p in paths]
    dims = [(768, 512)] * 3

    def seen_with(colours):
        stale = [from_file(p)[0] for p in paths]
        for ev in stale:
            ev.tint = None
        asked: list[list[int]] = []

        def tints(rows):
            asked.append(rows)
            return {row: colours[row] for row in rows}

        return Seen(stale, dims, tints), asked

    pairs = (np.array([0, 0]), np.array([1, 2]), np.array([True, True]))
    same = [ev.tint for ev in measured]
    seen, asked = seen_with(same)
    assert list(seen.judge_pairs(*pairs)) == ["tone", ""]  # the copy keeps its colours
    assert asked == [[0, 1]]  # row 2 matched nothing: not measured
    assert seen.evidence[1].tint is not None and seen.evidence[2].tint is None
    other = list(same)
    other[1] = np.ascontiguousarray(same[1][..., ::-1])  # row 1: other colours
    seen, asked = seen_with(other)
    assert list(seen.judge_pairs(*pairs)) == ["", ""]  # the grey match (0, 1) fails on them


def test_a_turned_match_is_held_to_its_colours_too(tmp_path):
    """A copy turned in its pixels (rotations.py) is judged with its colours turned back: it
    matches, and the same copy with other colours does not."""
    with Image.open(KODAK[5]) as img:
        img = img.convert("RGB")
    img.save(tmp_path / "a.jpg", quality=90)
    img.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "b.jpg", quality=90)
    (ea, wa, ha), (eb, wb, hb) = (
        from_file(str(tmp_path / "a.jpg")),
        from_file(str(tmp_path / "b.jpg")),
    )
    assert judge(ea, (wa, ha), eb, (wb, hb), turn="rot90") == "tone"
    assert eb.tint is not None
    eb.tint = np.ascontiguousarray(eb.tint[..., ::-1])
    assert judge(ea, (wa, ha), eb, (wb, hb), turn="rot90") is None


def test_dups_keeps_template_look_alikes_apart_and_finds_the_copies(tmp_path, monkeypatch):
    """The whole path on a library of three pairs of template look-alikes (see above), photos,
    a 20 % crop and a warm copy: default `dups` groups the copies and no look-alikes, which the
    grey evidence alone, without the parts' mean of a crop, would group."""
    folder, library = tmp_path / "photos", tmp_path / "library"
    folder.mkdir()
    pairs = [((973, 0), (2302, 2)), ((1444, 0), (981, 0)), ((3280, 0), (581, 0))]
    for index, stream in (one for pair in pairs for one in pair):
        distractor(index, folder, stream=stream)
    for k in (0, 2, 4, 9, 12, 15):
        with Image.open(KODAK[k]) as img:
            img.convert("RGB").save(folder / f"{KODAK[k].stem}.jpg", quality=90)
    with Image.open(KODAK[4]) as img:
        img = img.convert("RGB")
        w, h = img.size
        img.crop((w // 5, h // 5, w, h)).save(folder / "kodim05 cropped.jpg", quality=85)
    with Image.open(KODAK[9]) as img:
        _copies(img.convert("RGB"))["warm white balance"].save(folder / "kodim10 warm.jpg")
    invoke("index", folder, "--index", library, "--workers", "0")

    def groups() -> list[set[str]]:
        report = json.loads(invoke("dups", "--index", library, "--json").stdout)
        return [
            {m["path"].rsplit("/", 1)[1] for m in g["members"]}
            for g in report["groups"]
            if g["tier"] != "similar"
        ]

    found = groups()
    assert {"kodim05.jpg", "kodim05 cropped.jpg"} in found, found
    assert {"kodim10.jpg", "kodim10 warm.jpg"} in found, found
    assert not any(name.startswith("d0") for group in found for name in group), found
    monkeypatch.setattr(verify, "PARTS_MEAN_NCC", -1.0)
    assert groups() == found  # the colours alone keep them apart too
    monkeypatch.setattr(tint, "MAX_DISAGREEMENT", np.inf)
    grey_only = groups()
    assert any(name.startswith("d0") for group in grey_only for name in group), grey_only


def test_a_turned_match_of_evidence_stored_before_colours_gets_them(tmp_path):
    """`Seen.judge_coloured` (turned matches, the calibration's library pairs): a grey match of
    rows without colours measures them, then judges with them."""
    with Image.open(KODAK[5]) as img:
        img = img.convert("RGB")
    img.save(tmp_path / "a.jpg", quality=90)
    img.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "b.jpg", quality=90)
    fresh = [from_file(str(tmp_path / n)) for n in ("a.jpg", "b.jpg")]
    for colours, expected in ((lambda t: t, "tone"), (lambda t: t[..., ::-1], None)):
        stale = [from_file(str(tmp_path / n))[0] for n in ("a.jpg", "b.jpg")]
        for ev in stale:
            ev.tint = None
        tints = {0: fresh[0][0].tint, 1: np.ascontiguousarray(colours(fresh[1][0].tint))}
        seen = Seen(stale, [f[1:] for f in fresh], lambda rows, t=tints: {r: t[r] for r in rows})
        assert seen.judge(0, 1, turn="rot90") == "tone"  # grey alone
        assert seen.judge_coloured(0, 1, turn="rot90") == expected


def test_against_a_library_stored_before_colours(tmp_path):
    """`dups --against` on a library whose evidence has no colours (schema 6): a re-shared copy
    is still found, a look-alike of another colour is new, and the library rows it looked at
    get their colours stored."""
    folder, library, card = tmp_path / "photos", tmp_path / "library", tmp_path / "card"
    folder.mkdir()
    card.mkdir()
    for k in (0, 2, 4, 9):
        with Image.open(KODAK[k]) as img:
            img.convert("RGB").save(folder / f"{KODAK[k].stem}.jpg", quality=90)
    with Image.open(KODAK[4]) as img:
        img = img.convert("RGB")
        img.resize((img.width // 2, img.height // 2)).save(card / "shared.jpg", quality=80)
        swapped = Image.merge("RGB", img.split()[::-1])  # red and blue swapped: not a copy
        swapped.save(card / "swapped.jpg", quality=90)
    invoke("index", folder, "--index", library, "--workers", "0")
    with sqlite3.connect(library / "library.db") as db:
        db.execute("alter table evidence drop column tint")
        db.execute("update meta set value = '6' where key = 'schema_version'")
    report = json.loads(invoke("dups", "--index", library, "--against", card, "--json").stdout)
    found = {
        m["path"].rsplit("/", 1)[1] for g in report["groups"] for m in g["members"] if g["tier"]
    }
    assert {"shared.jpg", "kodim05.jpg"} <= found, report["groups"]
    assert "swapped.jpg" not in found and any(p.endswith("swapped.jpg") for p in report["new"])
    with sqlite3.connect(library / "library.db") as db:
        assert db.execute("select count(*) from evidence where tint is not null").fetchone()[0]
