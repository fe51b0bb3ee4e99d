"""`dinosearch apply` and `dinosearch undo`: carry out a reviewed plan, and take it back."""

import click

from indexer.errors import BadQuery
from search.cli.options import (
    collection,
    emit_json,
    json_option,
    library_option,
    wait_option,
    waits_for_writer,
)

VERBS = {"trash": "trashed", "move": "moved", "hardlink": "linked", "symlink": "linked"}
VERBS["delete"] = "deleted"


index_option = library_option("the plan's library")


@click.command("apply")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--to", "move_to", type=click.Path(file_okay=False), help="Destination of move.")
@index_option
@wait_option
@json_option
def apply_cmd(plan_path, dry_run, yes, move_to, index_dir, as_json, wait_for_writer):
    """Carry out a plan written by `dups --plan` (resumable; undo with `dinosearch undo`).

    \b
    Example:
        dinosearch dups --plan plan.json && dinosearch apply plan.json --dry-run
    """
    plan = collection().read_plan(plan_path)
    coll = collection(index_dir or plan.library)  # the plan's library unless --index says
    coll.check_plan_library(plan)  # before asking: never through another library
    waits_for_writer(coll, wait_for_writer)
    if not dry_run:
        coll.require_writable("apply")  # before asking
    if not dry_run and not yes:
        _confirm(plan, move_to)
    result = coll.apply(plan, move_to, dry_run, plan_path)
    if as_json:
        emit_json(result.to_json())
    else:
        _print_apply(result)
    if result.counts().get("failed"):
        raise click.ClickException(f"{result.counts()['failed']} actions failed (see above)")


def _confirm(plan, move_to) -> None:
    summary = plan.summary()
    acts = ", ".join(f"{n} {a}" for a, n in summary["actions"].items() if n and a != "keep")
    if not acts:
        click.echo("nothing to do: every file in the plan is kept")
        return
    where = f" to {move_to or plan.move_to}" if summary["actions"]["move"] else ""
    click.echo(
        f"plan {plan.id[:8]}: {acts}{where} in {summary['groups']} groups, "
        f"{summary['bytes_freed'] / 1e6:.1f} MB freed; kept files are not touched"
    )
    try:
        agreed = click.confirm("Apply it?")
    except click.Abort:  # no answer: standard input closed (a script, a pipe)
        raise click.ClickException(
            "no answer to 'Apply it?': run apply in a terminal, or add --yes"
        ) from None
    if not agreed:
        raise click.ClickException("not applied: nothing was changed")


def _print_apply(result) -> None:
    for o in result.outcomes:
        verb = VERBS.get(o.action, o.action)
        if o.state in ("done", "already"):
            again = " (already)" if o.state == "already" else ""
            to = f" -> {o.target}" if o.target else ""
            click.echo(f"{verb}{again} {o.path}{to}")
        elif o.state == "would":
            click.echo(f"would {o.action} {o.path}" + (f" -> {o.target}" if o.target else ""))
        else:
            click.echo(f"{o.state} {o.path}: {o.detail}", err=True)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items()))
    if result.dry_run:
        counts = counts.replace(" would", " would be done")
        click.echo(f"dry run, nothing changed: {counts or 'nothing to do'}")
    else:
        click.echo(counts or "nothing to do")


@click.command("undo")
@click.argument("plan_path", metavar="[PLAN]", required=False, type=click.Path(dir_okay=False))
@click.option("--last", is_flag=True, help="Undo the most recently applied plan.")
@index_option
@wait_option
@json_option
def undo_cmd(plan_path, last, index_dir, as_json, wait_for_writer):
    """Restore what `apply` moved, trashed or linked; says what it cannot restore.

    \b
    Example:
        dinosearch undo --last
    """
    if bool(plan_path) == bool(last):
        raise BadQuery("undo: give a PLAN file or --last")
    plan = collection().read_plan(plan_path) if plan_path else None
    coll = collection(index_dir or (plan.library if plan else None))
    if plan:
        coll.check_plan_library(plan)
    waits_for_writer(coll, wait_for_writer)
    result = coll.undo(plan.id if plan else None)
    if as_json:
        return emit_json(result.to_json())
    _print_undo(result)


def _print_undo(result) -> None:
    for o in result.outcomes:
        if o.state == "undone":
            click.echo(f"restored {o.path}" + (f" ({o.detail})" if o.detail else ""))
        else:
            click.echo(f"not restored {o.path}: {o.detail}", err=True)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items()))
    click.echo(f"plan {result.plan[:8]}: {counts or 'nothing to undo'}")
