"""Bursts a new user met (issue 26, item 7): frames half a second apart, one DateTimeOriginal second
for two of them, told apart by SubSecTimeOriginal (and the zone of OffsetTimeOriginal kept); each
burst is one `similar` stack with its best shot, and the default plan trashes none of its frames.
Capture times stored by any earlier version still parse, on every supported Python."""

import json
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from indexer.decode import capture_time, parse_capture_time
from search.cleanup.policy import Facts
from search.dups import bursts
from tests.helpers import PHOTOS, invoke, stored_rows

EXIF_IFD = 0x8769
DATETIME, DATETIME_ORIGINAL, SUBSEC, SUBSEC_ORIGINAL = 306, 36867, 37520, 37521
OFFSET, OFFSET_ORIGINAL = 36880, 36881
HALF_SECONDS = [("10:00:00", "00"), ("10:00:00", "50"), ("10:00:01", "00"), ("10:00:01", "50")]


def frame(source: Path, target: Path, k: int, when: str, subsec: str, zone=None, blur=0.0):
    """Frame k of a burst of `source`: the camera drifts 3 px right and 2 px down per frame and
    the frame is 16 px smaller than the photo (a crop, as a burst's framing moves); EXIF
    DateTimeOriginal + SubSecTimeOriginal (+ OffsetTimeOriginal), written by Pillow."""
    with Image.open(source) as img:
        w, h = img.size
        shot = img.convert("RGB").crop((3 * k, 2 * k, w - 16 + 3 * k, h - 16 + 2 * k))
    if blur:
        shot = shot.filter(ImageFilter.GaussianBlur(blur))
    exif = Image.Exif()
    exif[271], exif[272] = "Canon", "EOS R6"
    sub = exif.get_ifd(EXIF_IFD)
    sub[DATETIME_ORIGINAL], sub[SUBSEC_ORIGINAL] = f"2024:05:01 {when}", subsec
    if zone:
        sub[OFFSET_ORIGINAL] = zone
    shot.save(target, quality=92, exif=exif.tobytes())
    return target


@pytest.fixture
def two_bursts(tmp_path):
    """card/: burst A (kodim01, 10:00:00.00-10:00:01.50, zone +02:00), burst B (kodim03, an hour
    later, no zone), 4 frames each (frame 2 of each shaken: blurred), and 4 photos without EXIF."""
    card = tmp_path / "card"
    card.mkdir()
    photos = sorted(PHOTOS.glob("*.png"))
    out = {}
    for name, source, hour, zone in (
        ("A", photos[0], "10", "+02:00"),
        ("B", photos[2], "11", None),
    ):
        out[name] = [
            frame(
                source,
                card / f"{name}_{k:04d}.jpg",
                k,
                hour + when[2:],
                subsec,
                zone,
                blur=2.5 if k == 2 else 0,
            )
            for k, (when, subsec) in enumerate(HALF_SECONDS)
        ]
    for src in photos[4:8]:
        with Image.open(src) as img:
            img.convert("RGB").save(card / f"{src.stem}.jpg", quality=90)
    library = tmp_path / "library"
    invoke("index", card, "--index", library)
    return library, out


def test_each_burst_is_one_stack_and_the_default_plan_trashes_no_frame(two_bursts, tmp_path):
    library, frames = two_bursts
    taken = {Path(r["path"]).name: r["taken"] for r in stored_rows(library)}
    assert taken["A_0001.jpg"] == "2024-05-01T10:00:00.50+02:00"  # sub-second and zone kept
    assert taken["B_0003.jpg"] == "2024-05-01T11:00:01.50"
    plan_path = tmp_path / "plan.json"
    args = ("--burst-window", "2s", "--plan", plan_path, "--json")
    report = json.loads(invoke("dups", "--index", library, *args).stdout)
    stacks = [g for g in report["groups"] if g["tier"] == "similar"]
    for burst in frames.values():
        paths = {str(p) for p in burst}
        (stack,) = [g for g in stacks if {m["path"] for m in g["members"]} & paths]
        assert {m["path"] for m in stack["members"]} == paths  # the whole burst, nothing else
        assert stack["stack"] is True and stack["best"] in paths
        assert stack["best"] != str(burst[2])  # not the shaken frame
    assert not [g for g in report["groups"] if g["tier"] != "similar"]  # no frame is a "copy"
    plan = json.loads(plan_path.read_text())
    actions = {f["path"]: f["action"] for g in plan["groups"] for f in g["files"]}
    everyone = {str(p) for burst in frames.values() for p in burst}
    assert everyone <= set(actions) and {actions[p] for p in everyone} == {"keep"}
    assert plan["summary"]["actions"]["trash"] == 0


