"""Carry out a plan, and undo it, through a journal kept in the library.

Each action is written to the `journal` table as *pending* (with the library row it affects)
before the file is touched, and marked *done* together with the library update after, in one
transaction. So a kill at any moment leaves a journal from which `apply` resumes (a pending row
is checked against the disk: done already, or done now) and `undo` restores. Kept files are
never touched; a file whose size, mtime or hash differs from the plan is skipped and reported.
"""

import json
import os
import shutil
from dataclasses import dataclass, field

from send2trash import send2trash

from indexer.files import sha256_file
from indexer.library.journal import Journal
from indexer.library.store import Store
from indexer.paths import is_under
from search.cleanup.plan import Plan, PlanError, PlanFile, PlanGroup
from search.cleanup.trash import (
    drop_orphan_infos,
    find_in_trash,
    forget_trashed,
    move_file,
    restore_from_trash,
)

TMP_SUFFIX = ".dinosearch-tmp"  # a link or copy is built here, then renamed over the file


@dataclass
class Step:
    """One file to act on: a duplicate, or a sidecar following one."""

    group: PlanGroup | None  # None: rebuilt from a journal row
    file: PlanFile
    action: str
    target: str | None  # kept file (links) or destination (move)
    follows: str | None = None  # the duplicate this sidecar follows
    check_hash: bool = True

    @property
    def to(self) -> str:
        """The target of a move, hardlink or symlink: always set for those actions."""
        if self.target is None:
            raise PlanError(f"{self.action} {self.file.path}: the plan gives no target")
        return self.target

    @property
    def plan_group(self) -> PlanGroup:
        """The group of a step made from a plan (not one rebuilt from a journal row)."""
        if self.group is None:
            raise PlanError(f"{self.file.path}: not in a group of the plan")
        return self.group


@dataclass
class Outcome:
    path: str
    action: str
    state: str  # done, already, skipped, failed, would (dry run); undo: undone, kept
    detail: str | None = None
    target: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Result:
    plan: str
    dry_run: bool = False
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.state] = out.get(o.state, 0) + 1
        return out

    def to_json(self) -> dict:
        files = [o.to_json() for o in self.outcomes]
        return {"plan": self.plan, "dry_run": self.dry_run, "counts": self.counts(), "files": files}


# --- steps ---------------------------------------------------------------------------------------


def steps_for(plan: Plan, move_to: str | None = None) -> list[Step]:
    """Every action of the plan in order, sidecars right after the file they follow."""
    dest = move_to or plan.move_to
    out = []
    for g, f in plan.files():
        if f.action == "keep":
            continue
        if f.action == "move" and not dest:
            raise PlanError("the plan moves files: give a destination (apply --to DIR)")
        target = _move_target(plan, f.path, dest) if f.action == "move" and dest else g.keep
        out.append(Step(g, f, f.action, target))
        out += [_follower(g, f, c, target) for c in f.companions if c["follows"]]
    return out


def _move_target(plan: Plan, path: str, dest: str) -> str:
    root = plan.root or os.path.dirname(path)
    # outside the plan's root (an edited plan): keep the full path
    rel = os.path.relpath(path, root) if is_under(path, root) else path.lstrip(os.sep)
    return os.path.join(os.path.abspath(dest), rel)


def _follower(g: PlanGroup, f: PlanFile, companion: dict, target: str | None) -> Step:
    moved = None
    if f.action == "move" and target:
        moved = os.path.join(os.path.dirname(target), os.path.basename(companion["path"]))
    sidecar = PlanFile(companion["path"], f.action, None, companion["size"], companion["mtime_ns"])
    return Step(g, sidecar, f.action, moved, f.path, False)


# --- checks --------------------------------------------------------------------------------------


