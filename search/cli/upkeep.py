"""`dinosearch check` (do files, SQLite and the FAISS file agree? exit 0 yes, 1 no, like fsck)
and `dinosearch export` (the library as Parquet for other engines)."""

import json

import click

from indexer.config import EXPORT_FORMATS
from search.cli.options import collection, json_option, library_options


@click.command()
@click.option("--repair", is_flag=True, help="Rebuild the index from SQLite, drop gone files.")
@click.option("--deep", is_flag=True, help="Also compare each file's SHA-256 (reads every file).")
@library_options
@json_option
def check(repair, deep, index_dir, as_json):
    """Check that files, SQLite and the FAISS index agree; exit 1 if they do not.

    \b
    Examples:
        dinosearch check
        dinosearch check --repair --json
    """
    report = collection(index_dir).check(deep, repair)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print(report)
    raise SystemExit(0 if report.ok else 1)


def _print(report) -> None:
    for p in report.repaired:
        click.echo(f"repaired  {p.kind:<16} {p.path or ''}  {p.detail}")
    for p in report.problems:
        click.echo(f"problem   {p.kind:<16} {p.path or ''}  {p.detail}")
    state = "all agree" if report.ok else f"{len(report.problems)} problems"
    click.echo(
        f"{report.library}: {report.images} images, {report.failed} failed, generation "
        f"{report.generation}, index generation {report.index_generation}: {state}"
    )


@click.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default=EXPORT_FORMATS[0],
    help="Output format.",
)
@click.option("--overwrite", is_flag=True, help="Replace DIR if it exists (atomically).")
@library_options
@json_option
def export(directory, fmt, overwrite, index_dir, as_json):
    """Write paths, metadata and vectors to DIR as Parquet (for Spark, DuckDB, vector DBs).

    \b
    Example:
        dinosearch export --format parquet ~/photos-parquet
        duckdb -c "select path, width from '~/photos-parquet/*.parquet' limit 5"
    """
    try:
        summary = collection(index_dir).export(directory, overwrite=overwrite)
    except ImportError:
        raise click.ClickException(
            "export needs pyarrow: pip install 'dinosearch[ray]' (or pip install pyarrow)"
        ) from None
    if as_json:
        return click.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    click.echo(summary.describe())
