"""The web page end to end in real headless Chromium (Debian's, driven by Playwright).

Install: `apt-get install -y chromium` and `pip install playwright` (no `playwright install`:
the system browser is used). Screenshots go to test-artifacts/.
"""

import shutil
from pathlib import Path

import pytest

from indexer.job import IndexOptions
from search.collection import Collection
from tests.conftest import PHOTOS, ROOT
from tests.live_server import live_server

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
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 60_000

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs Playwright: pip install playwright"
)
if not Path(CHROMIUM).exists():
    pytest.skip("needs Debian's chromium: apt-get install -y chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server over 6 indexed photos, with a root holding 4 more to index from the page."""
    base = tmp_path_factory.mktemp("web")
    photos, root = base / "photos", base / "root" / "more"
    photos.mkdir()
    root.mkdir(parents=True)
    for i, src in enumerate(sorted(PHOTOS.glob("*.png"))[:10]):
        shutil.copy2(src, photos if i < 6 else root)
    shutil.copy2(PHOTOS / "kodim01.png", photos / "copy-of-kodim01.png")
    library = base / "library"
    Collection(library).index([photos], IndexOptions(workers=0))
    with live_server(library, "--root", str(root.parent)) as url:
        yield url, photos


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server[0])
    yield page
    page.close()
    assert errors == [], errors


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_upload_a_photo_shows_results_grid(page, server):
    url, photos = server
    target = photos / "kodim03.png"
    page.set_input_files("#file", str(target))
    page.wait_for_selector("#results .hit", timeout=WAIT_MS)
    hits = page.locator("#results .hit")
    assert hits.count() == 7
    assert hits.first.locator(".name").inner_text() == "kodim03.png"
    assert hits.first.locator(".score").inner_text() == "1.000"
    assert page.locator("#status").inner_text() == "7 results"
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)",
        timeout=WAIT_MS,
    )
    assert page.locator("#stats").inner_text().startswith("7 images")
    screenshot(page, "web-search.png")


def test_keyboard_moves_and_searches_from_a_result(page, server):
    page.set_input_files("#file", str(server[1] / "kodim02.png"))
    page.wait_for_selector("#results .hit", timeout=WAIT_MS)
    page.locator("#results .hit").first.focus()
    page.keyboard.press("ArrowRight")
    second = page.locator("#results .hit").nth(1)
    assert second.evaluate("el => el === document.activeElement")
    second_id = second.get_attribute("data-id")
    second_name = second.locator(".name").inner_text()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**#similar/{second_id}", timeout=WAIT_MS)
    page.wait_for_function(
        f"document.querySelector('#results .hit')?.dataset.id === '{second_id}'", timeout=WAIT_MS
    )
    assert page.locator("#query-label").inner_text().endswith(second_name)
    page.go_back()
    page.wait_for_function("!location.hash", timeout=WAIT_MS)


def test_drop_zone_is_keyboard_reachable(page):
    page.keyboard.press("Tab")
    for _ in range(8):
        if page.evaluate("document.activeElement.id") == "drop":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop"


def test_bad_upload_shows_a_clear_message(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=WAIT_MS)
    assert "not an image" in page.locator("#status").inner_text()


def test_duplicates_view(page):
    page.click("#tab-dups")
    page.fill("#threshold", "0.9")
    page.click("#find")
    page.wait_for_selector(".group", timeout=WAIT_MS)
    names = page.locator(".group").first.locator(".name").all_inner_texts()
    assert sorted(names) == ["copy-of-kodim01.png", "kodim01.png"]
    assert page.locator(".group .tier").first.inner_text().lower() == "exact"
    screenshot(page, "web-duplicates.png")


def test_index_view_runs_a_job_with_progress(page):
    page.click("#tab-index")
    page.wait_for_function("document.querySelector('#roots').options.length > 0")
    page.fill("#folder", "more")
    page.click("#start")
    page.wait_for_function(
        "document.querySelector('#job-text').textContent.startsWith('Done')", timeout=WAIT_MS
    )
    assert "4 indexed" in page.locator("#job-text").inner_text()
    page.wait_for_function(
        "document.querySelector('#stats').textContent.startsWith('11 images')", timeout=WAIT_MS
    )
    screenshot(page, "web-index.png")
