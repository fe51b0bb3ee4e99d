"""The Curate view of the web page (issue 16): outliers, quality flags and clusters, in headless
Chromium against a real server over a real library: Kodak photos and crops of them, each with a
byte copy (more clusters than the page draws at once), a darkened and a blurred copy and a few
graphics made with PIL, indexed with the tiny real-architecture DINOv2. The page must make no
request outside the server and raise no error.
"""

import shutil
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from indexer.job import IndexOptions
from indexer.quality import FLAGS
from search.collection import Collection
from tests.helpers import ARTIFACTS, PHOTOS, require_chromium
from tests.live_server import live_server

WAIT_MS = 60_000
CLUSTERS_PAGE = 30  # CLUSTERS_PAGE in static/curate.js
MEMBERS_SHOWN = 12  # MEMBERS_SHOWN there
COPY = "0.999"  # a copy for the tiny random model (distinct photos reach 0.995)
PHOTO_COUNT, CROP_COUNT = 24, 12
GRAPHICS = ("banner.png", "blocks-red.png", "blocks-blue.png", "gradient.png")


def graphics(folder: Path) -> None:
    """Planted odd ones: a flat grey banner (3:1), two flat block graphics, a grey gradient."""
    folder.mkdir(parents=True)
    Image.new("RGB", (900, 300), (205, 205, 205)).save(folder / "banner.png")
    for name, colour in (("blocks-red.png", (220, 50, 50)), ("blocks-blue.png", (30, 90, 200))):
        img = Image.new("RGB", (600, 400), colour)
        ImageDraw.Draw(img).rectangle((120, 90, 330, 260), (250, 250, 250))
        img.save(folder / name)
    Image.linear_gradient("L").resize((400, 400)).convert("RGB").save(folder / "gradient.png")


def build(base: Path) -> Path:
    photos = base / "photos"
    scenes, crops = photos / "scenes", photos / "crops"
    scenes.mkdir(parents=True)
    crops.mkdir()
    for n in range(1, PHOTO_COUNT + 1):
        shutil.copy2(PHOTOS / f"kodim{n:02d}.png", scenes / f"kodim{n:02d}.png")
    for n in range(1, CROP_COUNT + 1):
        with Image.open(PHOTOS / f"kodim{n:02d}.png") as img:
            img.crop((128, 128, 384, 384)).save(crops / f"crop{n:02d}.png")
    copies = photos / "copies"
    copies.mkdir()
    for original in [*scenes.iterdir(), *crops.iterdir()]:
        shutil.copy2(original, copies / f"{original.stem} copy.png")
    with Image.open(PHOTOS / "kodim03.png") as img:
        rgb = img.convert("RGB")
        ImageEnhance.Brightness(rgb).enhance(0.08).save(scenes / "kodim03-dark.png")
        rgb.filter(ImageFilter.GaussianBlur(8)).save(scenes / "kodim03-blurred.png")
    graphics(photos / "odd")
    library = base / "library"
    Collection(library).index([photos], IndexOptions(workers=0))
    return photos


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(url, photos, empty_url): a real server over the library, and one over no library."""
    require_chromium()
    base = tmp_path_factory.mktemp("curate-page")
    photos = build(base)
    with live_server(base / "library") as url, live_server(base / "none") as empty_url:
        yield url, photos, empty_url


@pytest.fixture
def page(site, browser):
    """A page that records its errors and every request it makes; both checked at the end."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    yield page
    page.close()
    assert errors == [], errors
    servers = (site[0], site[2])
    outside = [u for u in page.requests if not u.startswith(servers) and not u.startswith("data:")]
    assert outside == [], outside


