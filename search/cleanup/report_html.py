"""`dups --html`: one self-contained review page (thumbnails embedded) of a plan's groups."""

import datetime as dt
import os
from html import escape

from indexer.atomic import atomic_open
from indexer.config import DEFAULT_MAX_PIXELS
from indexer.decode import thumbnail_data_uri
from search.cleanup.plan import Plan, PlanFile, PlanGroup

THUMB_PX = 256  # thumbnails fit this square; embedded as JPEG data URIs

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;background:#f6f6f4;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} .meta{color:#555;margin-bottom:1.5em}
.group{background:#fff;border:1px solid #ddd;border-radius:8px;margin:0 0 1.2em;padding:.8em}
.group h2{font-size:1.05em;margin:0 0 .6em} .tier{padding:.1em .5em;border-radius:4px;
background:#e8e8e8;font-size:.85em} .tier-exact{background:#d7ecff}.tier-pixels{background:#e3f5dd}
.tier-copy{background:#fff1c9}.tier-similar{background:#f7dede}
.files{display:flex;gap:.8em;overflow-x:auto;align-items:flex-start}
.file{margin:0;flex:0 0 260px;border:2px solid #ddd;border-radius:6px;padding:.4em;
background:#fafafa}
.file.kept{border-color:#2e8b57;background:#f1fbf4} .file img{max-width:256px;max-height:256px;
display:block;margin:0 auto .4em} .badge{font-weight:600;text-transform:uppercase;font-size:.8em}
.kept .badge{color:#2e8b57} .remove .badge{color:#b03030}
.path{word-break:break-all;font-size:.85em}
.reason{margin:.3em 0;color:#1d5e38} .deltas,.facts{font-size:.85em;color:#444}
.note{font-size:.85em;color:#7a5b00} .noimg{height:120px;display:flex;align-items:center;
justify-content:center;color:#999}
"""


def write_html(plan: Plan, path: str, thumb_px: int = THUMB_PX) -> None:
    """Write the review page for `plan` to `path`."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(render_html(plan, thumb_px))


def render_html(plan: Plan, thumb_px: int = THUMB_PX) -> str:
    summary = plan.summary()
    acts = ", ".join(f"{n} {a}" for a, n in summary["actions"].items() if n)
    groups = "\n".join(_group(g, thumb_px) for g in plan.groups)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>dinosearch duplicates: {summary['groups']} groups</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Duplicates: {summary['groups']} groups</h1>"
        f'<div class="meta">policy <code>{escape(plan.policy)}</code> · {escape(acts)} · '
        f"{summary['bytes_freed'] / 1e6:.1f} MB to free · plan {escape(plan.id[:8])} · "
        f"{escape(plan.created)}</div>{_emptied(summary['emptied_folders'])}"
        f"{groups or '<p>No duplicates found.</p>'}</body></html>\n"
    )


def _emptied(emptied: list[dict]) -> str:
    """The folders the plan takes every picture out of, and how to keep one."""
    if not emptied:
        return ""
    items = "".join(
        f"<li><code>{escape(e['folder'])}</code> ({e['files']} files)</li>" for e in emptied
    )
    return (
        '<div class="emptied">This plan removes every picture of these folders; if one holds '
        "your originals, plan again with <code>--reference FOLDER</code> to keep its files:"
        f"<ul>{items}</ul></div>"
    )


def _group(g: PlanGroup, thumb_px: int) -> str:
    kept_name = escape(os.path.basename(g.keep))
    cards = "".join(_card(g, f, thumb_px) for f in g.files)
    return (
        f'<section class="group" data-group="{g.group}" data-tier="{escape(g.tier)}">'
        f'<h2>Group {g.group} <span class="tier tier-{escape(g.tier)}">{escape(g.tier)}</span> '
        f"· {len(g.files)} files · keep {kept_name}</h2>"
        f'<div class="files">{cards}</div></section>'
    )


def _card(g: PlanGroup, f: PlanFile, thumb_px: int) -> str:
    kept = f.path == g.keep
    cls = "kept" if kept else ("keep" if f.action == "keep" else "remove")
    badge = "kept" if kept else f.action
    reason = f'<div class="reason">{escape(g.reason.get("text") or "")}</div>' if kept else ""
    note = f'<div class="note">{escape(f.note)}</div>' if f.note else ""
    return (
        f'<figure class="file {cls}" data-path="{escape(f.path)}">{_thumb(f.path, thumb_px)}'
        f'<div class="badge">{escape(badge)}</div>{reason}'
        f'<div class="path">{escape(f.path)}</div>{_facts(f)}{_deltas(f)}{note}'
        f"{_companions(f)}</figure>"
    )


def _thumb(path: str, size: int) -> str:
    if (uri := thumbnail_data_uri(path, size, DEFAULT_MAX_PIXELS)) is None:
        return '<div class="noimg">no preview</div>'
    return f'<img src="{uri}" alt="{escape(os.path.basename(path))}">'


def _facts(f: PlanFile) -> str:
    parts = [f"{f.width}×{f.height}" if f.width else "", _size(f.size)]
    when = _date(f)
    parts.append(when)
    if f.match != "first":
        conf = "" if f.confidence is None else f", confidence {f.confidence:.2f}"
        parts.append(f"{f.match}: score {f.score:.3f}{conf}")
    return f'<div class="facts">{escape(" · ".join(p for p in parts if p))}</div>'


def _deltas(f: PlanFile) -> str:
    d = f.deltas
    if not d:
        return ""
    parts = []
    if d.get("pixels_pct") is not None:
        parts.append(f"{d['pixels_pct']:+.0f}% pixels")
    parts.append(f"{'+' if d['bytes'] >= 0 else '-'}{_size(abs(d['bytes']))}")
    if d.get("days") is not None:
        parts.append(_age(d["days"]))
    if d.get("exif_fields"):
        parts.append(f"{d['exif_fields']:+d} EXIF fields")
    return f'<div class="deltas">vs kept: {escape(", ".join(parts))}</div>'


def _companions(f: PlanFile) -> str:
    if not f.companions:
        return ""
    items = [
        f"{os.path.basename(c['path'])} ({c['role']}{', follows' if c['follows'] else ''})"
        for c in f.companions
    ]
    return f'<div class="note">capture: {escape(", ".join(items))}</div>'


def _age(days: float) -> str:
    """A date difference: newer (+) or older (-) than the kept file."""
    if abs(days) < 1:
        return f"{days * 24:+.1f} h"
    return f"{days:+.1f} days"


def _size(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _date(f: PlanFile) -> str:
    if f.taken:
        return f"taken {f.taken[:16].replace('T', ' ')}"
    if f.mtime_ns:
        return f"modified {dt.datetime.fromtimestamp(f.mtime_ns / 1e9):%Y-%m-%d %H:%M}"
    return ""