def changed(path: str, size: int | None, mtime_ns: int | None, digest: str | None) -> str | None:
    """Why the file is not as the plan saw it, or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return "missing"
    if size is not None and st.st_size != size:
        return f"changed since the plan (size {size} -> {st.st_size})"
    if mtime_ns is not None and st.st_mtime_ns != mtime_ns:
        return "modified since the plan (mtime differs)"
    if digest:
        if sha256_file(path) != digest:
            return "content changed since the plan (hash differs)"
    return None


def _kept_problem(step: Step, cache: dict) -> str | None:
    """A reason not to remove anything in favour of the group's kept file."""
    group = step.plan_group
    keep = next(f for f in group.files if f.path == group.keep)
    if keep.path not in cache:
        cache[keep.path] = changed(keep.path, keep.size, None, keep.hash)
    why = cache[keep.path]
    return f"kept file {keep.path} is {why}" if why else None


def precheck(step: Step, cache: dict) -> str | None:
    """Why this step must be skipped now, or None."""
    if step.follows is None and (why := _kept_problem(step, cache)):
        return why
    digest = step.file.hash if step.check_hash else None
    if why := changed(step.file.path, step.file.size, step.file.mtime_ns, digest):
        return why
    if step.action in ("hardlink", "symlink") and step.file.hash != _kept_hash(step):
        return f"not byte-identical to the kept file: {step.action} would lose it"
    if step.action == "move" and os.path.lexists(step.to):
        return f"destination exists: {step.target}"
    return None


def _kept_hash(step: Step) -> str | None:
    group = step.plan_group
    return next(f.hash for f in group.files if f.path == group.keep)


# --- the journal ---------------------------------------------------------------------------------


def _journal(store: Store, plan_id: str, step: Step, state: str, detail: str | None = None):
    Journal(store).write_pending(
        {
            "plan_id": plan_id,
            "grp": step.plan_group.group,
            "path": step.file.path,
            "action": step.action,
            "target": step.target,
            "hash": step.file.hash,
            "size": step.file.size,
            "mtime_ns": step.file.mtime_ns,
            "state": state,
            "detail": detail if step.follows is None else (detail or f"follows {step.follows}"),
        }
    )


# --- apply ---------------------------------------------------------------------------------------


def apply_plan(
    store: Store,
    plan: Plan,
    move_to: str | None = None,
    dry_run: bool = False,
    plan_path: str | None = None,
) -> Result:
    """Carry out the plan (or, with dry_run, say what would happen); idempotent and resumable."""
    steps = steps_for(plan, move_to)
    result = Result(plan.id, dry_run)
    if not dry_run:
        Journal(store).record_plan(plan.id, plan_path, plan.created)
    cache: dict = {}
    failed_parents: set[str] = set()
    for step in steps:
        if step.follows in failed_parents:
            result.outcomes.append(
                Outcome(step.file.path, step.action, "skipped", "its image stayed")
            )
            continue
        outcome = _dry(step, cache) if dry_run else _apply_step(store, plan.id, step, cache)
        if outcome.state not in ("done", "already", "would"):
            failed_parents.add(step.file.path)
        result.outcomes.append(outcome)
    return result


def _dry(step: Step, cache: dict) -> Outcome:
    why = precheck(step, cache)
    if why:
        return Outcome(step.file.path, step.action, "skipped", why)
    return Outcome(
        step.file.path,
        step.action,
        "would",
        step.follows and f"follows {step.follows}",
        step.target,
    )


def _apply_step(store: Store, plan_id: str, step: Step, cache: dict) -> Outcome:
    row = Journal(store).row(plan_id, step.file.path)
    if row and row["state"] == "done":
        return Outcome(step.file.path, step.action, "already", target=row["target"])
    if row and row["state"] == "pending":
        if (resumed := _resume(store, plan_id, step, row)) is not None:
            return resumed
    elif why := precheck(step, cache):
        _journal(store, plan_id, step, "skipped", why)
        return Outcome(step.file.path, step.action, "skipped", why)
    else:
        _journal(store, plan_id, step, "pending")
    return _perform(store, plan_id, step)


