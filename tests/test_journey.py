"""A user's journey through a messy photo folder, with the real CLI in subprocesses: index, dups
with the default (calibrated, whitened) threshold, plan, apply, check, undo, --of / --against, and
a read-only copy of the library. Real SQLite, real FAISS, the real trash (a private
XDG_DATA_HOME), the tiny random-init DINOv2 from the test HF cache.

The tests run in file order and share one library, as one journey: index, dups, plan / apply /
check / undo / check, then --of, --against and the read-only copy on the library undo left.
Each test still says for itself what breaks, so one product bug does not hide the others.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from search.dups.whitening import MIN_VECTORS_TO_WHITEN
from tests.helpers import ROOT, run_cli
from tests.messy_library import (
    Manifest,
    build,
    group_index,
    make_card,
    one_group_violations,
    plan_violations,
    recall,
    report_problems,
    sha256_tree,
)

pytestmark = pytest.mark.slow

JOURNEY_PHOTOS = 40  # about 116 images: over MIN_VECTORS_TO_WHITEN, so auto means whitened


@dataclass
class Journey:
    manifest: Manifest
    messy: Path
    library: Path
    base: Path
    env: dict
    indexed: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def journey(tmp_path_factory) -> Journey:
    base = tmp_path_factory.mktemp("journey")
    manifest = build(base / "messy", photos=JOURNEY_PHOTOS, seed=0)
    assert len(manifest.images()) > MIN_VECTORS_TO_WHITEN
    (base / "xdg").mkdir()
    env = {"XDG_DATA_HOME": str(base / "xdg")}  # send2trash's home trash goes there
    library = base / "library"
    indexed = run_cli("index", base / "messy", "--index", library, "--json", check=False, env=env)
    return Journey(manifest, base / "messy", library, base, env, indexed)


def dinosearch(j: Journey, *args, expect: int | None = 0) -> subprocess.CompletedProcess:
    """Run a CLI step on the journey's library: no traceback, the expected exit (None: any
    failure)."""
    proc = run_cli(*args, "--index", j.library, check=False, env=j.env)
    return checked(proc, args, expect)


def checked(proc, args, expect: int | None) -> subprocess.CompletedProcess:
    shown = f"dinosearch {' '.join(map(str, args))}"
    assert "Traceback" not in proc.stderr, f"{shown} crashed:\n{proc.stderr}"
    if expect is None:
        assert proc.returncode != 0, f"{shown} should fail:\n{proc.stdout}\n{proc.stderr}"
    else:
        assert proc.returncode == expect, f"{shown} exit {proc.returncode}:\n{proc.stderr}"
    return proc


def dinosearch_json(j: Journey, *args) -> dict:
    return json.loads(dinosearch(j, *args, "--json").stdout)


def problems_text(problems: list[str], report: dict, manifest: Manifest) -> str:
    groups = [
        f"  {n} [{g['tier']}] " + ", ".join(manifest.rel(m["path"]) for m in g["members"])
        for n, g in enumerate(report["groups"], 1)
    ]
    return "\n".join(problems + ["groups:"] + groups)


def assert_report_agrees(report: dict, manifest: Manifest) -> None:
    """The one-group rule, byte and pixel copies with their source, no two distinct graphics."""
    problems = report_problems(report, manifest)
    assert not problems, problems_text(problems, report, manifest)


# --- index and dups ------------------------------------------------------------------------------


def test_index_reports_the_junk_and_indexes_everything_else(journey):
    summary = json.loads(checked(journey.indexed, ("index",), 0).stdout)
    m = journey.manifest
    failed = {f["path"] for f in summary["failed"]}
    assert failed == {m.abs(p) for p in m.failed}, summary["failed"]
    assert summary["indexed"] == len(m.images())
    assert not {m.abs(p) for p in m.ignored} & failed


def test_dups_default_threshold_one_group_per_file_and_the_planted_copies(journey):
    report = dinosearch_json(journey, "dups")
    assert report["stats"]["mode"] == "auto"
    assert report["calibration"]["normalisation"] == "pca-whitening"
    assert_report_agrees(report, journey.manifest)
    print("planted recall:", recall(report, journey.manifest))


# --- plan, apply, check, undo --------------------------------------------------------------------


def test_plan_apply_check_undo_restores_every_byte(journey):
    j, plan_path = journey, journey.base / "p.json"
    before = sha256_tree(j.messy)
    dinosearch(j, "dups", "--plan", plan_path)
    plan = json.loads(plan_path.read_text("utf-8"))
    acted = [f["path"] for g in plan["groups"] for f in g["files"] if f["action"] != "keep"]
    assert acted, "the plan trashes nothing: the planted byte copies were not planned"
    dry = dinosearch_json(j, "apply", plan_path, "--dry-run")  # the product's own plan
    assert dry["counts"] == {"would": len(acted)}
    assert plan_violations(plan) == {}, "a file in two groups of the plan"
    assert sha256_tree(j.messy) == before
    applied = True
    try:
        done = dinosearch_json(j, "apply", plan_path, "--yes")
        assert done["counts"] == {"done": len(acted)}
        assert not [p for p in acted if os.path.lexists(p)]
        kept = {g["keep"] for g in plan["groups"]}
        assert all(os.path.exists(p) for p in kept)
        assert_clean(j)
        undone = dinosearch_json(j, "undo", "--last")
        applied = False
        assert undone["counts"] == {"undone": len(acted)}
    finally:
        if applied:  # leave the folder as it was for the tests after this one
            run_cli("undo", "--last", "--index", j.library, check=False, env=j.env)
    assert_clean(j)
    assert sha256_tree(j.messy) == before
    assert not os.listdir(j.base / "xdg" / "Trash" / "files")


def assert_clean(j: Journey) -> None:
    report = dinosearch_json(j, "check")
    assert report["ok"] and report["problems"] == [], report["problems"]


# --- --of and --against --------------------------------------------------------------------------


def test_of_one_image_with_the_default_threshold(journey):
    m = journey.manifest
    copy, of, _ = next(p for p in m.pairs(("byte-copy",)) if p[1].endswith(".jpg"))
    report = dinosearch_json(journey, "dups", "--of", of)
    assert one_group_violations(report) == {}
    assert len(report["groups"]) == 1
    members = {x["path"]: x["match"] for x in report["groups"][0]["members"]}
    assert report["groups"][0]["members"][0]["path"] == of
    assert members.get(copy) == "exact", members


def test_against_a_new_card_with_the_default_threshold(journey):
    card = make_card(journey.base / "card", journey.manifest)
    report = dinosearch_json(journey, "dups", "--against", journey.base / "card")
    assert one_group_violations(report) == {}
    index = group_index(report)
    byte_copy = next(iter(card))  # the first card file is a byte copy of a library original
    assert set(index.get(byte_copy, ())) & set(index.get(card[byte_copy], ())), report["groups"]
    for group in report["groups"]:
        assert group["members"][0]["path"] in card


# --- a read-only library -------------------------------------------------------------------------


def read_only_prefix(probe: Path) -> list[str] | None:
    """A command prefix that runs the CLI with `probe`'s path read-only, or None: for root a
    read-only bind mount in a private mount namespace (chmod does not stop root)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("unshare"):
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    test = [*_mount_ro(script, probe), "sh", "-c", f'! touch "{probe}/x" 2>/dev/null']
    ok = subprocess.run(test, capture_output=True).returncode == 0
    return _mount_ro(script, probe) if ok and not (probe / "x").exists() else None