def screenshot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def api(url: str, path: str, **params) -> dict:
    r = httpx.get(f"{url}{path}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def status(page, part: str) -> str:
    return page.locator(f"#{part}-status").inner_text()


def wait_status(page, part: str, words: str) -> None:
    page.wait_for_function(
        "([id, words]) => document.getElementById(id).textContent.includes(words)",
        arg=[f"{part}-status", words],
        timeout=WAIT_MS,
    )


def card_paths(page, grid: str) -> list[str]:
    titles = page.locator(f"{grid} .hit").evaluate_all("bs => bs.map(b => b.title)")
    return [t.split("\n")[0] for t in titles]


# --- outliers -------------------------------------------------------------------------------------


def test_outliers_most_unusual_first_with_score_and_nearest(page, site):
    url, photos, _ = site
    page.goto(f"{url}/#curate")
    page.wait_for_selector("#outliers-grid .hit", timeout=WAIT_MS)
    expected = api(url, "/api/outliers", n=50)["outliers"]
    total = 2 * (PHOTO_COUNT + CROP_COUNT) + 2 + len(GRAPHICS)
    pictures = total - (PHOTO_COUNT + CROP_COUNT)  # a byte copy shares its original's entry
    assert len(expected) == min(50, pictures)
    assert card_paths(page, "#outliers-grid") == [o["path"] for o in expected]
    first = page.locator("#outliers-grid .hit").first
    assert first.locator(".rank").inner_text() == "#1"
    assert first.locator(".score").inner_text() == f"{expected[0]['score']:.3f}"
    nearest = Path(expected[0]["nearest"])
    assert first.locator(".nearest").inner_text() == (
        f"nearest: {nearest.name} · {nearest.parent.relative_to(photos)}/"
    )
    assert page.locator("#tab-curate").get_attribute("aria-current") == "page"
    assert page.locator("#curate-tab-outliers").get_attribute("aria-current") == "true"
    assert status(page, "outliers").startswith(f"{len(expected)} most unusual of {total} images")
    copied = next(o for o in expected if o["copies"])
    card = page.locator(f'#outliers-grid .hit:has(.rank:text-is("#{copied["rank"]}"))')
    word = "copy" if copied["copies"] == 1 else "copies"
    assert card.locator(".copies").inner_text() == f"+{copied['copies']} {word}"
    screenshot(page, "curate-outliers.png")

    page.fill("#outliers-n", "5")
    page.press("#outliers-n", "Enter")
    page.wait_for_function("document.querySelectorAll('#outliers-grid .hit').length === 5")
    assert "n=5" in page.url
    assert card_paths(page, "#outliers-grid") == [o["path"] for o in expected[:5]]


def test_outliers_within_a_folder_and_back_from_similar_without_asking_again(page, site):
    url, photos, _ = site
    odd = photos / "odd"
    page.goto(f"{url}/#curate")
    page.wait_for_selector("#outliers-grid .hit", timeout=WAIT_MS)
    page.fill("#curate-within", str(odd))
    page.press("#curate-within", "Enter")
    wait_status(page, "outliers", f"of {len(GRAPHICS)} images under photos/odd/")
    paths = card_paths(page, "#outliers-grid")
    assert sorted(Path(p).name for p in paths) == sorted(GRAPHICS)
    assert f"within={quote(str(odd), safe='')}" in page.url
    asked = sum("/api/outliers" in u for u in page.requests)
    page.locator("#outliers-grid .hit").first.click()
    page.wait_for_selector("#results .hit", timeout=WAIT_MS)
    page.go_back()
    page.wait_for_selector("#outliers-grid .hit", state="visible", timeout=WAIT_MS)
    assert card_paths(page, "#outliers-grid") == paths
    assert sum("/api/outliers" in u for u in page.requests) == asked


# --- quality flags --------------------------------------------------------------------------------


def test_flag_chips_count_and_filter(page, site):
    url, photos, _ = site
    expected = api(url, "/api/flags")
    counts = expected["stats"]["counts"]
    page.goto(f"{url}/#curate?show=flags")
    page.wait_for_selector("#flags-grid .hit", timeout=WAIT_MS)
    chips = page.locator("#flag-chips .chip")
    names = chips.evaluate_all("cs => cs.map(c => c.dataset.flag)")
    assert names == ["", *FLAGS]  # "all flagged", then dark, overexposed, ... tiny
    for flag, n in counts.items():
        chip = page.locator(f"#flag-chips .chip[data-flag='{flag}']")
        assert chip.locator(".count").inner_text() == str(n)
        assert chip.get_attribute("title") == expected["stats"]["thresholds"][flag]
    assert counts["dark"] == 1 and counts["blurry"] == 1 and counts["low-information"] >= 3
    flagged = [f["path"] for f in expected["flags"]]
    assert card_paths(page, "#flags-grid") == flagged
    images = expected["stats"]["images"]
    assert status(page, "flags") == f"{len(flagged)} flagged of {images} images"
    screenshot(page, "curate-flags.png")

    page.locator("#flag-chips .chip[data-flag='dark']").click()
    page.wait_for_function("document.querySelectorAll('#flags-grid .hit').length === 1")
    assert card_paths(page, "#flags-grid") == [str(photos / "scenes" / "kodim03-dark.png")]
    dark = page.locator("#flag-chips .chip[data-flag='dark']")
    assert dark.get_attribute("aria-pressed") == "true"
    badge = page.locator("#flags-grid .flag").first
    assert badge.inner_text().startswith("dark ") and "brightness" in badge.get_attribute("title")
    assert "flag=dark" in page.url and status(page, "flags").startswith("1 dark of ")
    page.locator("#flag-chips .chip[data-flag='blurry']").click()
    page.wait_for_function(
        "document.querySelector('#flags-grid .hit')?.title.includes('kodim03-blurred.png')"
    )
    assert len(card_paths(page, "#flags-grid")) == 1
    page.locator("#flag-chips .chip[data-flag='blurry']").click()  # again: all flagged
    page.wait_for_function(
        f"document.querySelectorAll('#flags-grid .hit').length === {len(flagged)}"
    )
    assert sum("/api/flags" in u for u in page.requests) == 1  # chips filter what was fetched
    disabled = [f for f, n in counts.items() if n == 0]
    for flag in disabled:
        assert page.locator(f"#flag-chips .chip[data-flag='{flag}']").is_disabled()


# --- clusters -------------------------------------------------------------------------------------


def test_clusters_render_representative_first_copies_together_and_paged(page, site):
    url, photos, _ = site
    page.goto(f"{url}/#curate?show=clusters")
    wait_status(page, "clusters", "clusters")
    expected = api(url, "/api/clusters")["clusters"]
    assert len(expected) > CLUSTERS_PAGE  # every photo and crop has a byte copy
    sections = page.locator("#clusters-list .cluster")
    assert sections.count() == CLUSTERS_PAGE
    drawn = sections.evaluate_all("ss => ss.map(s => Number(s.dataset.cluster))")
    assert drawn == [c["id"] for c in expected[:CLUSTERS_PAGE]]
    copy_pair = {str(photos / "scenes/kodim05.png"), str(photos / "copies/kodim05 copy.png")}
    together = [c for c in expected if copy_pair <= {m["path"] for m in c["members"]}]
    assert len(together) == 1
    cluster = together[0]
    section = page.locator(f"#clusters-list .cluster[data-cluster='{cluster['id']}']")
    if not section.count():
        page.locator("#clusters-more button").click()
    assert card_paths(page, f".cluster[data-cluster='{cluster['id']}']") == [
        m["path"] for m in cluster["members"]
    ]
    assert section.locator("li").first.get_attribute("class") == "representative"
    assert section.locator("li.representative").count() == 1
    assert (
        section.locator("li.representative .hit")
        .get_attribute("title")
        .startswith(cluster["representative"]["path"])
    )
    assert page.locator("#clusters-list img").first.get_attribute("loading") == "lazy"
    assert page.locator("#clusters-alone").is_hidden()  # min size 2: nobody alone is listed
    screenshot(page, "curate-clusters.png", full_page=False)

    more = page.locator("#clusters-more button")
    if sections.count() == CLUSTERS_PAGE:
        left = len(expected) - CLUSTERS_PAGE
        assert more.inner_text() == f"Show {min(left, CLUSTERS_PAGE)} more clusters ({left} left)"
        more.click()
    assert sections.count() == len(expected) and page.locator("#clusters-more").is_hidden()


def test_clusters_threshold_and_min_size_one_list_every_image_once(page, site):
    url, photos, _ = site
    page.goto(f"{url}/#curate?show=clusters")
    wait_status(page, "clusters", "clusters")
    page.fill("#clusters-threshold", COPY)
    page.fill("#clusters-min-size", "1")
    page.press("#clusters-min-size", "Enter")
    wait_status(page, "clusters", "threshold 0.999")
    assert "threshold=0.999" in page.url and "min_size=1" in page.url
    every = api(url, "/api/clusters", threshold=COPY, min_size=1)
    groups = [c for c in every["clusters"] if c["size"] > 1]
    alone = [c["members"][0]["path"] for c in every["clusters"] if c["size"] == 1]
    assert alone and groups
    page.locator("#clusters-more").evaluate("m => m.hidden || m.querySelector('button').click()")
    shown = page.locator("#clusters-list .cluster").evaluate_all(
        "ss => ss.map(s => s.querySelectorAll('.hit').length)"
    )
    assert shown == [min(c["size"], MEMBERS_SHOWN) for c in groups]
    title = page.locator("#clusters-alone-title").inner_text()
    assert title == f"{len(alone)} images in no cluster"
    assert card_paths(page, "#clusters-alone-grid") == alone
    assert sum(c["size"] for c in every["clusters"]) == every["stats"]["images"]
    screenshot(page, "curate-clusters-alone.png")


# --- errors in the status line, never a blank view ------------------------------------------------


def test_errors_are_shown_in_the_status_line(page, site):
    url, photos, empty_url = site
    page.goto(f"{url}/#curate?show=clusters&threshold=abc")
    # (not "threshold": the progress line, "... calibrates the threshold", has it too)
    wait_status(page, "clusters", "'auto' or a number")
    assert page.locator("#clusters-status").get_attribute("class") == "curate-status error"
    assert page.locator("#clusters-list .cluster").count() == 0
    page.goto(f"{url}/#curate?within={quote(str(photos / 'nowhere'))}")
    wait_status(page, "outliers", "no indexed image lies under that folder")
    assert page.locator("#outliers-grid .hit").count() == 0
    screenshot(page, "curate-error.png")
    for part in ("outliers", "flags", "clusters"):
        show = "" if part == "outliers" else f"?show={part}"
        page.goto(f"{empty_url}/#curate{show}")
        wait_status(page, part, "The library is empty: index a folder first.")
        assert page.locator(f"#curate-{part}").is_visible()
