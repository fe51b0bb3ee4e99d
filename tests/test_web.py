"""The web page end to end in real headless Chromium (Debian's, driven by Playwright).

Install: `apt-get install -y chromium` and `pip install playwright` (no `playwright install`:
the system browser is used). Screenshots go to test-artifacts/.
"""

import shutil
from pathlib import Path

import pytest

from indexer.job import IndexOptions
from search.collection import Collection
from tests.helpers import ARTIFACTS, CHROMIUM, PHOTOS
from tests.live_server import live_server

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
    data = base / "home" / ".local" / "share"  # a private trash for the server's send2trash
    data.mkdir(parents=True)
    env = {"HOME": str(base / "home"), "XDG_DATA_HOME": str(data)}
    with live_server(library, "--root", str(root.parent), env=env) as url:
        yield url, photos, data / "Trash"


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
    url, photos, _ = server
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


def find_exact_duplicates(page) -> None:
    page.click("#tab-dups")
    page.fill("#threshold", "0.999")  # exact copies only: independent of the model's quality
    page.click("#find")
    page.wait_for_selector(".group", timeout=WAIT_MS)


def test_duplicates_view_shows_the_plan_and_keeper_choice(page):
    find_exact_duplicates(page)
    group = page.locator(".group").first
    names = group.locator(".name").all_inner_texts()
    assert sorted(names) == ["copy-of-kodim01.png", "kodim01.png"]
    assert group.locator(".tier").inner_text().lower() == "exact"
    assert group.locator("li.kept .name").inner_text() == "kodim01.png"
    assert group.locator(".kept-name").inner_text() == "kodim01.png"
    assert group.locator(".folder").all_inner_texts() == ["./", "./"]  # under the plan's folder
    assert group.locator(".why").inner_text()  # the policy's reason
    assert group.locator("li:not(.kept) .action").inner_text().lower() == "trash"
    assert "1 to trash" in page.locator("#plan-summary").inner_text()
    screenshot(page, "web-duplicates.png")
    group.locator("li:not(.kept) .keep-this").click()
    page.wait_for_function(
        "document.querySelector('.group li.kept .name')?.textContent === 'copy-of-kodim01.png'",
        timeout=WAIT_MS,
    )
    assert "chosen by hand" in page.locator(".group .why").first.inner_text()


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


def test_duplicates_apply_asks_then_trashes_then_undo(page, server):
    """Last: it changes the library (and puts it back)."""
    _, photos, trash = server
    copy = photos / "copy-of-kodim01.png"
    find_exact_duplicates(page)
    page.click("#review")
    page.wait_for_selector("#confirm:not([hidden])", timeout=WAIT_MS)
    assert "trash 1" in page.locator("#confirm-text").inner_text()
    assert str(copy) in page.locator("#confirm-files").inner_text()
    assert copy.exists()  # the review is a dry run
    screenshot(page, "web-duplicates-confirm.png")
    page.click("#cancel-apply")
    assert page.locator("#confirm").is_hidden() and copy.exists()
    page.click("#review")
    page.wait_for_selector("#confirm:not([hidden])", timeout=WAIT_MS)
    page.click("#confirm-apply")
    page.wait_for_function(
        "document.querySelector('#apply-status').textContent.startsWith('Applied')",
        timeout=WAIT_MS,
    )
    assert "1 done" in page.locator("#apply-status").inner_text()
    assert not copy.exists() and [p.name for p in (trash / "files").iterdir()] == [copy.name]
    screenshot(page, "web-duplicates-applied.png")
    page.click("#undo")
    page.wait_for_function(
        "document.querySelector('#apply-status').textContent.startsWith('Undone')",
        timeout=WAIT_MS,
    )
    assert copy.exists()
