"""`dinosearch apply` and `dinosearch undo`: carry out a reviewed plan, and take it back."""

import json

import click

from search.cli.options import json_option, library_option

VERBS = {"trash": "trashed", "move": "moved", "hardlink": "linked", "symlink": "linked"}
VERBS["delete"] = "deleted"


index_option = library_option("the plan's library")


def _collection(index_dir: str | None, plan_library: str | None = None):
    from indexer.config import default_library_dir
    from search.collection import Collection

    return Collection(index_dir or plan_library or default_library_dir())


@click.command("apply")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--to", "move_to", type=click.Path(file_okay=False), help="Destination of move.")
@index_option
@json_option
def apply_cmd(plan_path, dry_run, yes, move_to, index_dir, as_json):
    """Carry out a plan written by `dups --plan` (resumable; undo with `dinosearch undo`).

    \b
    Example:
        dinosearch dups --plan plan.json && dinosearch apply plan.json --dry-run
    """
    from search.cleanup.apply import apply_plan
    from search.cleanup.plan import read_plan

    plan = read_plan(plan_path)
    coll = _collection(index_dir, plan.library)
    store = coll.store()
    if not dry_run:
        store.require_writable("apply")
    if not dry_run and not yes:
        _confirm(plan, move_to)
    result = apply_plan(store, plan, move_to, dry_run, plan_path)
    if not dry_run:
        coll.vector_index()  # the FAISS file follows the rows now, as after `index`
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
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
@json_option
def undo_cmd(plan_path, last, index_dir, as_json):
    """Restore what `apply` moved, trashed or linked; says what it cannot restore.

    \b
    Example:
        dinosearch undo --last
    """
    from indexer.errors import BadQuery
    from search.cleanup.apply import last_plan_id, undo_plan

    if bool(plan_path) == bool(last):
        raise BadQuery("undo: give a PLAN file or --last")
    plan_id, library = _undo_target(plan_path)
    coll = _collection(index_dir, library)
    store = coll.store()
    store.require_writable("undo")
    plan_id = plan_id or last_plan_id(store)
    if not plan_id:
        raise BadQuery(f"no applied plan in {store.directory} to undo")
    result = undo_plan(store, plan_id)
    coll.vector_index()  # the FAISS file follows the rows now, as after `index`
    if as_json:
        return click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    _print_undo(result)


def _undo_target(plan_path: str | None) -> tuple[str | None, str | None]:
    if not plan_path:
        return None, None
    from search.cleanup.plan import read_plan

    plan = read_plan(plan_path)
    return plan.id, plan.library


def _print_undo(result) -> None:
    for o in result.outcomes:
        if o.state == "undone":
            click.echo(f"restored {o.path}" + (f" ({o.detail})" if o.detail else ""))
        else:
            click.echo(f"not restored {o.path}: {o.detail}", err=True)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items()))
    click.echo(f"plan {result.plan[:8]}: {counts or 'nothing to undo'}")
