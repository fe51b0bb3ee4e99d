import os
import shutil
import tempfile
from pathlib import Path

# The hub client reads these when it is first imported: set them before anything imports it.
_HF_HOME = Path(tempfile.mkdtemp(prefix="dinosearch-hf-"))
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ["HF_HUB_CACHE"] = str(_HF_HOME / "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("DINOSEARCH_INDEX", None)
os.environ.pop("DINOSEARCH_MODEL", None)
os.environ.pop("DINOSEARCH_ONNX_CACHE", None)  # the ONNX exports go under this HF_HOME
os.environ["DINOSEARCH_PROBE"] = "0"  # the default stays int8: tests/test_runtime.py probes

import pytest  # noqa: E402
from send2trash import plat_other  # noqa: E402

from tests.checkpoints import populate_hub_cache  # noqa: E402
from tests.helpers import (  # noqa: E402, F401  (the names tests once imported from here)
    CHROMIUM,
    CHROMIUM_ARGS,
    HEIF,
    IMAGEDEDUP,
    PHOTOS,
    ROOT,
    SHARED,
    copy_photos,
    make_dup_lib,
    require_chromium,
    run_cli,
    stored_rows,
)


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
    copy_photos(folder, 8)
    return folder


@pytest.fixture
def dup_lib(tmp_path) -> tuple[Path, Path]:
    """(folder, library): 5 photos, an exact copy of kodim01 and a lossless re-encode of kodim02,
    indexed (helpers.make_dup_lib)."""
    return make_dup_lib(tmp_path)


@pytest.fixture
def trash(tmp_path, monkeypatch):
    """A private freedesktop trash (send2trash's home trash, redirected)."""
    data = tmp_path / "home" / ".local" / "share"
    data.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(data))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(data / "Trash"))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(data / "Trash"))
    return data / "Trash"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, through Playwright), one per test module; without Chromium
    or Playwright the browser tests skip (the README's `.[dev]` install has no system browser)."""
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (.[dev])")
    sync_playwright = sync_api.sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
