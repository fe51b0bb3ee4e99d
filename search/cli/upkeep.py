"""`dinosearch check`: do files, SQLite and the FAISS file agree? (exit 0 yes, 1 no, like fsck)"""

import json

import click

from indexer.errors import DinosearchError
from search.cli.options import json_option, library_options


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
    from indexer.config import default_library_dir
    from search.upkeep.check import check_library, repair_library

    directory = index_dir or default_library_dir()
    try:
        report = repair_library(directory, deep) if repair else check_library(directory, deep)
    except DinosearchError as exc:
        raise click.ClickException(str(exc)) from None
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
