"""What a new user met (issue 26): the README's privacy promise against ONNX Runtime's
telemetry, plans bound to their library, `apply` on a file that is not a plan, and one list of
image formats for the CLI and the page."""

import json
import os
import subprocess
import sys

from tests.helpers import ROOT, copy_photos

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
