"""What a new user met (issue 26): the README's privacy promise against ONNX Runtime's
telemetry, plans bound to their library, `apply` on a file that is not a plan, and one list of
image formats for the CLI and the page."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer import files, ray_backend
from indexer.decode import Recipe
from indexer.errors import BadQuery
from indexer.library.store import Store
from search.cleanup.policy import parse_policy
from search.collection import Collection
from search.web.app import create_app
from tests.helpers import (
    PHOTOS,
    ROOT,
    copy_photos,
    index,
    invoke,
    make_dup_lib,
    make_plan,
    stored_rows,
)
from tests.raw_samples import write_dng

# The switches indexer/privacy.py sets (named here, not imported: the test states the promise).
TELEMETRY_OFF = {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}

# --- item 2: nothing leaves the machine ----------------------------------------------------------

EMBED_THEN_REPORT = """
import json, os, sys
from search.cli.app import cli
cli.main(sys.argv[1:], standalone_mode=False)
print(json.dumps({"env": {k: os.environ.get(k) for k in %r},
                  "onnxruntime": "onnxruntime" in sys.modules}))
"""


def test_the_onnx_path_writes_no_telemetry_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "photos"
    copy_photos(folder, 2)
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF}
    env.pop("XDG_CACHE_HOME", None)  # ONNX Runtime's queue goes to $XDG_CACHE_HOME or ~/.cache
    env.pop("DO_NOT_TRACK", None)
    env["HOME"] = str(home)
    args = ["index", folder, "--index", tmp_path / "lib", "--runtime", "onnx", "--dtype", "fp32"]
    proc = subprocess.run(
        [sys.executable, "-c", EMBED_THEN_REPORT % (list(TELEMETRY_OFF),), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["onnxruntime"]  # the embed really went through ONNX Runtime
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not (home / ".cache" / "Microsoft").exists(), written  # no device id, no event queue
    assert report["env"] == TELEMETRY_OFF  # and its children (decode workers) inherit the switches


# --- item 4: a plan acts only through the library it was made for --------------------------------


def two_libraries(tmp_path):
    """Two indexed duplicate libraries (helpers.make_dup_lib): a/ and b/, (folder, library) each."""
    return make_dup_lib(tmp_path / "a"), make_dup_lib(tmp_path / "b")


def error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


def test_a_plan_is_refused_through_another_library(tmp_path, trash):
    (folder_a, lib_a), (folder_b, lib_b) = two_libraries(tmp_path)
    plan_path = tmp_path / "plan.json"
    invoke("dups", "--index", lib_a, "--threshold", "0.999", "--plan", plan_path)
    plan = json.loads(plan_path.read_text())
    id_a = plan["library_id"]
    assert id_a and id_a == Store.open(lib_a).library_id()  # stored once, in the library's meta
    id_b = Store.open(lib_b).library_id()
    assert id_b and id_b != id_a
    before = sorted(os.listdir(folder_a)), sorted(os.listdir(folder_b))
    for args in (["--yes"], ["--dry-run"], ["--yes", "--json"]):
        line = error_line(invoke("apply", plan_path, "--index", lib_b, *args, expect=1))
        assert id_a in line and id_b in line and str(lib_a) in line and str(lib_b) in line
    assert error_line(invoke("undo", plan_path, "--index", lib_b, expect=1)).count("id ") == 2
    assert (sorted(os.listdir(folder_a)), sorted(os.listdir(folder_b))) == before
    # the same folder made again is another library: the plan of the old one is refused too
    shutil.rmtree(lib_a)
    index(folder_a, lib_a)
    assert "was made for the library" in error_line(invoke("apply", plan_path, "--yes", expect=1))
    assert sorted(os.listdir(folder_a)) == before[0]


def test_an_old_plan_without_an_id_is_taken_only_for_its_own_files(tmp_path, trash):
    (folder_a, lib_a), (_, lib_b) = two_libraries(tmp_path)
    plan_path = tmp_path / "plan.json"
    invoke("dups", "--index", lib_a, "--threshold", "0.999", "--plan", plan_path)
    plan = json.loads(plan_path.read_text())
    del plan["library_id"]  # as dinosearch wrote plans before
    plan_path.write_text(json.dumps(plan))
    line = error_line(invoke("apply", plan_path, "--index", lib_b, "--dry-run", expect=1))
    assert "no library id" in line and "dups --index" in line and str(lib_b) in line
    done = json.loads(invoke("apply", plan_path, "--yes", "--json").stdout)  # its own library
    assert done["counts"] == {"done": 2}
    assert json.loads(invoke("undo", plan_path, "--json").stdout)["counts"] == {"undone": 2}


def test_the_page_refuses_a_plan_of_another_library(tmp_path):
    (_, lib_a), (_, lib_b) = two_libraries(tmp_path)
    plan = make_plan(lib_a)
    plan.library = str(lib_b)  # a plan file under b/plans/ that names b's folder, a's id
    stored = tmp_path / "b" / "library" / "plans" / f"{plan.id}.json"
    stored.parent.mkdir()
    plan.write(str(stored))
    with TestClient(create_app(Collection(lib_b)), base_url="http://127.0.0.1:8000") as client:
        for body in ({"plan_id": plan.id}, {"plan_id": plan.id, "confirm": True}):
            r = client.post("/api/apply", json=body)
            assert r.status_code == 409, r.text
            error = r.json()["error"]
            assert (
                error["code"] == "plan_for_another_library" and plan.library_id in error["message"]
            )


# --- item 5: `apply` on a file that is not a plan -------------------------------------------------


def not_plans(tmp_path) -> dict:
    """What a new user hands `apply` instead of a plan."""
    out = tmp_path / "not-plans"
    out.mkdir()
    shutil.copy(next(PHOTOS.glob("*.png")), out / "photo.png")
    Image.new("RGB", (8, 8), "red").save(out / "IMAGE.jpg", quality=90)
    (out / "notes.txt").write_text("keep the red ones\n")
    (out / "empty.json").write_text("")
    (out / "other.json").write_text(json.dumps({"hello": "world"}))
    (out / "list.json").write_text("[1, 2, 3]")
    (out / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    groups = {"version": 1, "groups": [{"group": 1, "keep": ["a"], "files": []}]}
    (out / "odd-plan.json").write_text(json.dumps(groups))  # a plan's shape, wrong types
    (out / "folder").mkdir()
    return {p.name: p for p in out.iterdir()} | {"missing.json": out / "missing.json"}


def test_apply_and_undo_on_what_is_not_a_plan_say_so_in_one_line(tmp_path):
    for name, path in not_plans(tmp_path).items():
        for command in (["apply", path], ["apply", path, "--dry-run"], ["undo", path]):
            result = invoke(*command, expect=None)
            line = error_line(result)
            assert result.exit_code == 2, (name, command, result.output)
            assert name in line or str(path) in line, (name, line)


# --- item 6: one list of image formats (indexer/files.py) for the CLI and the page ----------------

BASE_URL = "http://127.0.0.1:8000"


def library_with_a_dng(tmp_path):
    """(library, dng): two photos and a DNG without an embedded preview (Pillow cannot read it;
    LibRaw demosaics it), indexed by the CLI."""
    folder = tmp_path / "photos"
    sources = copy_photos(folder, 3)
    dng = write_dng(sources[2], folder / "IMG_0001.DNG")
    (folder / sources[2].name).unlink()
    library = tmp_path / "library"
    index(folder, library)
    assert str(dng) in {r["path"] for r in stored_rows(library) if r["status"] == "ok"}
    return library, dng


def test_a_dng_upload_is_searched_as_the_cli_reads_it(tmp_path):
    library, dng = library_with_a_dng(tmp_path)
    via_cli = json.loads(invoke("query", dng, "--index", library, "-k", "3", "--json").stdout)
    with TestClient(create_app(Collection(library)), base_url=BASE_URL) as client:
        upload = {"file": (dng.name, dng.read_bytes(), "image/x-adobe-dng")}
        r = client.post("/api/search", files=upload, data={"k": 3})
        assert r.status_code == 200, r.text  # was 415: uploads were read by Pillow only
        results = r.json()["results"]
        assert results[0]["path"] == str(dng) and results[0]["score"] > 0.9999
        assert [h["id"] for h in results] == [h["id"] for h in via_cli["results"]]
        page = client.get("/").text  # the page's file picker offers every indexed extension
        accept = re.search(r'accept="([^"]*)"', page).group(1).split(",")
        assert {".dng", ".nef", ".heic", ".jpg"} <= set(accept)


def test_ray_workers_read_raw_files_as_local_workers_do(tmp_path):
    dng = write_dng(next(PHOTOS.glob("*.png")), tmp_path / "IMG_0002.dng")
    decoded, why = ray_backend.decode_on_worker(str(dng), Recipe(), None)
    assert why is None and decoded.format == "DNG (demosaic)"


def test_keep_criteria_name_only_formats_that_are_indexed():
    for name, extensions in files.FORMAT_NAMES.items():
        assert extensions and extensions <= files.IMAGE_EXTENSIONS, name
    assert "jxl" not in files.FORMAT_NAMES  # Pillow here has no JPEG XL decoder: never indexed
    with pytest.raises(BadQuery, match="format:jxl"):
        parse_policy("format:jxl,png")
    assert parse_policy("format:raw,tiff,heic,png,jpeg,webp,avif,gif,bmp")
