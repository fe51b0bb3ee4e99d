"""Which copy survives (issue 26, item 3): of byte- or pixel-identical copies the default plan
keeps the one a person calls the original (not under Backup/, Downloads/, tmp/..., not named like
a copy, the older), not the shortest path; near copies still go by resolution first; a plan that
empties a folder says so and names --reference."""

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import ImageOps

from search.cleanup.policy import DEFAULT_POLICY, Facts, copy_folders, is_edit_name, parse_policy
from tests.helpers import PHOTOS, index, invoke
from tests.messy_library import camera_exif, jpeg, load_rgb, scaled

POLICY_FILES = sorted((Path(__file__).parent.parent / "data" / "keep-policies").glob("*.txt"))
HASH = "ab" * 32


def same_bytes(path: str, mtime_s: float = 1.6e9, taken="2019-06-01T10:00:00") -> Facts:
    """A byte-identical copy of one 4000x3000 JPEG (all facts equal but the path and mtime)."""
    return Facts(path, 4000, 3000, 3_000_000, int(mtime_s * 1e9), taken, 5, hash=HASH)


# --- the policy ----------------------------------------------------------------------------------


def test_byte_identical_copies_keep_the_original_not_the_shorter_backup_path():
    original = same_bytes("/home/me/Pictures/Originals/2019/IMG_0001.jpg")
    backup = same_bytes("/home/me/Backup/IMG_0001.jpg")  # the shorter path
    policy = parse_policy(None)
    assert policy.rank([backup, original])[0] is original
    why = policy.explain(original, backup)
    assert why["criterion"] == "original-folder"
    assert why["kept"] == "not under a backup/copy folder" and why["runner_up"] == "under Backup/"
    assert why["text"].startswith("byte-identical copies (same SHA-256): ")
    assert "runner-up Backup/IMG_0001.jpg" in why["text"]


@pytest.mark.parametrize(
    "folder", ["Backup", "Backups", "backups", "Copies", "Downloads", "Exports", "tmp", "Temp"]
)
def test_every_copy_like_folder_loses_to_the_original(folder):
    original = same_bytes("/p/Originals/2019/IMG_0001.jpg")
    copy = same_bytes(f"/p/{folder}/IMG_0001.jpg")
    assert copy_folders(copy.path) == [folder] and copy_folders(original.path) == []
    assert parse_policy(None).rank([copy, original])[0] is original


def test_the_folders_both_lie_under_do_not_count():
    """A library under /tmp (or ~/Backup) still tells the original from the copy below it."""
    original = same_bytes("/tmp/lib/Originals/IMG_0001.jpg")
    copy = same_bytes("/tmp/lib/Downloads/IMG_0001.jpg")
    why = parse_policy(None).explain(*parse_policy(None).rank([copy, original]))
    assert why["runner_up_path"] == copy.path
    assert (why["kept"], why["runner_up"]) == ("not under a backup/copy folder", "under Downloads/")


def test_then_the_copy_name_then_the_older_capture_then_the_path():
    policy = parse_policy(None)
    plain, named = same_bytes("/p/a/IMG_0001.jpg"), same_bytes("/p/a/IMG_0001-1.jpg")
    assert policy.rank([named, plain])[0] is plain
    assert policy.explain(plain, named)["criterion"] == "original-over-edit"
    older = same_bytes("/p/zz/long/folder/IMG_7.jpg", taken="2019-06-01T10:00:00")
    newer = same_bytes("/p/b/IMG_7.jpg", taken="2019-06-01T10:00:05")
    assert policy.rank([newer, older])[0] is older
    assert policy.explain(older, newer)["criterion"] == "oldest"
    short, long = same_bytes("/p/b/IMG_8.jpg"), same_bytes("/p/bb/IMG_8.jpg")
    assert policy.rank([long, short])[0] is short
    assert policy.explain(short, long)["criterion"] == "path"


def test_a_larger_export_in_downloads_still_wins_on_resolution_and_the_reason_says_so():
    original = Facts("/p/Originals/IMG_0001.jpg", 2000, 1500, 1_000_000, 10**18, None, 5)
    export = Facts("/p/Downloads/IMG_0001.jpg", 4000, 3000, 2_000_000, 10**18, None, 5)
    policy = parse_policy(None)
    assert policy.rank([original, export])[0] is export
    why = policy.explain(export, original)
    assert why["criterion"] == "resolution"
    assert "kept although under Downloads/ (original-folder comes after resolution)" in why["text"]


def test_a_users_own_policy_ties_to_the_original_too():
    original = same_bytes("/p/Originals/IMG_0001.jpg")
    backup = same_bytes("/p/Backup/IMG_0001.jpg")
    policy = parse_policy("resolution > largest-file")
    assert policy.rank([backup, original])[0] is original
    assert (
        "every criterion of the policy ties; then original-folder"
        in policy.explain(original, backup)["text"]
    )


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_the_policy_files_in_data_keep_the_original_of_byte_copies(path):
    original = same_bytes("/p/Originals/2019/IMG_0001.jpg")
    copies = [same_bytes(f"/p/{d}/IMG_0001.jpg") for d in ("Backup", "Downloads", "tmp")]
    assert parse_policy(str(path)).rank([*copies, original])[0] is original


