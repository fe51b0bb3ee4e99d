"""Pixel confirmation of hard copies (search/verify.py): grey and re-toned copies and crops of
real photos are confirmed, distinct real photos never are."""

import itertools
import random

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from search.dups import verify
from tests.helpers import PHOTOS, distractor

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


def _brute_force_window(big, small, w):
    """The best NCC of `small`, resized to width w, over every offset of `big`, by loops."""
    import numpy as np

    h = max(8, round(w * small.shape[0] / small.shape[1]))
    template = verify._resized(small, (h, w)).astype(np.float64)
    template -= template.mean()
    best = -1.0
    for y in range(big.shape[0] - h + 1):
        for x in range(big.shape[1] - w + 1):
            window = big[y : y + h, x : x + w].astype(np.float64)
            centred = window - window.mean()
            if centred.std() < verify.MIN_STD:
                continue
            best = max(
                best,
                float(
                    (centred * template).sum() / np.sqrt((centred**2).sum() * (template**2).sum())
                ),
            )
    return best


def test_the_batched_window_search_equals_every_offset_tried_by_hand(copies):
    """The cross-correlation of several widths in one FFT (with cached window statistics and
    templates) finds exactly the best offset a loop over every offset finds."""
    a = verify.thumbnail(copies["original"])
    b = verify.thumbnail(copies["crop-0.8"])
    c = verify.thumbnail(str(KODAK[7]))
    for big, small in (
        (verify._halved(a), verify._halved(b)),
        (verify._halved(c), verify._halved(a)),
    ):
        frame = verify._Frame(big)
        widths = list(range(int(frame.W * verify.MIN_CROP_SCALE), frame.W + 1, 2))
        found = frame.windows(small, widths)
        assert [f.w for f in found] == widths
        for f in found:
            assert f.score == pytest.approx(_brute_force_window(big, small, f.w), abs=1e-6)
    assert verify.best_crop(a, b)[0] >= verify.NCC_CROP  # the crop is still found at 64 px


def test_the_half_size_search_of_many_pairs_at_once_equals_each_pair_alone(copies):
    """coarse_crop_scores batches pairs of one shape into one FFT per width: each pair's score
    is the one its own window search (checked against every offset above) gives, both ways."""
    names = ("original", "crop-0.8", "grey")
    thumbs = [verify.thumbnail(copies[name]) for name in names]
    thumbs += [verify.thumbnail(str(path)) for path in KODAK[5:9]]
    wide = np.ascontiguousarray(thumbs[-1][10:54])  # other shapes among the squares
    thumbs += [wide, np.ascontiguousarray(wide.T), np.ascontiguousarray(thumbs[-2][:, 6:58].T)]
    pairs = [(x, y) for x in thumbs for y in thumbs if x is not y]
    assert len({(x.shape, y.shape) for x, y in pairs}) > 1
    got = verify.coarse_crop_scores(pairs)
    for (a, b), score in zip(pairs, got, strict=True):
        want = -1.0
        for big, small in (
            (verify._halved(a), verify._halved(b)),
            (verify._halved(b), verify._halved(a)),
        ):
            frame = verify._Frame(big)
            widths = range(max(8, int(frame.W * verify.MIN_CROP_SCALE)), frame.W + 1, 2)
            found = frame.windows(small, widths, verify.PREFILTER_MIN_STD)
            want = max([want] + [f.score for f in found])
        assert score == pytest.approx(want, abs=1e-9)
    assert got[1] >= verify.CROP_PREFILTER  # the original and its crop pass to the full search


def test_judging_many_pairs_in_processes_gives_the_serial_answers(copies, tmp_path):
    """Seen.judge_pairs splits a long list over forked processes: same answers as one by one."""
    import numpy as np

    from indexer.evidence import from_file
    from search.dups.evidence import JUDGE_CHUNK, Seen

    paths = list(copies.values()) + [str(p) for p in KODAK[:10]]
    measured = [from_file(p) for p in paths]
    seen = Seen([m[0] for m in measured], [(m[1], m[2]) for m in measured])
    rng = np.random.default_rng(0)
    n = 2 * JUDGE_CHUNK + 17  # two chunks and a bit: processes on a machine with 2+ cores
    rows, cols = rng.integers(0, len(paths), n), rng.integers(0, len(paths), n)
    crops = rng.random(n) < 0.7
    got = seen.judge_pairs(rows, cols, crops)
    expected = [
        seen.judge(int(i), int(j), bool(c)) or "" for i, j, c in zip(rows, cols, crops, strict=True)
    ]
    assert got.tolist() == expected
    assert {"tone", "crop", ""} <= set(expected)  # the list holds copies and non-copies


