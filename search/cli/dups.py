"""`dinosearch dups` and `calibrate`: find duplicate groups, write a plan, fit the threshold."""

import os
import shlex

import click

from indexer.config import DEFAULT_ACTION, PLAN_ACTIONS
from indexer.errors import BadQuery
from search.cli.options import (
    check_writable,
    collection,
    emit_json,
    files_pair_option,
    folders_option,
    json_option,
    library_options,
    output_option,
    precision_option,
    ray_option,
    threshold_option,
    within_option,
)
from search.cli.progress import TerminalProgress


@click.command()
@threshold_option("calibrated on this library")
@precision_option
@within_option()
@click.option(
    "--against",
    multiple=True,
    type=click.Path(exists=True),
    help="Which images under PATH already have a duplicate in the library.",
)
@click.option(
    "--of", "of", type=click.Path(exists=True, dir_okay=False), help="Duplicates of one image."
)
@folders_option(
    "--reference",
    "reference",
    "A folder whose files are never acted on (a master archive): a copy elsewhere is "
    "the one offered for removal; groups only of reference files are not reported.",
)
@click.option("--include-similar", is_flag=True, help="Also report 'similar' groups (bursts).")
@click.option("--similar-threshold", type=float, help="Score for the 'similar' tier.")
@click.option(
    "--burst-window",
    metavar="DURATION",
    help="Bursts: 'similar' only for shots taken within DURATION (10s, 2m) of each other by "
    "their EXIF capture time; shown as one stack with its best shot (implies --include-similar).",
)
@click.option(
    "--rotations",
    is_flag=True,
    help="Also find copies turned 90/180/270 degrees or mirrored in their pixels (3 more views "
    "of each image embedded on the first run, kept beside the library for later runs).",
)
@output_option("--csv", "csv_path", "Write rows to FILE.")
@output_option(
    "--plan", "plan_path", "Write an editable plan for `dinosearch apply` (JSON; a .csv name: CSV)."
)
@click.option(
    "--keep",
    "keep_policy",
    metavar="POLICY",
    help="Keep-best policy, e.g. 'resolution > largest-file > oldest', or a policy file.",
)
@click.option(
    "--action",
    type=click.Choice(PLAN_ACTIONS[1:]),  # "keep" is what a plan does with the kept file
    default=DEFAULT_ACTION,
    help="What the plan does with each duplicate.",
)
@click.option("--move-to", type=click.Path(file_okay=False), help="Destination of --action move.")
@output_option(
    "--html", "html_path", "Write a self-contained review page (thumbnails, kept file and why)."
)
@output_option(
    "--keep-list",
    "keep_list_path",
    "Write the images to train on, one path per line: every non-duplicate and the kept "
    "file of each group (--keep decides).",
)
@click.option(
    "--drop-flags",
    metavar="FLAGS",
    help="With --keep-list: leave out images with these flags (`dinosearch flags`): dark,blurry.",
)
@click.option(
    "--drop-outliers",
    type=click.IntRange(0),
    default=0,
    metavar="N",
    help="With --keep-list: leave out the N top outliers (dinosearch outliers).",
)
@files_pair_option(
    "--mark-distinct",
    "Record that A and B are not duplicates (by content: survives renames), then exit.",
)
@files_pair_option("--keep-both", "Record that A and B are duplicates to keep both of, then exit.")
@library_options
@ray_option
@json_option
def dups(
    threshold,
    precision,
    within,
    against,
    of,
    reference,
    include_similar,
    similar_threshold,
    burst_window,
    rotations,
    csv_path,
    plan_path,
    keep_policy,
    action,
    move_to,
    html_path,
    keep_list_path,
    drop_flags,
    drop_outliers,
    mark_distinct,
    keep_both,
    index_dir,
    ray_address,
    as_json,
):
    """Find duplicate groups: exact, pixels, copy (and similar with --include-similar).

    \b
    Examples:
        dinosearch dups
        dinosearch dups --against ~/new-sd-card --json
        dinosearch dups --threshold 0.95 --csv dups.csv
        dinosearch dups --plan plan.json --html review.html --keep 'resolution > oldest'
        dinosearch dups --reference ~/Archive --plan plan.json
        dinosearch dups --rotations
        dinosearch dups --within data/train --against data/test    # leakage between splits
        dinosearch dups --keep-list keep.txt --drop-flags dark,blurry --drop-outliers 20
    """
    from search.collection import DupOptions  # the facade's own import cost: see collection()

    coll = collection(index_dir)
    if mark_distinct or keep_both:
        return _mark_decisions(coll, mark_distinct, keep_both, as_json)
    for path in (csv_path, plan_path, html_path, keep_list_path):
        check_writable(path)  # before the run, not after minutes of work
    drops = _keep_list_options(keep_list_path, drop_flags, drop_outliers, against or of)
    if drops:
        coll.curation().require_flags(drops[0])
    policy = coll.policy(keep_policy) if plan_path or html_path or keep_list_path else None

    options = DupOptions(
        threshold=threshold,
        precision=precision,
        within=within,
        against=tuple(against),
        of=of,
        include_similar=include_similar,
        similar_threshold=similar_threshold,
        ray=ray_address,
        reference=tuple(reference),
        burst_window=burst_window,
        rotations=rotations,
    )
    progress = TerminalProgress(enabled=False if as_json else None)
    if (copies := coll.calibration_due(options)) and not as_json:
        click.echo(
            f"calibrating the threshold on this library first: {copies} known copies of its own "
            "photos to embed (once; stored for later runs). A fixed --threshold, e.g. 0.95, "
            "skips this",
            err=True,
        )
    report = coll.duplicates(options, progress)
    progress.finish()
    if csv_path:
        report.write_csv(csv_path)
    if plan_path or html_path:
        _write_plan(coll, report, policy, action, move_to, plan_path, html_path)
    kept = _write_keep_list(coll, report, policy, within, keep_list_path, drops)
    if as_json:
        return emit_json({**report.to_json(), **({"keep_list": kept} if kept else {})})
    _print_dups(report)