def _resume(store: Store, plan_id: str, step: Step, row: dict) -> Outcome | None:
    """A pending row from a killed run: finish its bookkeeping if the action happened, else
    return None to (re)do it; a file changed meanwhile is skipped."""
    step.target = row["target"] or step.target
    if _happened(step):
        return _finish(store, plan_id, step)
    _cleanup_partial(step)
    digest = step.file.hash if step.check_hash else None
    if why := changed(step.file.path, step.file.size, step.file.mtime_ns, digest):
        Journal(store).set_state(plan_id, step.file.path, "skipped", detail=why)
        return Outcome(step.file.path, step.action, "skipped", why)
    return None


def _happened(step: Step) -> bool:
    path = step.file.path
    if step.action == "move":
        return not os.path.lexists(path) and os.path.lexists(step.to)
    if step.action in ("trash", "delete"):
        return not os.path.lexists(path)
    if step.action == "symlink":
        return os.path.islink(path) and os.readlink(path) == step.target
    if step.action == "hardlink":
        return os.path.exists(path) and os.path.samefile(path, step.to)
    return False


def _cleanup_partial(step: Step) -> None:
    """Remove what a killed run left half-made: a temp link, or a partial cross-device copy."""
    tmp = step.file.path + TMP_SUFFIX
    if os.path.lexists(tmp):
        os.unlink(tmp)
    if step.action == "trash":
        drop_orphan_infos(step.file.path)  # send2trash killed between its info and the move
    if step.action == "move" and os.path.lexists(step.to) and os.path.lexists(step.file.path):
        os.unlink(step.to)  # pending: the destination was free when journalled, so it is ours


def _perform(store: Store, plan_id: str, step: Step) -> Outcome:
    try:
        ACT[step.action](step)
    except OSError as exc:
        detail = f"{exc.strerror or exc}"
        Journal(store).set_state(plan_id, step.file.path, "failed", detail=detail)
        return Outcome(step.file.path, step.action, "failed", detail)
    return _finish(store, plan_id, step)


def _finish(store: Store, plan_id: str, step: Step) -> Outcome:
    """Mark the step done and update the library, in one transaction."""
    path = step.file.path
    if step.action == "trash":
        step.target = find_in_trash(path)
    with store.transaction():
        Journal(store).set_state(plan_id, path, "done", target=step.target)
        _update_library(store, step)
    return Outcome(
        path, step.action, "done", step.follows and f"follows {step.follows}", step.target
    )


def _update_library(store: Store, step: Step) -> None:
    path = step.file.path
    if store.image_by_path(path) is None:
        return
    if step.action in ("trash", "delete"):
        store.remove_image(path)
    elif step.action == "move":
        st = os.stat(step.to)
        store.move_image(path, step.to, st.st_size, st.st_mtime_ns)
    else:
        st = os.stat(path)
        store.touch_image(path, st.st_size, st.st_mtime_ns)


# --- the actions themselves ----------------------------------------------------------------------


def _trash(step: Step) -> None:
    send2trash(step.file.path)


def _move(step: Step) -> None:
    os.makedirs(os.path.dirname(step.to), exist_ok=True)
    move_file(step.file.path, step.to)


def _hardlink(step: Step) -> None:
    tmp = step.file.path + TMP_SUFFIX
    os.link(step.to, tmp)
    os.replace(tmp, step.file.path)


def _symlink(step: Step) -> None:
    tmp = step.file.path + TMP_SUFFIX
    os.symlink(step.to, tmp)
    os.replace(tmp, step.file.path)


def _delete(step: Step) -> None:
    os.unlink(step.file.path)


ACT = {
    "trash": _trash,
    "move": _move,
    "hardlink": _hardlink,
    "symlink": _symlink,
    "delete": _delete,
}


# --- undo ----------------------------------------------------------------------------------------


def undo_plan(store: Store, plan_id: str) -> Result:
    """Put back what the plan's journal says was done (latest first); say what cannot be."""
    journal = Journal(store)
    rows = journal.undoable(plan_id)
    result = Result(plan_id)
    for row in rows:
        result.outcomes.append(_undo_row(store, plan_id, row))
    journal.mark_undone(plan_id)
    return result