def _texture(blur: float, amplitude: float, seed: int) -> Image.Image:
    """A low-contrast texture (a dim wall): grey noise blurred, scaled to `amplitude` levels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    noise = Image.fromarray(np.clip(128 + rng.normal(0, 40, (256, 256)), 0, 255).astype(np.uint8))
    arr = np.asarray(noise.filter(ImageFilter.GaussianBlur(blur)), np.float64)
    arr = 128 + (arr - arr.mean()) / arr.std() * amplitude
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_a_crop_of_a_dim_low_contrast_picture_is_looked_for(monkeypatch):
    """Halving a dim picture for the crop prefilter flattens every window below MIN_STD; the
    prefilter has its own floor, so the crop is still looked for (a 10 % crop of a dim wall was
    missed on the look-alike set)."""
    import numpy as np

    wall = _texture(4.0, 5.0, seed=3)
    big = np.asarray(wall.resize((64, 64), Image.Resampling.BILINEAR))
    small = np.asarray(wall.crop((0, 0, 230, 230)).resize((64, 64), Image.Resampling.BILINEAR))
    assert verify.best_crop(big, small)[0] >= verify.NCC_CROP
    monkeypatch.setattr(verify, "PREFILTER_MIN_STD", verify.MIN_STD)  # the floor it had
    assert verify.best_crop(big, small)[0] == -1.0


def test_smooth_pictures_need_a_near_perfect_match(tmp_path):
    """A 20 % crop of a smooth, low-contrast picture is its copy (its pixels say so, although
    it is a low-information picture); a smooth picture with other fine detail over the same
    layout is not, though it passes the ordinary floors."""
    import numpy as np

    from indexer.evidence import from_file
    from search.dups import lowinfo
    from search.dups.evidence import LOW_INFO_EDGES, _edges, judge

    with Image.open(KODAK[2]) as img:
        smooth = ImageEnhance.Contrast(img.convert("RGB").crop((0, 0, 256, 256))).enhance(0.2)
    smooth = smooth.filter(ImageFilter.GaussianBlur(2.5))
    crop = smooth.crop((0, 0, 205, 205))
    ea, wa, ha = from_file(save(smooth, tmp_path / "a.jpg", quality=90))
    eb, wb, hb = from_file(save(crop, tmp_path / "b.jpg", quality=90))
    assert lowinfo.is_low(ea, wa, ha) and _edges(ea.thumb) < LOW_INFO_EDGES  # smooth indeed
    assert judge(ea, (wa, ha), eb, (wb, hb)) == "crop"

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    detail = rng.normal(0, 3, (48, 64))
    a = np.clip(100 + 0.9 * x + 0.4 * y + detail, 0, 255).astype(np.uint8)
    b = np.clip(100 + 0.9 * x + 0.4 * y + detail + rng.normal(0, 3, (48, 64)), 0, 255)
    b = b.astype(np.uint8)
    assert verify.NCC_WHOLE <= verify.ncc(a.astype(np.float32), b.astype(np.float32)) < 0.99
    assert verify.match(a, b) == "tone"  # the ordinary floors
    assert verify.match(a, b, smooth=True) is None


def test_a_crop_that_correlates_over_the_whole_frame_is_still_looked_for():
    """A 10 % crop of a picture dominated by a smooth gradient correlates with it over the whole
    frame (NCC 0.98) while its detail lies shifted, so the tone check fails on detail: the crop
    search must still run (a 10 % crop on the look-alike set was missed so)."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:192, 0:256]
    noise = Image.fromarray(np.clip(128 + rng.normal(0, 60, (192, 256)), 0, 255).astype(np.uint8))
    texture = np.asarray(noise.filter(ImageFilter.GaussianBlur(2)), np.float64)
    texture = (texture - texture.mean()) / texture.std()
    picture = Image.fromarray(
        np.clip(40 + 0.6 * x + 0.3 * y + 8 * texture, 0, 255).astype(np.uint8)
    )
    a = np.asarray(picture.resize((64, 48), Image.Resampling.BILINEAR))
    b = np.asarray(picture.crop((0, 0, 230, 173)).resize((64, 48), Image.Resampling.BILINEAR))
    assert verify.ncc(a.astype(np.float32), verify._resized(b, a.shape)) >= verify.NCC_WHOLE
    assert verify.match(a, b) == "crop"
    assert verify.match(a, b, crops=False) is None


