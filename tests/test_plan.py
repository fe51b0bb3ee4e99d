"""Plans: shape and reasons, the keep-best policy, decisions that stick, captures kept together."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from search.cleanup.plan import PlanError, read_plan
from search.cleanup.policy import DEFAULT_POLICY, Facts, PolicyError, is_edit_name, parse_policy
from search.collection import Collection
from search.dups.decisions import list_decisions, mark, unmark
from tests.helpers import PHOTOS, index, invoke, make_plan


def names(group) -> list[str]:
    return sorted(os.path.basename(f.path) for f in group.files)


def by_tier(plan) -> dict:
    return {g.tier: g for g in plan.groups}


# --- plan shape and reasons ----------------------------------------------------------------------


def test_plan_keeps_the_original_and_says_why(dup_lib, tmp_path):
    folder, library = dup_lib
    plan = make_plan(library)
    groups = by_tier(plan)
    assert names(groups["exact"]) == ["kodim01 copy.png", "kodim01.png"]
    exact = groups["exact"]
    assert exact.keep == str(folder / "kodim01.png")
    assert exact.reason["criterion"] == "original-over-edit"
    assert exact.reason["kept"] == "original" and exact.reason["runner_up"] == "edit/copy"
    assert "runner-up kodim01 copy.png" in exact.reason["text"]
    actions = {os.path.basename(f.path): f.action for f in exact.files}
    assert actions == {"kodim01.png": "keep", "kodim01 copy.png": "trash"}
    assert exact.files[0].path == exact.keep  # the kept file comes first
    pixels = groups["pixels"]
    assert pixels.keep == str(folder / "kodim02.png")
    assert pixels.reason["criterion"] == "original-over-edit"
    dropped = next(f for f in pixels.files if f.path != pixels.keep)
    assert dropped.deltas["pixels_pct"] == 0.0 and dropped.deltas["bytes"] != 0
    assert plan.policy == parse_policy(DEFAULT_POLICY).text
    assert plan.summary()["actions"]["trash"] == 2


def test_plan_json_round_trip_and_csv(dup_lib, tmp_path):
    _, library = dup_lib
    plan = make_plan(library)
    target = tmp_path / "plan.json"
    plan.write(str(target))
    data = json.loads(target.read_text())
    assert data["version"] == 1 and data["id"] == plan.id and data["action"] == "trash"
    assert set(data["groups"][0]) == {"group", "tier", "keep", "reason", "files"}
    assert {"path", "action", "hash", "size", "mtime_ns", "deltas", "note"} <= set(
        data["groups"][0]["files"][0]
    )
    again = read_plan(str(target))
    assert again.to_json() == plan.to_json()
    plan.write_csv(str(tmp_path / "plan.csv"))
    rows = list(csv.DictReader((tmp_path / "plan.csv").open()))
    assert {r["action"] for r in rows} == {"keep", "trash"}
    assert all(r["reason"] for r in rows if r["kept"] == "True")


def test_an_edited_plan_cannot_touch_a_kept_file(dup_lib, tmp_path):
    _, library = dup_lib
    plan = make_plan(library)
    data = plan.to_json()
    data["groups"][0]["files"][0]["action"] = "delete"  # the kept file
    target = tmp_path / "plan.json"
    target.write_text(json.dumps(data))
    with pytest.raises(PlanError, match="kept file"):
        read_plan(str(target))
    data["groups"][0]["files"][0]["action"] = "shred"
    target.write_text(json.dumps(data))
    with pytest.raises(PlanError, match="unknown action"):
        read_plan(str(target))


def test_links_only_for_byte_identical_files(dup_lib):
    _, library = dup_lib
    groups = by_tier(make_plan(library, action="hardlink"))
    assert {f.action for f in groups["exact"].files} == {"keep", "hardlink"}
    dropped = next(f for f in groups["pixels"].files if f.path != groups["pixels"].keep)
    assert dropped.action == "keep" and "byte-identical" in dropped.note


# --- policy --------------------------------------------------------------------------------------


def facts(path, w, h, size, mtime_s, exif=0, taken=None) -> Facts:
    return Facts(path, w, h, size, int(mtime_s * 1e9), taken, exif)


BIG_JPEG = facts("/p/a/IMG_1.jpg", 4000, 3000, 3_000_000, 2_000_000_000, exif=5)
SMALL_PNG = facts("/p/b/IMG_1.png", 2000, 1500, 6_000_000, 1_000_000_000)
EDIT = facts("/p/c/IMG_1-edited.jpg", 4000, 3000, 3_500_000, 1_500_000_000, exif=5)


def test_policy_order_decides():
    candidates = [SMALL_PNG, EDIT, BIG_JPEG]
    assert parse_policy("resolution > original-over-edit").rank(candidates)[0] is BIG_JPEG
    assert parse_policy("largest-file").rank(candidates)[0] is SMALL_PNG
    assert parse_policy("format:png,jpeg > resolution").rank(candidates)[0] is SMALL_PNG
    assert parse_policy("oldest").rank(candidates)[0] is SMALL_PNG
    assert parse_policy("resolution > largest-file").rank(candidates)[0] is EDIT
    assert parse_policy("folder:/p/c,/p/b").rank(candidates)[0] is EDIT
    assert parse_policy("exif-complete > smallest-file").rank(candidates)[0] is BIG_JPEG


POLICY_FILES = sorted((Path(__file__).parent.parent / "data" / "keep-policies").glob("*.txt"))


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_the_policy_files_in_data_parse_and_decide(path):
    """Every example policy the README points at works as written, comments and all."""
    policy = parse_policy(str(path))
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    assert policy.text == " > ".join(ln for ln in lines if ln)
    winner = {  # among the edit, its original and a smaller PNG of the same picture
        "photographer.txt": BIG_JPEG,  # the original JPEG: camera format, not the edit
        "dataset.txt": BIG_JPEG,  # most pixels, then the smaller file
        "master-archive.txt": EDIT,  # none in the archive: most pixels, then the larger file
    }[path.name]
    assert policy.rank([SMALL_PNG, EDIT, BIG_JPEG])[0] is winner


def test_there_are_policy_files_in_data():
    assert len(POLICY_FILES) >= 3


def test_policy_explains_the_deciding_criterion_and_the_runner_up():
    policy = parse_policy("resolution > original-over-edit > largest-file")
    ranked = policy.rank([EDIT, SMALL_PNG, BIG_JPEG])
    assert ranked[:2] == [BIG_JPEG, EDIT]
    why = policy.explain(ranked[0], ranked[1])
    assert why["criterion"] == "original-over-edit"  # resolution tied at 4000x3000
    assert why["kept"] == "original" and why["runner_up"] == "edit/copy"
    assert why["runner_up_path"] == EDIT.path and "IMG_1-edited.jpg" in why["text"]
    why = parse_policy("resolution").explain(BIG_JPEG, SMALL_PNG)
    assert (why["kept"], why["runner_up"]) == ("4000x3000", "2000x1500")
    tie = parse_policy("resolution").explain(BIG_JPEG, EDIT)  # the policy ties: the name decides
    assert tie["criterion"] == "original-over-edit" and "policy ties" in tie["text"]
    tie = parse_policy("resolution").explain(BIG_JPEG, facts("/p/aa/IMG_1.jpg", 4000, 3000, 1, 2e9))
    assert tie["criterion"] == "path"


def test_format_counts_the_capture_raw_and_policy_files(tmp_path):
    jpeg_with_raw = Facts("/x/IMG_2.jpg", 10, 10, capture_formats=(".cr2",))
    plain_png = Facts("/y/IMG_2.png", 10, 10)
    policy = parse_policy("format:raw,png,jpeg")
    assert policy.rank([plain_png, jpeg_with_raw])[0] is jpeg_with_raw
    assert "capture has cr2" in policy.explain(jpeg_with_raw, plain_png)["kept"]
    file = tmp_path / "keep.policy"
    file.write_text("# photographers\nresolution\nlargest-file  # then the least compressed\n")
    assert parse_policy(str(file)).text == "resolution > largest-file"


@pytest.mark.parametrize("bad", ["", "sharpness", "format:", "format:bmpx", "folder:"])
def test_bad_policies_are_clear_errors(bad):
    with pytest.raises(PolicyError, match="--keep|format|folder"):
        parse_policy(bad)


@pytest.mark.parametrize(
    "name,edit",
    [
        ("IMG_0001.jpg", False),
        ("IMG_0001-edited.jpg", True),
        ("IMG_0001 copy.jpg", True),
        ("IMG_0001 (1).jpg", True),
        ("Copy of IMG_0001.jpg", True),
        ("holiday_export.png", True),
        ("DSC_0042.NEF", False),
    ],
)
def test_edit_names(name, edit):
    assert is_edit_name(name) is edit


# --- decisions -----------------------------------------------------------------------------------


def test_decisions_survive_rename_and_reindex(dup_lib):
    folder, library = dup_lib
    store = Collection(library).store()
    mark(store, folder / "kodim02.png", folder / "kodim02-export.webp", "distinct")
    assert [g.tier for g in make_plan(library).groups] == ["exact"]
    os.rename(folder / "kodim02-export.webp", folder / "renamed.webp")
    sub = folder / "moved"
    sub.mkdir()
    os.rename(folder / "kodim02.png", sub / "kodim02.png")
    index(folder, library)
    assert [g.tier for g in make_plan(library).groups] == ["exact"]
    # keep-both on byte-identical copies: one content, kept in every copy
    mark(store, folder / "kodim01.png", folder / "kodim01 copy.png", "keep-both")
    assert make_plan(library).groups == []
    assert [d["kind"] for d in list_decisions(store)] == ["distinct", "keep-both"]
    assert unmark(store, sub / "kodim02.png", folder / "renamed.webp")
    assert [g.tier for g in make_plan(library).groups] == ["pixels"]


def test_a_decision_splits_only_the_decided_member(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(PHOTOS / "kodim07.png", folder / name)
    with Image.open(PHOTOS / "kodim07.png") as img:
        img.save(folder / "d.webp", lossless=True)
    library = tmp_path / "lib"
    index(folder, library)
    store = Collection(library).store()
    mark(store, folder / "a.png", folder / "d.webp")
    groups = make_plan(library).groups
    assert [names(g) for g in groups] == [["a.png", "b.png", "c.png"]]


def test_dups_mark_distinct_cli(dup_lib):
    """Through `dups --mark-distinct A B` (the lead's option on dups)."""
    folder, library = dup_lib
    invoke(
        "dups",
        "--index",
        library,
        "--mark-distinct",
        folder / "kodim02.png",
        folder / "kodim02-export.webp",
    )
    out = json.loads(invoke("dups", "--index", library, "--threshold", "0.999", "--json").stdout)
    assert [g["tier"] for g in out["groups"]] == ["exact"]


# --- captures ------------------------------------------------------------------------------------


@pytest.fixture
def capture_lib(tmp_path):
    """IMG_0001 as PNG + lossless WebP renditions with a RAW and an XMP beside them."""
    folder = tmp_path / "card"
    folder.mkdir()
    shutil.copy(PHOTOS / "kodim05.png", folder / "IMG_0001.png")
    with Image.open(PHOTOS / "kodim05.png") as img:
        img.save(folder / "IMG_0001.webp", lossless=True)
    (folder / "IMG_0001.CR2").write_bytes(b"not really raw")
    (folder / "IMG_0001.xmp").write_text("<x:xmpmeta/>")
    library = tmp_path / "lib"
    index(folder, library)
    return folder, library


def test_renditions_of_one_capture_are_never_removed_for_each_other(capture_lib):
    folder, library = capture_lib
    plan = make_plan(library, policy="format:webp,png")
    assert len(plan.groups) == 1
    group = plan.groups[0]
    assert group.tier == "pixels" and {f.action for f in group.files} == {"keep"}
    other = next(f for f in group.files if f.path != group.keep)
    assert "same capture" in other.note
    roles = {os.path.basename(c["path"]): c["role"] for c in group.files[0].companions}
    assert roles == {"IMG_0001.CR2": "raw", "IMG_0001.xmp": "sidecar"}
    assert not any(c["follows"] for f in group.files for c in f.companions)


def test_sidecars_and_live_video_follow_their_image(tmp_path):
    keep, card = tmp_path / "archive", tmp_path / "card"
    keep.mkdir()
    card.mkdir()
    shutil.copy(PHOTOS / "kodim06.png", keep / "kodim06.png")
    shutil.copy(PHOTOS / "kodim06.png", card / "IMG_0006.png")
    (card / "IMG_0006.xmp").write_text("<x:xmpmeta/>")
    (card / "IMG_0006.MOV").write_bytes(b"live photo video")
    (card / "IMG_0007.xmp").write_text("another capture")
    library = tmp_path / "lib"
    index(tmp_path, library)
    plan = make_plan(library, policy=f"folder:{keep}", action="move", move_to=tmp_path / "dups")
    (group,) = plan.groups
    assert group.keep == str(keep / "kodim06.png")
    moving = next(f for f in group.files if f.action == "move")
    follows = {os.path.basename(c["path"]) for c in moving.companions if c["follows"]}
    assert follows == {"IMG_0006.xmp", "IMG_0006.MOV"}
    plan_path = tmp_path / "plan.json"
    plan.write(str(plan_path))
    invoke("apply", plan_path, "--yes", "--index", library)
    root = Path(plan.move_to) / os.path.relpath(card, plan.root)
    assert sorted(os.listdir(root)) == ["IMG_0006.MOV", "IMG_0006.png", "IMG_0006.xmp"]
    assert sorted(os.listdir(card)) == ["IMG_0007.xmp"]
    invoke("undo", plan_path, "--index", library)
    assert sorted(os.listdir(card)) == [
        "IMG_0006.MOV",
        "IMG_0006.png",
        "IMG_0006.xmp",
        "IMG_0007.xmp",
    ]


def test_a_reason_names_the_runner_up_so_it_can_be_told_from_the_kept_file():
    kept = Facts(path="/p/DCIM/IMG_1.jpg", width=10, height=10, bytes=5, hash="h")
    other = Facts(path="/p/Backup/2015/IMG_1.jpg", width=10, height=10, bytes=5, hash="h")
    reason = parse_policy(None).explain(kept, other)
    assert reason["text"].endswith("(runner-up 2015/IMG_1.jpg)")
    assert "byte-identical" in reason["text"]
