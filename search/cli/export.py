"""`dinosearch export`: the library as Parquet for other engines (schema in search/export.py)."""

import json

import click

from indexer.errors import DinosearchError
from search.cli.options import json_option, library_options


@click.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet"]),
    default="parquet",
    show_default=True,
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
    from indexer.config import default_library_dir
    from indexer.library.store import Store
    from search.upkeep.export import describe, export_parquet

    try:
        store = Store.open(index_dir or default_library_dir())
        summary = export_parquet(store, directory, overwrite=overwrite)
    except ImportError:
        raise click.ClickException(
            "export needs pyarrow: pip install 'dinosearch[ray]' (or pip install pyarrow)"
        ) from None
    except DinosearchError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        return click.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    click.echo(describe(summary))