@pytest.mark.parametrize(
    "name, fraction", [("set14_img_011_SRF_2_HR.png", 0.05), ("set5_img_003_SRF_2_HR.png", 0.20)]
)
def test_a_small_crop_of_a_detailed_photo_is_matched_to_half_a_pixel(
    tmp_path, monkeypatch, name, fraction
):
    """A 5 % centre crop of a detailed photo lands 0.8 px off every whole width at 64 px (NCC
    0.94 there); at half-pixel widths it scores 0.98+ and is a crop."""
    from tests.helpers import SHARED

    with Image.open(SHARED / "photos-more" / name) as img:
        img = img.convert("RGB")
    dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
    original = save(img, tmp_path / "original.png")
    crop = save(img.crop((dx, dy, img.width - dx, img.height - dy)), tmp_path / "c.jpg", quality=90)
    a, b = verify.thumbnail(original), verify.thumbnail(crop)
    assert verify.confirm(original, crop) == "crop"
    assert verify.best_crop(a, b)[0] >= verify.NCC_CROP
    monkeypatch.setattr(verify, "REFINE_FROM", 2.0)  # whole-pixel widths only: it is missed
    assert verify.best_crop(a, b)[0] < verify.NCC_CROP


@pytest.mark.parametrize("name", ["photos/kodim05.png", "photos-more/set14_img_011_SRF_2_HR.png"])
def test_a_photo_in_an_added_frame_is_matched_inside_the_frame(tmp_path, monkeypatch, name):
    """A white frame of 6 % added on every side blends into the picture's edge at 64 px and keeps
    the best window at 0.956; the picture inside the frame is matched instead."""
    from tests.helpers import SHARED

    with Image.open(SHARED / name) as img:
        img = img.convert("RGB")
    framed = ImageOps.expand(img, border=round(min(img.size) * 0.06), fill=(255, 255, 255))
    a = verify.thumbnail(save(img, tmp_path / "a.png"))
    b = verify.thumbnail(save(framed, tmp_path / "b.jpg", quality=90))
    assert verify.unframed(a) is None and verify.unframed(b) is not None
    assert verify.match(a, b) == "crop" and verify.match(b, a) == "crop"
    monkeypatch.setattr(verify, "unframed", lambda grey: None)  # the frame left in: missed
    assert verify.match(a, b) is None


_JUDGING_FOREVER = """
import numpy as np, sys
from indexer.evidence import from_file
from search.dups.evidence import Seen
paths = sys.argv[1:]
measured = [from_file(p) for p in paths]
seen = Seen([m[0] for m in measured], [(m[1], m[2]) for m in measured])
n = 10_000_000
rows, cols = np.zeros(n, np.int64), np.ones(n, np.int64)
print("judging", flush=True)
seen.judge_pairs(rows, cols, np.ones(n, bool))
"""


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="forked judging")
def test_judging_processes_end_when_their_run_is_killed(copies):
    """A dups run killed mid-judging (SIGKILL: no clean-up runs) leaves no judging process, and
    none of them prints a traceback (without the parent-death signal they went on until their
    next answer met the closed pipe, and said so on stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: judging stays in one process")
    run = subprocess.Popen(
        [sys.executable, "-c", _JUDGING_FOREVER, copies["original"], copies["crop-0.8"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout.readline().strip() == "judging"
    deadline = time.monotonic() + 30
    while not (workers := _children(run.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers, "the run forked no judging processes"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if os.path.exists(f"/proc/{w}")]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive
    assert "Traceback" not in run.stderr.read()


def test_a_shared_layout_with_other_fine_detail_is_not_a_tone_copy(monkeypatch):
    """Two pictures of one template (the same smooth layout, half their fine texture shared)
    correlate 0.996 over the frame; their detail correlates 0.43, where copies keep >= 0.76 and
    the distractor library's false tone matches 0.28-0.55 (bench/results/dups_distractors.md)."""
    import numpy as np

    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:48, 0:64]
    own, other = rng.normal(0, 3, (48, 64)), rng.normal(0, 3, (48, 64))
    layout = 60 + 1.8 * x + 0.8 * y
    a = np.clip(layout + own, 0, 255).astype(np.uint8)
    b = np.clip(layout + 0.45 * own + np.sqrt(1 - 0.45**2) * other, 0, 255).astype(np.uint8)
    assert verify.ncc(a.astype(np.float32), b.astype(np.float32)) >= verify.NCC_WHOLE
    assert verify.match(a, b, crops=False) is None
    monkeypatch.setattr(verify, "TONE_DETAIL_NCC", 0.3)  # the floor it had: a "copy"
    assert verify.match(a, b, crops=False) == "tone"


