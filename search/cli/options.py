"""Options every command shares, defined once (imported by cli.py and the command modules)."""

import click

from indexer.config import ENV_INDEX


def library_option(default: str = "per-user data dir"):
    """`--index DIR` (env DINOSEARCH_INDEX); `default` says where it falls back to."""
    return click.option(
        "--index",
        "index_dir",
        envvar=ENV_INDEX,
        type=click.Path(file_okay=False),
        help=f"Library directory [env {ENV_INDEX}; default: {default}].",
    )


library_options = library_option()


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)
