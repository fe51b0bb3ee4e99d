import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The hub client reads these when it is first imported: set them before anything imports it.
_HF_HOME = Path(tempfile.mkdtemp(prefix="dinosearch-hf-"))
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ["HF_HUB_CACHE"] = str(_HF_HOME / "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("DINOSEARCH_INDEX", None)
os.environ.pop("DINOSEARCH_MODEL", None)

import pytest  # noqa: E402

from tests.checkpoints import populate_hub_cache  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "testdata"
PHOTOS = SHARED / "photos"
IMAGEDEDUP = SHARED / "imagededup"
HEIF = SHARED / "heif"


def pytest_configure(config):
    populate_hub_cache(_HF_HOME / "hub")


def pytest_unconfigure(config):
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_cache() -> Path:
    return _HF_HOME / "hub"


@pytest.fixture
def library(tmp_path) -> Path:
    return tmp_path / "library"


@pytest.fixture
def photos(tmp_path) -> Path:
    """A private copy of a few real photos (tests rename and delete files in it)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted(PHOTOS.glob("*.png"))[:8]:
        shutil.copy2(src, folder / src.name)
    return folder


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


def stored_rows(library: Path) -> list[dict]:
    """Every row of a library with its vector (bytes, or None), ordered by path."""
    from indexer.library.store import Store

    store = Store.open(library)
    try:
        return sorted(store.all_images(), key=lambda r: r["path"])
    finally:
        store.close()