def test_a_picture_is_no_crop_of_a_thin_band_across_another(tmp_path, monkeypatch):
    """A window takes the other picture's aspect: a landscape picture fits a band across 23 % of
    a portrait one, where two distinct pictures of one template (a sky over a floor with balls)
    matched at 0.97 (d00314 / d00581 of the 5,200 distractors). A crop keeps two thirds of the
    height at least (MIN_CROP_HEIGHT), as every copy of the near-duplicate set does (>= 0.70)."""
    a, b = (verify.thumbnail(distractor(i, tmp_path)) for i in (314, 581))
    assert verify.match(a, b) is None and verify.match(b, a) is None
    monkeypatch.setattr(verify, "PART_NCC", -1.0)  # the checks of the parts reject it too:
    monkeypatch.setattr(verify, "PARTS_MEAN_NCC", -1.0)
    assert verify.match(a, b) is None and verify.match(b, a) is None  # the height rule alone
    monkeypatch.setattr(verify, "MIN_CROP_HEIGHT", 0.0)
    assert verify.match(a, b) == "crop"  # the old search: a thin band was a crop


def test_a_crop_agrees_in_its_parts_on_average_as_over_the_whole(tmp_path, monkeypatch):
    """Two brown ridges of one template (d02106 / d01114 of the distractors, the last false
    group among them): the best window agrees at 0.99, in its detail (0.56) and in every part
    (>= 0.52), but its parts' mean is 0.76, while a crop keeps its parts' mean near its whole
    NCC (>= 0.899 over 2,141 crop links of the near-duplicate set). Crops of the ridge itself
    made here still match."""
    first = distractor(2106, tmp_path, stream=5)
    a, b = verify.thumbnail(first), verify.thumbnail(distractor(1114, tmp_path, stream=1))
    score, window, template, _ = verify.best_crop(a, b)
    assert score >= verify.NCC_CROP and verify.same_detail(window, template)
    assert verify.same_parts(window, template)  # every part alone passes
    assert not verify.same_parts(window, template, verify.PARTS_MEAN_NCC)
    assert verify.match(a, b) is None
    with Image.open(first) as img:
        img = img.convert("RGB")
    for keep in (0.9, 0.8):
        w, h = int(img.width * keep), int(img.height * keep)
        crop = save(img.crop((11, 9, 11 + w, 9 + h)), tmp_path / f"c{keep}.jpg", quality=75)
        assert verify.confirm(first, crop) == "crop", keep
    monkeypatch.setattr(verify, "PARTS_MEAN_NCC", -1.0)
    assert verify.match(a, b) == "crop"


def test_two_framed_pictures_are_compared_inside_their_frames_as_wholes(tmp_path, monkeypatch):
    """Two pages of one layout, with margins: the margins dominate the correlation (0.981 over
    the whole page, d01307 / d01622 of the distractors), so framed pictures are compared by what
    is inside the frames, whole. A re-saved, half-size copy of a page still matches."""
    first = distractor(1307, tmp_path)
    a, b = verify.thumbnail(first), verify.thumbnail(distractor(1622, tmp_path))
    assert verify.unframed(a) is not None and verify.unframed(b) is not None
    with Image.open(first) as img:
        copy = save(
            img.convert("RGB").resize((img.width // 2, img.height // 2)),
            tmp_path / "c.jpg",
            quality=70,
        )
    assert verify.match(a, b) is None
    assert verify.match(a, verify.thumbnail(copy)) is not None
    monkeypatch.setattr(verify, "unframed", lambda grey: None)  # frames not looked for
    assert verify.match(a, b) is None  # the parts' mean tells these two apart as well
    monkeypatch.setattr(verify, "PARTS_MEAN_NCC", -1.0)
    assert verify.match(a, b) == "crop"


def test_every_part_of_a_crop_agrees(tmp_path, monkeypatch):
    """Two pictures of one template (a sky over a floor with balls, d01286 / d03280 of the
    distractors) agree at 0.97 over the best window, driven by the horizon, and in their detail
    (0.64), but not where the balls are; every copy's crop of the near-duplicate set agrees in
    every part. The crops of a photo made here agree in every part too."""
    a, b = (verify.thumbnail(distractor(i, tmp_path)) for i in (1286, 3280))
    assert verify.match(a, b) is None
    score, window, template, _ = verify.best_crop(a, b)
    assert score >= verify.NCC_CROP and verify.same_detail(window, template)
    assert not verify.same_parts(window, template)
    with Image.open(KODAK[3]) as img:
        img = img.convert("RGB")
    for keep in (0.9, 0.8, 0.75):
        w, h = int(img.width * keep), int(img.height * keep)
        crop = save(img.crop((7, 5, 7 + w, 5 + h)), tmp_path / f"c{keep}.jpg", quality=80)
        whole = save(img, tmp_path / "whole.jpg", quality=90)
        assert verify.confirm(whole, crop) == "crop", keep
    monkeypatch.setattr(verify, "PART_NCC", -1.0)
    assert verify.match(a, b) is None  # their parts' mean is below PARTS_MEAN_NCC too
    monkeypatch.setattr(verify, "PARTS_MEAN_NCC", -1.0)
    assert verify.match(a, b) == "crop"
