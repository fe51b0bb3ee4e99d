"""Reference folders (`dups --reference`, the page's field): a master archive is never acted on,
groups made only of its files are not reported, and a copy elsewhere is the one offered for
removal — through the real commands, the plan file, apply and the HTTP API."""

import json
import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from search.collection import Collection
from search.web.app import create_app
from tests.helpers import PHOTOS, invoke

BASE_URL = "http://127.0.0.1"


def build(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """archive/ (4 photos, one of them twice), downloads/ (copies of two archive photos, one
    upscaled), and a photo only in downloads with its own copy there."""
    archive, downloads = tmp_path / "photos" / "archive", tmp_path / "photos" / "downloads"
    archive.mkdir(parents=True)
    downloads.mkdir()
    photos = sorted(PHOTOS.glob("*.png"))[:6]
    for p in photos[:4]:
        shutil.copy2(p, archive / p.name)
    shutil.copy2(photos[0], archive / f"again-{photos[0].name}")  # a pair inside the archive
    shutil.copy2(photos[1], downloads / photos[1].name)  # a byte copy of an archive photo
    with Image.open(photos[2]) as img:  # an upscaled copy: the policy alone would keep it
        img.resize((img.width * 3 // 2, img.height * 3 // 2)).save(downloads / "bigger.png")
    shutil.copy2(photos[5], downloads / photos[5].name)  # duplicates only among downloads
    shutil.copy2(photos[5], downloads / f"copy of {photos[5].name}")
    library = tmp_path / "library"
    invoke("index", tmp_path / "photos", "--index", library)
    return tmp_path / "photos", archive, downloads, library


def groups_by_folder(report: dict, *folders: Path) -> list[set[str]]:
    return [{Path(m["path"]).parent.name for m in g["members"]} for g in report["groups"]]


def test_reference_files_are_kept_and_archive_only_groups_go(tmp_path, trash):
    photos, archive, downloads, library = build(tmp_path)
    plain = json.loads(invoke("dups", "--index", library, "--json").stdout)
    assert {"archive"} in groups_by_folder(plain)  # the archive's own pair, without --reference
    plan_path = tmp_path / "plan.json"
    report = json.loads(
        invoke(
            "dups", "--index", library, "--reference", archive, "--plan", plan_path, "--json"
        ).stdout
    )
    assert report["reference"] == [str(archive)]
    folders = groups_by_folder(report)
    assert {"archive"} not in folders  # nothing to do in a group of reference files only
    assert {"archive", "downloads"} in folders and {"downloads"} in folders
    for g in report["groups"]:
        for m in g["members"]:
            assert m["reference"] == m["path"].startswith(str(archive) + "/")
    plan = json.loads(plan_path.read_text())
    assert plan["reference"] == [str(archive)]
    bigger = next(
        g for g in plan["groups"] if any(f["path"].endswith("bigger.png") for f in g["files"])
    )
    assert bigger["keep"].startswith(str(archive))  # not the larger copy the policy would keep
    assert "folder:" in plan["policy"]
    for g in plan["groups"]:
        in_archive = [f for f in g["files"] if f["path"].startswith(str(archive))]
        if in_archive:  # a reference file is the kept one, even against a larger copy
            assert g["keep"].startswith(str(archive))
        for f in in_archive:
            assert f["action"] == "keep"
    before = {p: p.read_bytes() for p in archive.iterdir()}
    invoke("apply", plan_path, "--yes")
    assert {p: p.read_bytes() for p in archive.iterdir()} == before  # every byte still there
    left = sorted(p.name for p in downloads.iterdir())
    assert len(left) == 1  # the archive's copies and one of the pair went to the trash


def test_a_plan_edited_to_act_on_a_reference_file_is_refused(tmp_path, trash):
    photos, archive, downloads, library = build(tmp_path)
    plan_path = tmp_path / "plan.json"
    invoke("dups", "--index", library, "--reference", archive, "--plan", plan_path)
    plan = json.loads(plan_path.read_text())
    group = next(g for g in plan["groups"] if any(str(archive) in f["path"] for f in g["files"]))
    victim = next(f for f in group["files"] if f["path"] != group["keep"])
    group["keep"] = victim["path"]
    for f in group["files"]:
        f["action"] = "keep" if f["path"] == victim["path"] else "trash"
    plan_path.write_text(json.dumps(plan))
    result = invoke("apply", plan_path, "--yes", expect=None)
    assert result.exit_code != 0 and "reference folder" in result.output
    assert all(p.exists() for p in archive.iterdir())


def test_reference_folders_over_http(tmp_path):
    photos, archive, downloads, library = build(tmp_path)
    with TestClient(create_app(Collection(library)), base_url=BASE_URL) as client:
        found = client.get("/api/duplicates", params={"reference": [str(archive)]})
        assert found.status_code == 200, found.text
        assert {"archive"} not in groups_by_folder(found.json())
        plan = client.post("/api/plan", json={"reference": [str(archive)]})
        assert plan.status_code == 200, plan.text
        for g in plan.json()["groups"]:
            for f in g["files"]:
                if f["path"].startswith(str(archive)):
                    assert f["action"] == "keep"
        # choosing a downloads file as the keeper still keeps the archive's file
        g = next(
            g
            for g in plan.json()["groups"]
            if len({Path(f["path"]).parent for f in g["files"]}) > 1
        )
        other = next(f for f in g["files"] if not f["path"].startswith(str(archive)))
        image_id = plan.json()["image_ids"][other["path"]]
        edited = client.post(
            f"/api/plan/{plan.json()['id']}/keep", json={"group": g["group"], "id": image_id}
        )
        assert edited.status_code == 200, edited.text
        group = next(x for x in edited.json()["groups"] if x["group"] == g["group"])
        assert all(
            f["action"] == "keep" for f in group["files"] if f["path"].startswith(str(archive))
        )
        missing = client.get("/api/duplicates", params={"reference": [str(tmp_path / "none")]})
        assert missing.status_code == 400 and "not a folder" in missing.json()["error"]["message"]
