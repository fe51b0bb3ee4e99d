"""What the tests share that is not a fixture (the fixtures are in conftest.py): where the shared
test data lies, ways to run the CLI, the small duplicate library the plan/apply/report tests
start from, and a few builders of test input. bench/ scripts import from here too.
"""

import functools
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from indexer.job import IndexOptions
from indexer.library.store import Store
from search.cleanup.plan import build_plan
from search.cli.app import cli
from search.collection import Collection
from search.dups.decisions import respect_decisions
from search.dups.run import DupOptions, find_duplicates

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "testdata"
PHOTOS = SHARED / "photos"
IMAGEDEDUP = SHARED / "imagededup"
HEIF = SHARED / "heif"
ARTIFACTS = ROOT / "test-artifacts"

# Debian's headless Chromium, driven by Playwright (no `playwright install`).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sys.path.insert(0, str(ROOT / "scripts"))
import make_hostile_corpus as hostile_corpus  # noqa: E402

# --- running the CLI ----------------------------------------------------------------------------


def invoke(*args, expect: int | None = 0, input=None, command=None):
    """Run a click command in-process (`dinosearch` itself unless `command` is given) with the
    arguments as strings; its exit code must be `expect` (None: any)."""
    if command is None:
        command = cli
    result = CliRunner().invoke(command, [str(a) for a in args], input=input)
    assert expect is None or result.exit_code == expect, (args, result.output, result.exception)
    return result


def run_cli(*args, check=True, env=None, **kwargs) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli.app", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dinosearch {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def index_command(library: Path, *folders: Path) -> list[str]:
    """`dinosearch index FOLDERS --json` as a subprocess command line, committing every two images
    with one decode worker: the run the kill and concurrency tests interrupt or race."""
    return [
        sys.executable,
        "-m",
        "search.cli.app",
        "index",
        *map(str, folders),
        "--index",
        str(library),
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--json",
    ]


def wait_until_done(client, url: str, timeout_s: float, poll_s: float) -> dict:
    """GET `url` until its JSON `state` is no longer "running"; that JSON."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["state"] != "running":
            return body
        time.sleep(poll_s)
    raise AssertionError(f"{url} still running after {timeout_s}s")


# --- libraries ----------------------------------------------------------------------------------


def copy_photos(folder: Path, count: int, copy: Callable = shutil.copy2) -> list[Path]:
    """The first `count` shared photos copied into `folder` (made if need be); the sources."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = sorted(PHOTOS.glob("*.png"))[:count]
    for src in originals:
        copy(src, folder / src.name)
    return originals


def stored_rows(library: Path) -> list[dict]:
    """Every row of a library with its vector (bytes, or None), ordered by path."""
    store = Store.open(library)
    try:
        return sorted(store.all_images(), key=lambda r: r["path"])
    finally:
        store.close()


def library_paths(library: Path) -> set[str]:
    """The paths the library holds a row for."""
    return {r[0] for r in Store.open(library).db.execute("select path from images")}


def require_chromium() -> None:
    """Skip a page test where Debian's chromium is not installed (Playwright drives it)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium: apt-get install -y chromium")


def index(folder: Path, library: Path) -> None:
    invoke("index", folder, "--index", library, "--workers", "0")


def index_in_process(library: Path, *folders: Path) -> Path:
    """Index `folders` into `library` through the facade (no decode workers); the library."""
    coll = Collection(library)
    coll.index(list(folders), IndexOptions(workers=0))
    coll.close()
    return library


@contextmanager
def api_client(library: Path, base_url: str = "http://127.0.0.1:8000"):
    """A TestClient of the web app over `library` (a loopback Host, as the guard wants)."""
    from fastapi.testclient import TestClient  # the web stack only for the tests that use it

    from search.web.app import create_app

    with TestClient(create_app(Collection(library)), base_url=base_url) as client:
        yield client


def make_dup_lib(tmp_path: Path) -> tuple[Path, Path]:
    """Five real photos, an exact copy of one (named as a copy) and a lossless re-encode of
    another (named as an export); indexed. Returns (folder, library)."""
    folder = tmp_path / "photos"
    originals = copy_photos(folder, 5)
    shutil.copy(originals[0], folder / "kodim01 copy.png")
    with Image.open(originals[1]) as img:
        img.save(folder / "kodim02-export.webp", lossless=True)
    library = tmp_path / "library"
    index(folder, library)
    return folder, library


def make_plan(library: Path, policy=None, action="trash", move_to=None):
    """The plan of the library's exact and pixel-identical copies (threshold 0.999)."""
    coll = Collection(library)
    report = find_duplicates(coll, DupOptions(threshold=0.999))
    report = respect_decisions(coll.store(), report)
    return build_plan(report, coll.store(), policy, action, move_to)


SLOW_SIDE_PX = 12_000  # a 144 MP PNG of zeros: 140 KB on disk, ~1 s and ~750 MB to decode
SLOW_DECODE_S = 1.0  # its decode time here (a Kodak PNG: ~0.03 s)
SLOW_LIMIT = "0.2"  # a --decode-timeout that cuts it with margin on both sides


def slow_folder(tmp_path: Path, photos: int = 3) -> Path:
    """A PNG that takes SLOW_DECODE_S to decode (named to come first), then `photos` photos."""
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "000_slow.png").write_bytes(hostile_corpus.zero_png(SLOW_SIDE_PX, SLOW_SIDE_PX))
    copy_photos(folder, photos)
    return folder


# --- test input ---------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG that claims width x height pixels, followed by a few bytes of
    pixel data."""
    chunk = hostile_corpus.png_chunk
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def model_input(pixels, recipe):
    """Decoded uint8 NHWC pixels as the normalised NCHW float tensor a ViT takes."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(recipe.mean).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor(recipe.std).view(1, 3, 1, 1)


@functools.cache
def distractor_generator():
    """bench/make_distractors.py as a module: the generator of the 5,200 distinct procedural
    pictures (bench/dups_distractors.py), deterministic, so a test can redraw any of them."""
    import importlib.util

    bench = ROOT / "bench"
    if str(bench) not in sys.path:
        sys.path.append(str(bench))  # it imports bench/harness.py as `harness`, as a script
    spec = importlib.util.spec_from_file_location("make_distractors", bench / "make_distractors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def distractor(index: int, folder: Path, stream: int = 0) -> str:
    """File `index` of the 5,200 distractors (`make_distractors.py --seed 0`), drawn into
    `folder`: the same bytes as the benchmark's (`stream`: how many times the generator drew it
    again, for being too close to another)."""
    make = distractor_generator()
    job = dict(make.plan(5200, 0)[index], stream=stream)
    path = folder / make.file_name(job)
    path.write_bytes(make.make(job, 0)[0])
    return str(path)
