"""Plans edited on the web page: a whole plan posted back, another file of a group kept by hand,
and the plans kept under the library's plans/ folder (where `dinosearch undo` finds them)."""

import os
import re
from pathlib import Path

from indexer.library.journal import Journal
from indexer.library.snapshot import read_only_reason
from indexer.library.store import Store
from indexer.paths import under_any
from search.cleanup import captures
from search.cleanup.plan import (
    LINKS,
    Plan,
    PlanError,
    PlanForAnotherLibrary,
    PlanGroup,
    attach_companions,
    check_plan,
    common_root,
    deltas,
    facts_for,
    from_json,
)

PLANS_DIR = "plans"  # under the library directory
PLAN_ID = re.compile(r"^[0-9a-f]{32}$")
FACT_FIELDS = ("path", "width", "height", "size", "mtime_ns", "taken")  # what a keeper is ranked by


def plan_file(library: str | Path, plan_id: str) -> Path:
    """Where plan `plan_id` of this library is kept."""
    return Path(library) / PLANS_DIR / f"{plan_id}.json"


def save_plan(library: str | Path, plan: Plan) -> None:
    """Write the plan under the library's plans/; a read-only library is left as it is (the
    plan can't be applied to it anyway)."""
    if read_only_reason(Path(library)):
        return
    path = plan_file(library, plan.id)
    path.parent.mkdir(exist_ok=True)
    plan.write(str(path))


def posted_plan(data: dict, library: str | Path) -> Plan:
    """A whole plan from the client: checked like a plan file, for this library only; its
    sidecars are worked out again here (a posted list of companions is not trusted)."""
    try:
        plan = from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"plan is malformed ({exc!r}); make one with POST /api/plan") from None
    if not isinstance(plan.id, str) or not PLAN_ID.match(plan.id):
        raise PlanError("plan id: 32 hex digits, as POST /api/plan makes them")
    here = os.path.realpath(library)
    if not isinstance(plan.library, str) or os.path.realpath(plan.library) != here:
        raise PlanError("the plan is for another library")
    check_plan(plan)
    _redo_companions(plan)
    return plan


def unknown_files(store: Store, plan: Plan) -> list[str]:
    """The plan's files the library does not hold as indexed images (those the plan moved or
    trashed already count as its own)."""
    paths = {f.path for _, f in plan.files()}
    known = {p for p in paths if (row := store.image_by_path(p)) and row["status"] == "ok"}
    known |= Journal(store).done_paths(plan.id) & paths
    return sorted(paths - known)


def check_library(store: Store, plan: Plan) -> None:
    """Refuse a plan made for another library (apply, its dry run, undo of a plan file). A plan
    names its library's id; an old plan without one is taken only when it names this library's
    folder and every file of it is this library's (or was moved or trashed by that plan)."""
    here, ours = str(store.directory), store.library_id(create=False)  # checking writes nothing
    if plan.library_id is not None:
        if plan.library_id == ours:
            return
        raise PlanForAnotherLibrary(
            f"plan {plan.id[:8]} was made for the library {plan.library} (id {plan.library_id}),"
            f" not {here} (id {ours or 'none yet'}): give --index {plan.library}, or make a plan "
            f"for this library with `dinosearch dups --index {here} --plan PLAN`"
        )
    same_folder = isinstance(plan.library, str) and (
        os.path.realpath(plan.library) == os.path.realpath(here)
    )
    stray = [] if not same_folder else unknown_files(store, plan)
    if same_folder and not stray:
        return
    why = f"it names {plan.library}" if not same_folder else f"{stray[0]} is not in it"
    raise PlanForAnotherLibrary(
        f"plan {plan.id[:8]} has no library id (made by an older dinosearch) and {why}, not "
        f"only the library {here} (id {ours or 'none yet'}): make it again with "
        f"`dinosearch dups --index {here} --plan PLAN`"
    )


def set_keeper(plan: Plan, group: PlanGroup, path: str) -> None:
    """Make `path` the kept file of `group`; actions, deltas and sidecars follow."""
    old = group.keep
    facts = {f.path: facts_for({k: getattr(f, k) for k in FACT_FIELDS}) for f in group.files}
    key = captures.capture_key(path)
    kept = next(f for f in group.files if f.path == path)
    for f in group.files:
        f.note, f.deltas = None, None if f.path == path else deltas(facts[f.path], facts[path])
        if f.path == path:
            f.action = "keep"
        elif under_any(f.path, plan.reference):
            f.action, f.note = "keep", "in a reference folder: never acted on"
        elif captures.capture_key(f.path) == key:
            f.action, f.note = "keep", "same capture as the kept file (another rendition)"
        elif plan.action in LINKS and f.hash != kept.hash:
            f.action = "keep"
            f.note = f"not byte-identical to the kept file: {plan.action} would lose it"
        else:
            f.action = plan.action
    group.keep = path
    group.files.sort(key=lambda f: f.path != path)
    group.reason = {
        "criterion": "chosen",
        "kept": os.path.basename(path),
        "runner_up": os.path.basename(old),
        "runner_up_path": old,
        "text": f"chosen by hand (the policy kept {os.path.basename(old)})",
    }
    if old == path:
        group.reason["text"] = "chosen by hand (also the policy's choice)"
    _redo_companions(plan)
    plan.root = common_root([f.path for _, f in plan.files() if f.action != "keep"])


def _redo_companions(plan: Plan) -> None:
    """Work each file's sidecars out again (which follow a removed file depends on them all)."""
    for _, f in plan.files():
        f.companions = []
    attach_companions(plan.groups)
