"""schemathesis against the API's own OpenAPI schema, on a real server on loopback.

usage: python bench/api_fuzz.py [--max-examples 20]   (needs `pip install schemathesis`)

Builds a small library of real photos with the tests' tiny real-architecture DINOv2 (no weights
needed), serves it with `python -m search.cli.serve --root <folder>`, runs `st run` with every check
(no 5xx, responses match the schema, ...) and writes bench/results/reliability_api_fuzz.md.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.checkpoints import populate_hub_cache  # noqa: E402
from tests.live_server import live_server  # noqa: E402

RESULT = ROOT / "bench" / "results" / "reliability_api_fuzz.md"


def prepare(work: Path) -> tuple[Path, Path]:
    """A temp HF cache with the tiny checkpoints, and a library of 8 real photos."""
    os.environ.update(
        HF_HOME=str(work / "hf"), HF_HUB_CACHE=str(work / "hf" / "hub"), HF_HUB_OFFLINE="1"
    )
    populate_hub_cache(work / "hf" / "hub")
    photos = work / "photos"
    photos.mkdir()
    for src in sorted((ROOT.parent / "shared" / "testdata" / "photos").glob("*.png"))[:8]:
        shutil.copy(src, photos / src.name)
    library = work / "library"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "search.cli.app",
            "index",
            str(photos),
            "--index",
            str(library),
            "--json",
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return photos, library


def fuzz(url: str, max_examples: int) -> subprocess.CompletedProcess:
    st = Path(sys.executable).with_name("st")
    cmd = [
        str(st),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--workers",
        "1",
        "--exclude-checks",
        "unsupported_method",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-examples", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos, library = prepare(Path(tmp))
        started = time.perf_counter()
        with live_server(library, "--root", str(photos)) as url:
            proc = fuzz(url, args.max_examples)
        seconds = time.perf_counter() - started
    lines = proc.stdout.strip().splitlines()
    tail = "\n".join(line for line in lines if not line.startswith("curl"))[-6000:]
    RESULT.write_text(
        "# schemathesis against the OpenAPI schema\n\n"
        f"Command: `python bench/api_fuzz.py --max-examples {args.max_examples}` "
        f"(schemathesis `st run --checks all`, real server on loopback, tiny model, 8 photos); "
        f"exit status {proc.returncode}, {seconds:.0f} s.\n\n```\n{tail}\n```\n"
    )
    print(tail)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
