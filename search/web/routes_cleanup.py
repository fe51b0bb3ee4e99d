"""The routes of acting on duplicates: the groups, decisions, plans (made, read, edited on the
page), apply and undo. The function names are the API's operation ids."""

import os
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query
from fastapi.responses import JSONResponse

from indexer import errors
from search.collection import DupOptions
from search.web import jobs
from search.web.jobs import AppState, State
from search.web.schemas import (
    ApplyRequest,
    DecisionRequest,
    DupQuery,
    FolderSelectRequest,
    KeeperRequest,
    PlanRequest,
    RunModel,
    UndoRequest,
)

PlanId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="A plan id")]
PLAN_ID = re.compile(r"^[0-9a-f]{32}$")


def duplicates(state: State, query: Annotated[DupQuery, Query()]) -> dict[str, Any]:
    """Duplicate groups in tiers: the `dinosearch dups --json` object."""
    with state.reading() as coll:
        return coll.duplicates(DupOptions(**query.options())).to_json()


def list_decisions(state: State) -> dict[str, Any]:
    """Every "not duplicates" / "keep both" decision, keyed by content hash."""
    with state.reading() as coll:
        return {"decisions": coll.decisions()}


def decide(state: State, body: DecisionRequest) -> dict[str, Any]:
    """Mark two images distinct, or duplicates to keep both, or forget that; later duplicate
    searches and plans leave a decided pair out. Stored by content hash (survives renames)."""
    if body.ids[0] == body.ids[1]:
        raise errors.BadQuery("ids: two different images")
    a, b = (state.row(i)["path"] for i in body.ids)
    with state.reading() as coll:
        if body.action == "unmark":
            removed = coll.undecide(a, b)
            return {"action": "unmark", "ids": body.ids, "removed": removed}
        done = coll.decide(a, b, body.action)
    return {"action": body.action, "ids": body.ids, "decision": done}


def make_plan(state: State, body: PlanRequest) -> dict[str, Any]:
    """Build a plan (the `dups --plan` JSON) for the duplicate groups; nothing is touched.

    The plan is kept under its id for POST /api/plan/{id}/keep and POST /api/apply."""
    policy = _policy(state, body.keep)
    move_to = _destination(state, body.move_to) if body.action == "move" else None
    with state.reading() as coll:
        report = coll.duplicates(DupOptions(**body.options()))
        plan = coll.plan(report, policy, body.action, move_to)
    state.remember(plan)
    return _plan_json(state, plan)


def get_plan(state: State, plan_id: PlanId) -> dict[str, Any]:
    """A plan made earlier (the `dups --plan` JSON, with image ids)."""
    return _plan_json(state, _stored_plan(state, plan_id))


def choose_keeper(state: State, plan_id: PlanId, body: KeeperRequest) -> dict[str, Any]:
    """Keep another file of one group of a stored plan; the old kept file gets the plan's action.
    Returns the updated plan."""
    plan = _stored_plan(state, plan_id)
    group = next((g for g in plan.groups if g.group == body.group), None)
    if group is None:
        raise errors.NotFound(f"plan {plan_id} has no group {body.group}")
    path = state.row(body.id)["path"]
    if not any(f.path == path for f in group.files):
        raise errors.NotFound(f"image {body.id} is not in group {body.group} of the plan")
    state.collection.set_keeper(plan, group, path)  # the plan and the disk only: no lock
    state.remember(plan)
    return _plan_json(state, plan)


def select_folder(state: State, plan_id: PlanId, body: FolderSelectRequest) -> dict[str, Any]:
    """Select by folder in a stored plan: keep every file under the folder, or act on each one
    (each group keeps a file; reference files stay). Returns the plan and `selection`."""
    if not os.path.isabs(body.folder):
        raise errors.BadQuery(f"folder: an absolute path, not {body.folder!r}")
    plan = _stored_plan(state, plan_id)
    chosen = state.collection.select_by_folder(plan, body.folder, body.choice)  # no SQLite
    state.remember(plan)
    return {**_plan_json(state, plan), "selection": chosen.to_json()}