def _keep_list_options(path, drop_flags, drop_outliers, against) -> tuple | None:
    """(flags, outliers) to leave out of a keep-list; refused without --keep-list."""
    if path is None:
        if drop_flags or drop_outliers:
            raise BadQuery("--drop-flags and --drop-outliers shape a --keep-list: add one")
        return None
    if against:
        raise BadQuery("--keep-list lists the library's images to keep: not with --against/--of")
    names = tuple(n.strip() for n in (drop_flags or "").split(",") if n.strip())
    if drop_flags is not None and not names:
        raise BadQuery("--drop-flags: name flags separated by commas, e.g. dark,blurry")
    return names, drop_outliers


def _write_keep_list(coll, report, policy, within, path, drops) -> dict | None:
    if path is None:
        return None
    kept = coll.curation().keep_list(report, policy, within, *drops)
    kept.write(path)
    summary = {"path": os.path.abspath(path), **kept.summary()}
    why = ", ".join(f"{n} {k}" for k, n in summary["why"].items())
    click.echo(
        f"keep-list: {summary['kept']} images written to {path} "
        f"({summary['dropped']} left out{': ' + why if why else ''})",
        err=True,
    )
    return summary


def _mark_decisions(coll, distinct, keep_both, as_json) -> None:
    pairs = [(distinct, "distinct"), (keep_both, "keep-both")]
    done = [coll.decide(a, b, kind) for (a, b), kind in ((p, k) for p, k in pairs if p)]
    if as_json:
        return emit_json({"decisions": done})
    for d in done:
        click.echo(f"recorded {d['kind']}: {d['a']}  {d['b']} (later dups runs respect it)")


def _write_plan(coll, report, policy, action, move_to, plan_path, html_path) -> None:
    plan = coll.plan(report, policy, action, move_to)
    if plan_path and plan_path.lower().endswith(".csv"):
        plan.write_csv(plan_path)
    elif plan_path:
        plan.write(plan_path)
    if html_path:
        coll.write_review_page(plan, html_path)
    summary = plan.summary()
    counts = ", ".join(f"{n} {a}" for a, n in summary["actions"].items() if n)
    written = " and ".join(p for p in (plan_path, html_path) if p)
    click.echo(f"plan {plan.id[:8]} ({counts or 'no groups'}) written to {written}", err=True)
    _warn_emptied(summary["emptied_folders"])


EMPTIED_SHOWN = 10  # emptied folders named after a plan (all of them are in its JSON summary)


