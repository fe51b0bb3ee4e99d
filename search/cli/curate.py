"""Curating a training set: `dinosearch outliers`, `clusters` and `flags` (images that are
dark, overexposed, blurry, low-information, grey, oddly shaped or tiny, from the measures
`index` takes). The keep-list and the leakage check are `dups` options (search/cli/dups.py)."""

import os

import click

from indexer.config import DEFAULT_MIN_CLUSTER, DEFAULT_OUTLIERS
from search.cli.options import (
    check_writable,
    collection,
    emit_json,
    json_option,
    library_options,
    output_option,
    precision_option,
    threshold_option,
    within_option,
)
from search.cli.progress import TerminalProgress

# (value, width, decimals) of the table's columns after the flags
COLUMNS = (
    ("brightness", 6, 2),
    ("clipped", 5, 2),
    ("sharpness", 7, 0),
    ("information", 5, 1),
    ("colourfulness", 6, 3),
)


@click.command()
@click.option(
    "--flag",
    "only",
    metavar="NAMES",
    help="Only images with one of these flags, comma-separated: dark, overexposed, blurry, "
    "low-information, grayscale, odd-aspect-ratio, tiny.",
)
@within_option()
@library_options
@json_option
def flags(only, within, index_dir, as_json):
    """Images with quality flags, from the measures `index` took of each.

    \b
    Examples:
        dinosearch flags
        dinosearch flags --flag dark,blurry --json
    """
    report = collection(index_dir).flags(only, within)
    if as_json:
        return emit_json(report.to_json())
    _print(report)


def _print(report) -> None:
    width = max((len(",".join(item["flags"])) for item in report.flags), default=0)
    if report.flags:
        header = f"{'bright':>6} {'clip':>5} {'sharp':>7} {'info':>5} {'colour':>6}"
        click.echo(f"{'flags':<{width}} {header}  path")
    for item in report.flags:
        cells = " ".join(_cell(item["values"].get(k), w, p) for k, w, p in COLUMNS)
        click.echo(f"{','.join(item['flags']):<{width}} {cells}  {item['path']}")
    counts = ", ".join(f"{name} {n}" for name, n in report.counts.items() if n)
    shown = f"{len(report.flags)} shown; " if len(report.flags) != report.flagged else ""
    total = f"{shown}{report.flagged} of {report.images} images flagged"
    click.echo(total + (f" ({counts})" if counts else ""))
    if report.measured < report.images:
        click.echo(
            f"{report.images - report.measured} images have no quality measures yet (indexed "
            "by an older dinosearch or on Ray): `dinosearch index` on their folders adds them",
            err=True,
        )


def _cell(value: float | None, width: int, decimals: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{decimals}f}"


@click.command()
@click.option("-n", default=DEFAULT_OUTLIERS, type=click.IntRange(1), help="How many to list.")
@within_option()
@library_options
@json_option
def outliers(n, within, index_dir, as_json):
    """The images least like the rest of the library, most unusual first.

    The score is 1 - the cosine to an image's k-th nearest neighbour, with k = 2 % of the
    library (at least 20): a small group of odd images (screenshots, scans) ranks high too.
    One entry per picture: its copies (the `dups` groups once dups has calibrated, else
    byte-identical files) share its rank, listed as "+N copies".

    \b
    Examples:
        dinosearch outliers
        dinosearch outliers -n 100 --within ~/datasets/train --json
    """
    progress = TerminalProgress(enabled=False if as_json else None)
    report = collection(index_dir).curation().outliers(n, within, progress)
    progress.finish()
    if as_json:
        return emit_json(report.to_json())
    click.echo(f"{'rank':>4}  {'score':>6}  path  (nearest)")
    for o in report.outliers:
        near = f"  (nearest {os.path.basename(o.nearest)})" if o.nearest else ""
        copies = f"  +{o.copies} cop{'y' if o.copies == 1 else 'ies'}" if o.copies else ""
        click.echo(f"{o.rank:4d}  {o.score:6.3f}  {o.path}{copies}{near}")
    s = report.stats
    click.echo(
        f"{len(report.outliers)} of {s['images']} images; score: 1 - cosine to the "
        f"{s['k']}th nearest neighbour (median {s.get('median_score', 0):.3f}) "
        f"in {s['seconds']:.1f}s"
    )


@click.command()
@threshold_option("the calibrated 'similar' level")
@precision_option
@click.option(
    "--min-size",
    default=DEFAULT_MIN_CLUSTER,
    type=click.IntRange(1),
    help="List clusters of at least this many images (1: singletons too).",
)
@within_option()
@output_option("--csv", "csv_path", "Write rows to FILE.")
@output_option(
    "--html", "html_path", "Write a self-contained gallery of the clusters (thumbnails embedded)."
)
@library_options
@json_option
def clusters(threshold, precision, min_size, within, csv_path, html_path, index_dir, as_json):
    """Partition the library into clusters of look-alike images; copies never split.

    \b
    Examples:
        dinosearch clusters
        dinosearch clusters --min-size 5 --html clusters.html
        dinosearch clusters --threshold 0.9 --csv clusters.csv --json
    """
    from search.collection import DupOptions  # the facade's own import cost: see collection()

    for path in (csv_path, html_path):
        check_writable(path)
    coll = collection(index_dir)
    if threshold == "auto" and (copies := coll.calibration_due(DupOptions())) and not as_json:
        click.echo(
            f"calibrating the threshold on this library first: {copies} known copies of its own "
            "photos to embed (once; stored for later runs). A fixed --threshold skips this",
            err=True,
        )
    progress = TerminalProgress(enabled=False if as_json else None)
    report = coll.curation().clusters(threshold, precision, within, min_size, progress)
    progress.finish()
    if csv_path:
        report.write_csv(csv_path)
    if html_path:
        coll.curation().write_gallery(report, html_path)
        click.echo(f"gallery of {len(report.clusters)} clusters written to {html_path}", err=True)
    if as_json:
        return emit_json(report.to_json())
    _print_clusters(report.to_json())


CLUSTERS_SHOWN = 50  # clusters listed on the terminal (all with --json / --csv)
MEMBERS_SHOWN = 8


def _print_clusters(data: dict) -> None:
    for c in data["clusters"][:CLUSTERS_SHOWN]:
        click.echo(
            f"cluster {c['id']}  {c['size']} images  representative {c['representative']['path']}"
        )
        for m in c["members"][1:MEMBERS_SHOWN]:
            click.echo(f"  {m['score']:6.3f}  {m['path']}")
        if c["size"] > MEMBERS_SHOWN:
            click.echo(f"  ... and {c['size'] - MEMBERS_SHOWN} more")
    if len(data["clusters"]) > CLUSTERS_SHOWN:
        click.echo(
            f"... and {len(data['clusters']) - CLUSTERS_SHOWN} more clusters (--json, --csv)"
        )
    s = data["stats"]
    click.echo(
        f"{s['clusters']} clusters of {s['min_size']}+ holding {s['in_listed_clusters']} of "
        f"{s['images']} images ({s['singletons']} alone, largest {s['largest']}; threshold "
        f"{s['threshold']:.3f}, {'calibrated' if s['mode'] == 'auto' else 'cosine'}) "
        f"in {s['seconds']:.1f}s"
    )