def apply(state: State, body: ApplyRequest) -> JSONResponse:
    """Apply a stored plan (`plan_id`) or a posted one (`plan`). Without `"confirm": true` it is
    a dry run (200, nothing touched); with it, 202 and a run to poll at /api/apply/{id}."""
    if (body.plan_id is None) == (body.plan is None):
        raise errors.BadQuery("give plan_id (a plan from POST /api/plan) or plan, not both")
    if body.plan is not None:
        plan = state.collection.posted_plan(body.plan)  # checked as a plan file is
    elif body.plan_id is not None:
        plan = _stored_plan(state, body.plan_id)
    else:  # excluded above; said again for the type checker
        raise errors.BadQuery("give plan_id or plan")
    _check_plan_files(state, plan)
    if body.plan is not None:
        state.remember(plan)  # an edited plan replaces the stored one of its id
    if not body.confirm:
        # a dry run reads the disk only, no SQLite: it needs no lock
        result = state.collection.apply(plan, dry_run=True)
        summary = plan.summary()
        message = 'dry run: nothing was changed; send "confirm": true to apply'
        return JSONResponse({**result.to_json(), "summary": summary, "message": message})
    run = jobs.start_run(state, "apply", plan)
    return JSONResponse({"run": run.id, "plan": plan.id, "state": run.state}, 202)


def undo(state: State, body: UndoRequest) -> dict[str, Any]:
    """Restore what an applied plan moved, trashed or linked (needs `"confirm": true`)."""
    if not PLAN_ID.match(body.plan_id):
        raise errors.NotFound(f"no plan {body.plan_id!r}")
    if not body.confirm:
        raise errors.BadQuery('undo changes files: send "confirm": true')
    with state.reading() as coll:
        applied = coll.was_applied(body.plan_id)
    if not applied:
        raise errors.NotFound(f"plan {body.plan_id} was never applied to this library")
    run = jobs.start_run(state, "undo", body.plan_id)
    return {"run": run.id, "plan": body.plan_id, "state": run.state}


def run_status(state: State, run_id: str) -> RunModel:
    """An apply or undo run: its state and, when done, the `apply --json` object."""
    run = state.runs.get(run_id)
    if run is None:
        raise errors.NotFound(f"no run {run_id!r}")
    return run.to_model()


# --- helpers ------------------------------------------------------------------------------------


def _policy(state: AppState, text: str | None):
    if text is not None and ">" not in text and os.path.exists(os.path.expanduser(text.strip())):
        raise errors.BadQuery("keep: give the criteria themselves, not a file on the server")
    return state.collection.policy(text or None)  # parsing only: no lock


def _destination(state: AppState, given: str | None) -> str:
    """Where `move` puts files: a folder (existing or not) under a --root."""
    if not state.roots:
        raise errors.Forbidden("moving files from the web is off: start serve with --root DIR")
    if not given:
        raise errors.BadQuery("move_to: the folder (under a --root) to move duplicates to")
    base = Path(given) if os.path.isabs(given) else state.roots[0] / given
    real = Path(os.path.realpath(base))
    if not state.under_roots(real):
        raise errors.Forbidden(f"move_to {given!r} is not under a served --root")
    return str(real)


def _stored_plan(state: AppState, plan_id: str):
    """A plan of this server (in memory) or of the library's plans/ folder."""
    if not PLAN_ID.match(plan_id):
        raise errors.NotFound(f"no plan {plan_id!r}")
    with state.jobs_lock:
        plan = state.plans.get(plan_id)
    if plan is not None:
        return plan
    path = state.collection.plan_file(plan_id)
    if not path.is_file():
        raise errors.NotFound(f"no plan {plan_id!r}: make one with POST /api/plan")
    return state.collection.read_plan(str(path))


def _check_plan_files(state: AppState, plan) -> None:
    """Only indexed files are acted on (or kept), and `move` only into a --root. (The plan was
    checked as it was read, made or posted.)"""
    with state.reading() as coll:
        coll.check_plan_library(plan)  # a plan of another library: 409, before anything runs
        missing = coll.unknown_plan_files(plan)
    if missing:
        raise errors.NotFound(f"not an indexed image of this library: {missing[0]}")
    if any(f.action == "move" for g in plan.groups for f in g.files):
        plan.move_to = _destination(state, plan.move_to)


def _plan_json(state: AppState, plan) -> dict[str, Any]:
    """The plan JSON, plus `image_ids` (path -> id) for thumbnails; a plan posted back with it
    is read as is (the extra key is ignored)."""
    paths = [f.path for _, f in plan.files()]
    with state.reading() as coll:
        ids = coll.image_ids(paths)
    return {**plan.to_json(), "image_ids": ids}