def test_frames_within_one_second_are_apart_by_their_sub_seconds(two_bursts):
    library, _ = two_bursts
    window = ("--burst-window", "0.4s", "--json")  # 0.5 s between frames: no two frames pair
    report = json.loads(invoke("dups", "--index", library, *window).stdout)
    assert not [g for g in report["groups"] if g["tier"] == "similar"]


# --- capture time: read, stored, parsed ----------------------------------------------------------


def exif_with(ifd0: dict | None = None, sub: dict | None = None) -> Image.Exif:
    exif = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    for tag, value in (sub or {}).items():
        exif.get_ifd(EXIF_IFD)[tag] = value
    return exif


@pytest.mark.parametrize(
    "ifd0, sub, taken",
    [
        ({}, {DATETIME_ORIGINAL: "2024:05:01 10:00:00"}, "2024-05-01T10:00:00"),
        (
            {},
            {DATETIME_ORIGINAL: "2024:05:01 10:00:00", SUBSEC_ORIGINAL: "5"},
            "2024-05-01T10:00:00.5",
        ),
        (
            {},
            {
                DATETIME_ORIGINAL: "2024:05:01 10:00:00",
                SUBSEC_ORIGINAL: "123",
                OFFSET_ORIGINAL: "-05:00",
            },
            "2024-05-01T10:00:00.123-05:00",
        ),
        (
            {},
            {DATETIME_ORIGINAL: "2024:05:01 10:00:00", SUBSEC_ORIGINAL: "12345678"},
            "2024-05-01T10:00:00.123456",
        ),
        (
            {},
            {DATETIME_ORIGINAL: "2024:05:01 10:00:00", OFFSET_ORIGINAL: "   "},
            "2024-05-01T10:00:00",
        ),
        # DateTimeOriginal where some tools write it: IFD0
        (
            {DATETIME_ORIGINAL: "2024:05:01 10:00:00", SUBSEC_ORIGINAL: "25"},
            {},
            "2024-05-01T10:00:00.25",
        ),
        # no DateTimeOriginal: DateTime with its own SubSecTime and OffsetTime
        (
            {DATETIME: "2024:05:01 10:00:00", SUBSEC: "75", OFFSET: "+09:00"},
            {},
            "2024-05-01T10:00:00.75+09:00",
        ),
        ({}, {DATETIME_ORIGINAL: "0000:00:00 00:00:00"}, None),  # an unset camera clock
        ({}, {}, None),
    ],
)
def test_capture_time_reads_sub_seconds_and_zone(ifd0, sub, taken):
    assert capture_time(exif_with(ifd0, sub)) == taken


@pytest.mark.parametrize(
    "stored, seconds_after_10",
    [
        ("2024-05-01T10:00:00", 0.0),  # every version
        ("2024-05-01T10:00:00.5", 0.5),  # sub-seconds as the camera wrote them (3.10's
        ("2024-05-01T10:00:00.50", 0.5),  # fromisoformat takes only 3 or 6 digits)
        ("2024-05-01T10:00:00.1234567", 0.123456),
        ("2024-05-01T10:00:00.50+02:00", 0.5),  # with the zone: the camera's clock still
        ("2024-05-01 10:00:00.25", 0.25),
    ],
)
def test_stored_capture_times_of_every_version_parse_alike(stored, seconds_after_10):
    base = bursts.seconds("2024-05-01T10:00:00")
    assert bursts.seconds(stored) - base == pytest.approx(seconds_after_10, abs=1e-6)
    assert parse_capture_time(stored) is not None
    assert Facts("/p/a.jpg", taken=stored).date[1] == "EXIF"  # keep policies read it too


@pytest.mark.parametrize(
    "bad", [None, "", "yesterday", "2024-13-01T10:00:00", "0000-00-00T00:00:00"]
)
def test_unreadable_capture_times_are_none(bad):
    assert parse_capture_time(bad) is None and bursts.seconds(bad) is None
