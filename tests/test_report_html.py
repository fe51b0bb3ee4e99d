"""`dups --html`: a self-contained review page, loaded in a real headless Chromium.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` Python package (no
`playwright install`: the system browser is used).
"""

import json
import os
from pathlib import Path

from search.cleanup.report_html import write_html
from tests.helpers import ARTIFACTS, invoke, make_plan


def test_the_page_is_one_self_contained_file(dup_lib, tmp_path):
    _, library = dup_lib
    page = tmp_path / "report.html"
    write_html(make_plan(library), str(page))
    text = page.read_text()
    assert text.count('class="group"') == 2 and "data:image/jpeg;base64," in text
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "original-over-edit: original beats edit/copy" in text


def test_the_report_renders_in_chromium(dup_lib, tmp_path, browser):
    folder, library = dup_lib
    plan = make_plan(library)
    target = tmp_path / "report.html"
    write_html(plan, str(target))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(target.as_uri())
    groups = page.locator("section.group")
    assert groups.count() == 2
    assert {groups.nth(i).get_attribute("data-tier") for i in range(2)} == {"exact", "pixels"}
    kept = page.locator(f'figure.kept[data-path="{folder / "kodim01.png"}"]')
    assert kept.is_visible()
    reason = kept.locator(".reason")
    assert reason.is_visible() and "original-over-edit" in reason.inner_text()
    assert "runner-up kodim01 copy.png" in reason.inner_text()
    assert page.locator("figure.remove .badge").first.inner_text().lower() == "trash"
    assert "vs kept:" in page.locator("figure.remove .deltas").first.inner_text()
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) == 4 and all(w > 0 for w in widths)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dups-report.png"), full_page=True)
    page.close()


def test_dups_plan_and_html_through_the_cli(dup_lib, tmp_path):
    """`dups --plan --keep --action --html`: the lead's options on the dups command."""
    folder, library = dup_lib
    plan_path, html = tmp_path / "plan.json", tmp_path / "report.html"
    invoke(
        "dups",
        "--index",
        library,
        "--threshold",
        "0.999",
        "--keep",
        "largest-file > resolution",
        "--action",
        "move",
        "--plan",
        plan_path,
        "--html",
        html,
    )
    plan = json.loads(Path(plan_path).read_text())
    assert plan["policy"] == "largest-file > resolution" and plan["action"] == "move"
    assert len(plan["groups"]) == 2 and html.stat().st_size > 1000
    exact = next(g for g in plan["groups"] if g["tier"] == "exact")
    assert exact["reason"]["criterion"] == "original-over-edit"  # the policy ties: the name
    assert exact["reason"]["text"].startswith("byte-identical copies (same SHA-256): every")
    assert os.path.basename(exact["keep"]) == "kodim01.png"
    invoke("apply", plan_path, "--yes", "--to", tmp_path / "aside")
    assert len(os.listdir(tmp_path / "aside")) == 2
