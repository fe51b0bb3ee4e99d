"""The `dinosearch` command: one click group, our errors translated into one line each.

Each command lives with its family (library, dups, cleanup, upkeep, serve), parses its options,
calls one method of the facade (search/collection.py) and renders the result.
"""

import click

from indexer.errors import DinosearchError
from search.cli.cleanup import apply_cmd, undo_cmd
from search.cli.curate import clusters, flags, outliers
from search.cli.dups import calibrate, dups
from search.cli.library import index, info, query
from search.cli.serve import serve
from search.cli.upkeep import check, export


class Group(click.Group):
    """Turns our errors into one readable line and an exit status; never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # one line, as every other error, with where to look
            hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            ctx.exit(exc.exit_code)
        except DinosearchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: everything committed so far is kept; re-run to continue", err=True
            )
            ctx.exit(130)


# every option with a default shows it in --help (flags and unset options show none)
@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.version_option(package_name="dinosearch")
def cli():
    """dinosearch: find similar and duplicate images with DINOv2, locally."""


for command in (index, query, info, dups, apply_cmd, undo_cmd, calibrate, export, serve, check):
    cli.add_command(command)
for command in (outliers, clusters, flags):  # curating a training set (cli/curate.py)
    cli.add_command(command)


def main() -> None:
    cli(prog_name="dinosearch")


if __name__ == "__main__":
    main()  # click exits with the command's status
