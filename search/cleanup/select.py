"""Select by folder (dupeGuru's): in every group of a plan, keep each file under a folder, or act
on each file under one. Each group keeps at least one file, and the plan's protections hold: a
reference file, another rendition of the kept capture, a file a link would lose, stay kept."""

import os
from dataclasses import asdict, dataclass

from indexer.paths import is_under, under_any
from search.cleanup import captures
from search.cleanup.editing import set_keeper
from search.cleanup.plan import LINKS, Plan, PlanFile, PlanGroup, attach_companions, common_root

CHOICES = ("keep", "act")


@dataclass
class FolderChoice:
    folder: str
    choice: str  # keep: every file under the folder stays; act: each gets the plan's action
    files_changed: int  # files whose action this changed
    groups_skipped: int  # groups made only of files under the folder (one of them must stay)

    def to_json(self) -> dict:
        return asdict(self)


def select_by_folder(plan: Plan, folder: str, choice: str) -> FolderChoice:
    """Apply the choice to every group with a file under `folder` (an absolute path)."""
    folder = os.path.normpath(folder)
    changed = skipped = 0
    for group in plan.groups:
        inside = [f for f in group.files if is_under(f.path, folder)]
        if not inside:
            continue
        if choice == "keep":
            changed += _keep_all(inside, folder)
        elif len(inside) == len(group.files):
            skipped += 1
        else:
            changed += _act_on_all(plan, group, folder)
    for _, f in plan.files():  # which sidecars follow a removed file depends on them all
        f.companions = []
    attach_companions(plan.groups)
    plan.root = common_root([f.path for _, f in plan.files() if f.action != "keep"])
    return FolderChoice(folder, choice, changed, skipped)


def _keep_all(inside: list[PlanFile], folder: str) -> int:
    acting = [f for f in inside if f.action != "keep"]
    for f in acting:
        f.action, f.note = "keep", f"kept: in {folder} (selected by folder)"
    return len(acting)


def _act_on_all(plan: Plan, group: PlanGroup, folder: str) -> int:
    """Every file under `folder` gets the plan's action; the kept file moves outside it."""
    before = {f.path: (f.action, f.note) for f in group.files}
    if is_under(group.keep, folder) and not under_any(group.keep, plan.reference):
        outside = [f for f in group.files if not is_under(f.path, folder)]
        outside.sort(key=lambda f: not under_any(f.path, plan.reference))  # a reference file first
        old = group.keep
        set_keeper(plan, group, outside[0].path)
        group.reason["text"] = f"chosen by folder: the files in {folder} are acted on"
        for f in group.files:  # files outside the folder keep what they had been given
            if f.path not in (old, group.keep) and before[f.path][0] == "keep":
                f.action, f.note = before[f.path]
    kept = next(f for f in group.files if f.path == group.keep)
    for f in group.files:
        if f.path != kept.path and is_under(f.path, folder) and not _protected(plan, f, kept):
            f.action, f.note = plan.action, None
    return sum(before[f.path][0] != f.action for f in group.files)


def _protected(plan: Plan, f: PlanFile, kept: PlanFile) -> bool:
    """Whether the plan must keep `f` whatever is selected (set_keeper's rules)."""
    return (
        under_any(f.path, plan.reference)
        or captures.capture_key(f.path) == captures.capture_key(kept.path)
        or (plan.action in LINKS and f.hash != kept.hash)
    )
