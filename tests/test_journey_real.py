"""The user's journey with the real DINOv2-S/14 weights and default options: index a messy folder,
the first `dups` (it calibrates), its plan applied and undone, and what it found against the
planted truth. Times are recorded in test-artifacts/journey_real.json (CI prints them); they are
measured properly, side by side, by bench/first_dups.py, not asserted here.

Needs DINOSEARCH_REAL_WEIGHTS=<dir> built by ../shared/tools/real_dinov2_small.sh (CI builds it).
"""

import json
import os
import time

import pytest

from tests.helpers import ROOT, run_cli
from tests.messy_library import build, plan_violations, quality, report_problems, sha256_tree

WEIGHTS = os.environ.get("DINOSEARCH_REAL_WEIGHTS")
pytestmark = [
    pytest.mark.quality,
    pytest.mark.slow,
    pytest.mark.skipif(not WEIGHTS, reason="set DINOSEARCH_REAL_WEIGHTS to the real weights dir"),
]

PHOTOS = 40  # about 116 images: over the 100 from which the default threshold is whitened


def timed(*args, env) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = run_cli(*args, "--json", check=False, env=env)
    seconds = time.perf_counter() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    return seconds, json.loads(proc.stdout)


def test_the_journey_with_real_weights_finds_the_planted_copies(tmp_path):
    manifest = build(tmp_path / "messy", photos=PHOTOS)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "DINOSEARCH_MODEL": WEIGHTS}
    library = tmp_path / "library"
    index_s, summary = timed("index", tmp_path / "messy", "--index", library, env=env)
    assert summary["indexed"] == len(manifest.images())
    dups_s, report = timed("dups", "--index", library, env=env)
    found = quality(report, manifest)
    record = {"images": summary["indexed"], "index_s": round(index_s, 1)}
    record |= {"first_dups_s": round(dups_s, 1), "ratio": round(dups_s / index_s, 2), **found}
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "journey_real.json").write_text(json.dumps(record, indent=1) + "\n")

    assert report["calibration"]["normalisation"] == "pca-whitening"
    assert report_problems(report, manifest) == []  # one group each, byte/pixel copies, graphics
    assert found["pair_precision"] >= 0.98, found
    near = {k: v for k, v in found["recall"].items() if k in ("reencode", "resize")}
    hard = {k: v for k, v in found["recall"].items() if k in ("grey", "crop", "brightness")}
    assert min(near.values()) >= 0.95, found  # measured: 1.0
    assert min(hard.values()) >= 0.8, found  # measured: grey 0.91, crop and brightness 1.0

    before = sha256_tree(tmp_path / "messy")
    plan = tmp_path / "plan.json"
    proc = run_cli("dups", "--index", library, "--plan", plan, env=env)
    assert plan_violations(json.loads(plan.read_text("utf-8"))) == {}
    _, dry = timed("apply", plan, "--index", library, "--dry-run", env=env)
    assert set(dry["counts"]) == {"would"}, dry["counts"]
    _, done = timed("apply", plan, "--index", library, "--yes", env=env)
    assert set(done["counts"]) == {"done"}, done["counts"]
    assert timed("check", "--index", library, env=env)[1]["ok"]
    _, undone = timed("undo", "--last", "--index", library, env=env)
    assert set(undone["counts"]) == {"undone"}, undone["counts"]
    assert timed("check", "--index", library, env=env)[1]["ok"]
    assert sha256_tree(tmp_path / "messy") == before
    assert proc.returncode == 0