@pytest.mark.parametrize(
    "name,edit",
    [
        ("IMG_0042-1.jpg", True),
        ("IMG_0042-12.jpg", True),
        ("IMG_0042_edited.jpg", True),
        ("IMG_0042-copy.jpg", True),
        ("IMG_0042-edited-2.jpg", True),
        ("2019-05-12.jpg", False),  # a date, not a copy number
        ("DSC-0001.jpg", False),
        ("IMG_20190501_101010.jpg", False),
    ],
)
def test_copy_names(name, edit):
    assert is_edit_name(name) is edit


def test_the_default_policy_keeps_its_rules_for_near_copies_in_their_order():
    names = parse_policy(None).text.split(" > ")
    old = ["resolution", "exif-complete", "original-over-edit", "largest-file", "oldest"]
    assert [n for n in names if n in old] == old
    assert names.index("original-folder") == names.index("original-over-edit") - 1
    assert parse_policy(DEFAULT_POLICY).text == parse_policy(None).text


# --- the README's scenario, planned with the defaults -------------------------------------------


def pictures(root: Path, count: int = 4) -> dict:
    """Originals/2019 (camera JPEGs with EXIF), Backup/ byte copies of every one (shorter paths),
    a phone export of the first, that export saved again in Downloads/, a grey and a cropped
    edit."""
    originals = root / "Originals" / "2019"
    originals.mkdir(parents=True)
    out = {"originals": [], "backup": []}
    for n, src in enumerate(sorted(PHOTOS.glob("*.png"))[:count], start=1):
        img = load_rgb(src)
        path = originals / f"IMG_{n:04d}.jpg"
        path.write_bytes(jpeg(img, 92, camera_exif(_when(n))))
        out["originals"].append(path)
        (root / "Backup").mkdir(exist_ok=True)
        out["backup"].append(Path(shutil.copy(path, root / "Backup" / path.name)))
    first = load_rgb(out["originals"][0])
    (root / "Phone").mkdir()
    phone = root / "Phone" / "IMG_20190601_100000.jpg"
    phone.write_bytes(jpeg(scaled(first, 0.6), 80, camera_exif(_when(1), "Google", "Pixel 3")))
    (root / "Downloads").mkdir()
    out["downloads"] = Path(shutil.copy(phone, root / "Downloads" / phone.name))
    (root / "Edits").mkdir()
    ImageOps.grayscale(first).convert("RGB").save(root / "Edits" / "IMG_0001-edited.jpg")
    second = load_rgb(out["originals"][1])
    w, h = second.size
    second.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(root / "Edits" / "crop.jpg")
    return out


def _when(n: int) -> dt.datetime:
    return dt.datetime(2019, 6, n, 10, 0, 0)


@pytest.fixture
def scenario(tmp_path):
    root = tmp_path / "Pictures"
    files = pictures(root)
    library = tmp_path / "library"
    index(root, library)
    return root, library, files


def test_the_default_plan_keeps_originals_and_says_why(scenario, tmp_path):
    root, library, files = scenario
    plan_path = tmp_path / "plan.json"
    result = invoke("dups", "--index", library, "--threshold", "0.999", "--plan", plan_path)
    plan = json.loads(plan_path.read_text())
    actions = {f["path"]: f["action"] for g in plan["groups"] for f in g["files"]}
    originals = [str(p) for p in files["originals"]]
    assert all(actions[p] == "keep" for p in originals), actions
    assert all(actions[str(p)] == "trash" for p in files["backup"])
    assert sorted(g["keep"] for g in plan["groups"]) == originals  # exact and near groups
    for g in plan["groups"]:  # each original won over its byte-identical backup
        assert set(g["reason"]) >= {"criterion", "kept", "runner_up", "runner_up_path", "text"}
        assert g["reason"]["criterion"] == "original-folder"
        assert "byte-identical" in g["reason"]["text"] and "Backup/" in g["reason"]["text"]
    emptied = {e["folder"]: e["files"] for e in plan["summary"]["emptied_folders"]}
    assert emptied[str(root / "Backup")] == len(originals)
    assert str(files["originals"][0].parent) not in emptied
    assert "the plan removes every picture of" in result.output
    assert str(root / "Backup") in result.output
    assert "--reference" in result.output


def test_a_plan_that_empties_a_folder_of_originals_says_so_and_names_reference(scenario, tmp_path):
    root, library, files = scenario
    plan_path = tmp_path / "plan.json"
    # a policy that prefers the backup: every original of Originals/2019 goes
    args = ("--threshold", "0.999", "--keep", f"folder:{root / 'Backup'}", "--plan", plan_path)
    result = invoke("dups", "--index", library, *args)
    folder = str(root / "Originals" / "2019")
    summary = json.loads(plan_path.read_text())["summary"]
    assert {"folder": folder, "files": 4} in summary["emptied_folders"]
    assert folder in result.output and f"--reference {folder}" in result.output
    html = tmp_path / "review.html"
    invoke("dups", "--index", library, *args[:4], "--html", html)
    assert "--reference FOLDER" in html.read_text() and folder in html.read_text()
    # with the originals as a reference folder nothing of theirs is removed
    invoke("dups", "--index", library, *args[:4], "--reference", folder, "--plan", plan_path)
    plan = json.loads(plan_path.read_text())
    assert all(folder != e["folder"] for e in plan["summary"]["emptied_folders"])
    assert os.path.isdir(folder)