def _warn_emptied(emptied: list[dict]) -> None:
    """Name the folders the plan takes every picture out of, and how to keep one."""
    if not emptied:
        return
    many = len(emptied) != 1
    click.echo(
        f"the plan removes every picture of {len(emptied)} folder{'s' if many else ''}:", err=True
    )
    for e in emptied[:EMPTIED_SHOWN]:
        click.echo(f"  {e['folder']} ({e['files']} file{'' if e['files'] == 1 else 's'})", err=True)
    if len(emptied) > EMPTIED_SHOWN:
        click.echo(f"  ... and {len(emptied) - EMPTIED_SHOWN} more (the plan's summary)", err=True)
    example = emptied[0]["folder"]
    click.echo(
        f"if {'one' if many else 'it'} holds originals, keep its files: "
        f"dups --plan ... --reference {shlex.quote(example)}",
        err=True,
    )


NEW_SHOWN = 20  # new files listed after a --against run (all of them with --json)


def _how(member: dict) -> str:
    """How a member matched, in a few words: `copy 0.99`, `copy (crop)`, `exact`."""
    turn = f" {member['transform']}" if member.get("transform") else ""  # --rotations
    if member["verified"]:
        return f"{member['match']} ({member['verified']}){turn}"
    if member["confidence"] is not None and member["match"] in ("copy", "similar"):
        return f"{member['match']} {member['confidence']:.2f}{turn}"
    return member["match"] + turn


def _print_dups(report) -> None:
    data = report.to_json()
    for number, group in enumerate(data["groups"], 1):
        best = f" stack, best shot {os.path.basename(group['best'])}" if group.get("best") else ""
        click.echo(f"group {number} [{group['tier']}]{best}")
        first = group["members"][0]["path"]
        for m in group["members"]:
            size = f"{m['width']}x{m['height']}" if m["width"] else ""
            twin = m["twin_of"] or m["via"]
            of = f"  (of {os.path.basename(twin)})" if twin and twin != first else ""
            of += "  (reference)" if m.get("reference") else ""
            click.echo(f"  {m['score']:6.3f}  {_how(m):<15}  {size:>11}  {m['path']}{of}")
    stats = data["stats"]
    how = "calibrated" if stats["mode"] == "auto" else "cosine"
    groups = f"{stats['groups']} group{'' if stats['groups'] == 1 else 's'}"
    click.echo(
        f"{groups}, {stats['duplicates']} duplicates among "
        f"{stats['images']} images (threshold {data['threshold']:.3f}, {how}) "
        f"in {stats['seconds']:.1f}s"
    )
    if "checked" in stats:  # --against / --of: say what is new, not only what is known
        for skipped in data.get("skipped", []):
            click.echo(f"skipped {skipped['path']}: {skipped['error']}", err=True)
        new = data["new"]
        click.echo(
            f"{stats['checked']} checked: {stats['checked'] - len(new)} already in the library, "
            f"{len(new)} new" + (":" if new else "")
        )
        for path in new[:NEW_SHOWN]:
            click.echo(f"  new  {path}")
        if len(new) > NEW_SHOWN:
            click.echo(f"  ... and {len(new) - NEW_SHOWN} more (--json lists them all)")


@click.command()
@click.option(
    "--sample",
    type=click.IntRange(2),
    help="Library images to make known copies of (8 copies each, all judged by their pixels, "
    "about 2 a source embedded) [default: one per 40 indexed images, 8 to 30].",
)
@precision_option
@click.option(
    "--seed",
    default=0,
    type=click.IntRange(0),
    help="Which images are sampled and how they are copied (another seed: another sample).",
)
@library_options
@json_option
def calibrate(sample, precision, seed, index_dir, as_json):
    """Calibrate the duplicate threshold on this library's own photos.

    \b
    Example:
        dinosearch calibrate --sample 200
    """
    progress = TerminalProgress(enabled=False if as_json else None)
    result = collection(index_dir).calibrate(precision, sample, progress, seed)
    progress.finish()
    data = result.to_json()
    if as_json:
        return emit_json(data)
    click.echo(
        f"model {data['model']}, {data['images']} images, {data['sample']} sampled, "
        f"{data['positives']} known copies vs {data['negatives']} nearest distinct images"
    )
    click.echo(f"scores: {data['normalisation']}")
    click.echo(f"{'threshold':>9}  {'precision':>9}  {'recall':>6}")
    for row in data["table"]:
        click.echo(f"{row['threshold']:9.4f}  {row['precision']:9.4f}  {row['recall']:6.4f}")
    click.echo(
        f"chosen threshold {data['threshold']:.4f}: precision {data['precision']:.4f}, "
        f"recall {data['recall']:.4f} (target precision {precision})"
    )
    click.echo(
        "recall per transform: "
        + ", ".join(f"{k} {v:.2f}" for k, v in data["per_transform_recall"].items())
    )
