"""Bursts by capture time (search/dups/bursts.py): `dups --burst-window` keeps the `similar` tier
to shots taken close together, shows them as one stack with the sharpest suggested, and a plan
keeps every shot."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from indexer.errors import BadQuery
from search.dups import bursts
from tests.helpers import PHOTOS, invoke

EXIF_IFD, DATETIME_ORIGINAL, SUBSEC_ORIGINAL = 0x8769, 36867, 37521


def shot(
    source: Path, target: Path, when: str | None, shift: int = 0, blur: float = 0, subsec=None
) -> Path:
    """A frame of `source`: shifted a few pixels (the camera moved), maybe blurred, with an EXIF
    capture time ('2024:05:01 10:00:00')."""
    with Image.open(source) as img:
        frame = img.convert("RGB").crop((shift, 0, img.width - 8 + shift, img.height))
    if blur:
        frame = frame.filter(ImageFilter.GaussianBlur(blur))
    exif = Image.Exif()
    if when:
        exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = when
    if subsec:
        exif.get_ifd(EXIF_IFD)[SUBSEC_ORIGINAL] = subsec
    frame.save(target, quality=95, exif=exif.tobytes())
    return target


@pytest.fixture
def burst_library(tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    a, b, c = sorted(PHOTOS.glob("*.png"))[:3]
    burst = [
        shot(a, folder / "IMG_0001.jpg", "2024:05:01 10:00:00", 0),
        shot(a, folder / "IMG_0002.jpg", "2024:05:01 10:00:01", 3, blur=2.5),  # camera shake
        shot(a, folder / "IMG_0003.jpg", "2024:05:01 10:00:02", 6),
    ]
    shot(b, folder / "IMG_0100.jpg", "2024:05:01 11:00:00", 0)
    shot(b, folder / "IMG_0101.jpg", "2024:05:01 12:00:00", 4)  # the same view an hour later
    shot(c, folder / "scan.jpg", None)  # no capture time
    library = tmp_path / "library"
    invoke("index", folder, "--index", library)
    return library, burst


def dups(library, *extra) -> dict:
    # every pair is a `similar` candidate; only capture time decides which form a burst
    args = ("--threshold", "0.99999", "--similar-threshold", "-1", "--json")
    return json.loads(invoke("dups", "--index", library, *args, *extra).stdout)


def names(group: dict) -> set[str]:
    return {Path(m["path"]).name for m in group["members"]}


def test_a_burst_window_groups_only_shots_taken_together(burst_library):
    library, burst = burst_library
    loose = dups(library, "--include-similar")
    assert any(
        {"IMG_0100.jpg", "IMG_0101.jpg"} <= names(g) or "scan.jpg" in names(g)
        for g in loose["groups"]
    )
    report = dups(library, "--burst-window", "10s")
    similar = [g for g in report["groups"] if g["tier"] == "similar"]
    assert [names(g) for g in similar] == [{"IMG_0001.jpg", "IMG_0002.jpg", "IMG_0003.jpg"}]
    stack = similar[0]
    assert stack["stack"] is True and Path(stack["best"]).name != "IMG_0002.jpg"  # not the blur
    assert dups(library, "--burst-window", "0.5s")["groups"] == []  # 1 s apart: no burst


def test_a_burst_plan_keeps_every_shot_and_suggests_the_sharpest(burst_library, tmp_path):
    library, burst = burst_library
    plan_path = tmp_path / "plan.json"
    invoke(
        "dups",
        "--index",
        library,
        "--threshold",
        "0.99999",
        "--similar-threshold",
        "-1",
        "--burst-window",
        "10s",
        "--plan",
        plan_path,
    )
    plan = json.loads(plan_path.read_text())
    (group,) = plan["groups"]
    assert {f["action"] for f in group["files"]} == {"keep"}
    assert Path(group["keep"]).name != "IMG_0002.jpg" and "sharpest" in group["reason"]["text"]
    assert "nothing" in invoke("apply", plan_path, "--yes").output  # nothing to do: all kept


def test_sharpness_prefers_the_sharp_frame(tmp_path):
    source = sorted(PHOTOS.glob("*.png"))[0]
    sharp = shot(source, tmp_path / "sharp.jpg", None)
    soft = shot(source, tmp_path / "soft.jpg", None, blur=2.5)
    assert bursts.sharpness(str(sharp)) > 2 * bursts.sharpness(str(soft))
    assert bursts.best_shot([str(soft), str(sharp)], [1, 1]) == str(sharp)
    assert bursts.sharpness(str(tmp_path / "missing.jpg")) == 0.0


@pytest.mark.parametrize(
    "text, seconds", [("10s", 10.0), ("2m", 120.0), ("500ms", 0.5), ("1.5h", 5400.0), ("3", 3.0)]
)
def test_burst_window_durations(text, seconds):
    assert bursts.parse_window(text) == seconds


def test_a_bad_burst_window_is_a_clear_error(burst_library):
    library, _ = burst_library
    with pytest.raises(BadQuery, match="10s"):
        bursts.parse_window("ten seconds")
    result = invoke("dups", "--index", library, "--burst-window", "soon", expect=None)
    assert result.exit_code != 0 and "--burst-window" in result.output


def test_times_without_a_capture_time_never_pair():
    times = [0.0, 5.0, None, 100.0]
    rows, cols = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3])
    assert bursts.within_window(times, rows, cols, 10).tolist() == [True, False, False, False]


def test_sub_second_capture_times_tell_frames_of_one_second_apart(tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    a = sorted(PHOTOS.glob("*.png"))[0]
    shot(a, folder / "f1.jpg", "2024:05:01 10:00:00", 0, subsec="10")
    shot(a, folder / "f2.jpg", "2024:05:01 10:00:00", 3, subsec="60")
    library = tmp_path / "library"
    invoke("index", folder, "--index", library)
    assert len(dups(library, "--burst-window", "600ms")["groups"]) == 1  # 0.5 s apart
    assert dups(library, "--burst-window", "400ms")["groups"] == []
