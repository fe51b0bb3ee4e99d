"""`clusters --html`: one self-contained page of the clusters with thumbnails (embedded as JPEG
data URIs: no scripts, no network), largest first, like the duplicate review page."""

import os
from html import escape

from indexer.atomic import atomic_open
from indexer.config import DEFAULT_MAX_PIXELS
from indexer.decode import thumbnail_data_uri
from indexer.errors import BadQuery

THUMB_PX = 160  # thumbnails fit this square
MAX_CLUSTERS = 200  # the largest clusters shown (a page of 1M images' clusters would not open)
MAX_MEMBERS = 24  # thumbnails per cluster; the rest are counted

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;background:#f6f6f4;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} .meta{color:#555;margin-bottom:1.5em}
.cluster{background:#fff;border:1px solid #ddd;border-radius:8px;margin:0 0 1.2em;padding:.8em}
.cluster h2{font-size:1.05em;margin:0 0 .6em}
.files{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}
.file{margin:0;width:168px;border:2px solid #ddd;border-radius:6px;padding:.3em;background:#fafafa}
.file.rep{border-color:#2e8b57;background:#f1fbf4} .file img{max-width:160px;max-height:160px;
display:block;margin:0 auto .3em} .path{word-break:break-all;font-size:.75em}
.score{font-size:.8em;color:#444} .more{align-self:center;color:#666}
.noimg{height:100px;display:flex;align-items:center;justify-content:center;color:#999}
"""


def write_gallery(report, path: str) -> None:
    """Write the clusters page for a ClusterReport to `path`."""
    try:
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(render(report.to_json()))
    except OSError as exc:
        raise BadQuery(f"cannot write {path}: {exc.strerror or exc}") from None


def render(data: dict) -> str:
    stats, clusters = data["stats"], data["clusters"]
    shown = clusters[:MAX_CLUSTERS]
    more = (
        f" · the {len(shown)} largest shown (--json or --csv lists all {len(clusters)})"
        if len(clusters) > len(shown)
        else ""
    )
    body = "\n".join(_cluster(c) for c in shown) or "<p>No clusters of this size.</p>"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>dinosearch clusters: {len(clusters)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Clusters: {len(clusters)}</h1>"
        f'<div class="meta">{stats["images"]} images · {stats["in_listed_clusters"]} in clusters '
        f"of {stats['min_size']} or more · {stats['singletons']} alone · threshold "
        f"{stats['threshold']:.3f} ({escape(str(stats.get('mode', '')))}){escape(more)}</div>"
        f"{body}</body></html>\n"
    )


def _cluster(c: dict) -> str:
    members = c["members"][:MAX_MEMBERS]
    cards = "".join(_card(m, n == 0) for n, m in enumerate(members))
    rest = len(c["members"]) - len(members)
    if rest:
        cards += f'<div class="more">and {rest} more</div>'
    rep = escape(os.path.basename(c["representative"]["path"]))
    return (
        f'<section class="cluster" data-cluster="{c["id"]}" data-size="{c["size"]}">'
        f"<h2>Cluster {c['id']} · {c['size']} images · representative {rep}</h2>"
        f'<div class="files">{cards}</div></section>'
    )


def _card(m: dict, representative: bool) -> str:
    cls = "file rep" if representative else "file"
    score = "representative" if representative else f"cosine {m['score']:.3f}"
    return (
        f'<figure class="{cls}" data-path="{escape(m["path"])}">{_thumb(m["path"])}'
        f'<div class="score">{score}</div><div class="path">{escape(m["path"])}</div></figure>'
    )


def _thumb(path: str) -> str:
    if (uri := thumbnail_data_uri(path, THUMB_PX, DEFAULT_MAX_PIXELS)) is None:
        return '<div class="noimg">no preview</div>'
    return f'<img src="{uri}" alt="{escape(os.path.basename(path))}">'