def _mount_ro(script: str, directory: Path) -> list[str]:
    return ["unshare", "-m", "sh", "-c", script, str(directory)]


def make_read_only(library: Path) -> None:
    """For a non-root user: read-only files and folders."""
    for path in [*library.rglob("*"), library]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_read_only_library_answers_queries_and_refuses_to_index(journey):
    ro = journey.base / "library-ro"
    shutil.copytree(journey.library, ro)
    prefix = read_only_prefix(ro)
    if prefix is None:
        pytest.skip("cannot make a library read-only for root here (no private mount namespace)")
    if not prefix:
        make_read_only(ro)
    before = sha256_tree(ro)

    def ro_cli(*args, expect: int | None = 0) -> subprocess.CompletedProcess:
        cmd = [*prefix, sys.executable, "-m", "search.cli.app", *map(str, args), "--index", str(ro)]
        env = {**os.environ, **journey.env}
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        return checked(proc, args, expect)

    image = journey.manifest.abs(journey.manifest.groups[0].source)
    hits = json.loads(ro_cli("query", image, "-k", "3", "--json").stdout)["results"]
    assert hits and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    report = json.loads(ro_cli("dups", "--json").stdout)
    assert_report_agrees(report, journey.manifest)
    make_card(journey.base / "card-ro", journey.manifest)
    refused = ro_cli("index", journey.base / "card-ro", expect=None)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, refused.stderr
    assert sha256_tree(ro) == before


# --- the generator itself ------------------------------------------------------------------------


def test_messy_library_is_deterministic_and_its_manifest_complete(tmp_path):
    a, b = build(tmp_path / "a", seed=3), build(tmp_path / "b", seed=3)
    tree_a, tree_b = sha256_tree(tmp_path / "a"), sha256_tree(tmp_path / "b")
    tree_a.pop("manifest.json"), tree_b.pop("manifest.json")
    assert tree_a == tree_b and 40 <= len(tree_a) <= 60
    assert sorted(tree_a) == sorted(e.path for e in a.files)
    assert Manifest.load(tmp_path / "a" / "manifest.json").files == a.files
    assert [g.members for g in a.groups] == [g.members for g in b.groups]
    kinds = {e.how for e in a.files}
    assert {"byte-copy", "same-pixels", "reencode", "resize", "grey", "crop", "brightness"} <= kinds
    other = build(tmp_path / "c", seed=4)
    assert [e.source for e in other.files] != [e.source for e in a.files]