def _undo_row(store: Store, plan_id: str, row: dict) -> Outcome:
    path, action = row["path"], row["action"]
    if row["state"] == "pending" and not _row_happened(row):
        if action == "trash":
            drop_orphan_infos(path)
        Journal(store).set_state(plan_id, path, "undone", detail="never happened (killed before)")
        return Outcome(path, action, "undone", "had not happened")
    if _put_back(row):  # a killed undo restored the file, then stopped before recording it
        detail = None
    else:
        try:
            detail = UNDO[action](row)
        except OSError as exc:
            detail = f"cannot restore: {exc.strerror or exc}"
    if detail:
        return Outcome(path, action, "kept", detail, row["target"])
    with store.transaction():
        Journal(store).set_state(plan_id, path, "undone")
        _restore_library(store, row)
    return Outcome(path, action, "undone", target=row["target"])


def _put_back(row: dict) -> bool:
    """A trashed or moved file already back at its path (same bytes), gone from where the action
    put it: only the journal and the library are left to update. Links are simply redone."""
    path, action = row["path"], row["action"]
    if action not in ("trash", "move") or os.path.islink(path) or not os.path.isfile(path):
        return False
    elsewhere = row["target"] or (find_in_trash(path) if action == "trash" else None)
    if elsewhere and os.path.lexists(elsewhere):
        return False
    if row["hash"]:
        back = sha256_file(path) == row["hash"]
    else:  # a sidecar: the plan has its size and mtime, which rename keeps
        st = os.lstat(path)
        back = (st.st_size, st.st_mtime_ns) == (row["size"], row["mtime_ns"])
    if back and action == "trash" and row["target"]:
        forget_trashed(row["target"])
    return back


def _row_happened(row: dict) -> bool:
    file = PlanFile(row["path"], row["action"], None, None, None)
    return _happened(Step(None, file, row["action"], row["target"]))


def _undo_trash(row: dict) -> str | None:
    stored = row["target"] or find_in_trash(row["path"])
    if not stored or not os.path.lexists(stored):
        return "not found in the trash: restore it from the system Trash by hand"
    if os.path.lexists(row["path"]):
        return f"{row['path']} exists again: left the trashed copy at {stored}"
    row["target"] = stored
    restore_from_trash(stored, row["path"])
    return None


def _undo_move(row: dict) -> str | None:
    if os.path.lexists(row["path"]):
        return f"{row['path']} exists again: left the moved file at {row['target']}"
    if not os.path.lexists(row["target"]):
        return f"the moved file is gone from {row['target']}"
    os.makedirs(os.path.dirname(row["path"]), exist_ok=True)
    move_file(row["target"], row["path"])
    return None


def _undo_link(row: dict) -> str | None:
    """Replace the link by a copy of the kept file (byte-identical), with the old mtime."""
    kept = row["target"]
    if not os.path.exists(kept) or sha256_file(kept) != row["hash"]:
        return f"the kept file {kept} is gone or changed: cannot recreate the copy"
    tmp = row["path"] + TMP_SUFFIX
    shutil.copyfile(kept, tmp)
    os.utime(tmp, ns=(row["mtime_ns"], row["mtime_ns"]))
    os.replace(tmp, row["path"])
    return None


def _undo_delete(row: dict) -> str | None:
    return "deleted files cannot be restored"


UNDO = {
    "trash": _undo_trash,
    "move": _undo_move,
    "hardlink": _undo_link,
    "symlink": _undo_link,
    "delete": _undo_delete,
}


def _restore_library(store: Store, row: dict) -> None:
    path, action = row["path"], row["action"]
    if action == "move":
        if store.image_by_path(row["target"]):
            st = os.stat(path)
            store.move_image(row["target"], path, st.st_size, st.st_mtime_ns)
        return
    if action == "trash" and row["image"]:
        image = json.loads(row["image"])
        if store.image(image["id"]) is not None:
            image.pop("id")  # the id went to another image meanwhile
        store.restore_image({**image, "vector": row["vector"]})
        return
    if store.image_by_path(path):
        st = os.stat(path)
        store.touch_image(path, st.st_size, st.st_mtime_ns)
