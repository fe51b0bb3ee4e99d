"""The clean-up half of the facade (search/collection.py's Collection inherits it): plans,
apply, undo and the page's plan edits. Each method hands the work to its module here in
search/cleanup; the library parts (store, writer lock, FAISS file) come from Collection."""

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.config import DEFAULT_ACTION
from indexer.errors import BadQuery
from indexer.library.journal import Journal
from indexer.library.store import Store
from search.cleanup import editing
from search.cleanup.apply import Result, apply_plan, undo_plan
from search.cleanup.plan import Plan, PlanGroup, build_plan, read_plan
from search.cleanup.policy import Policy, parse_policy
from search.cleanup.report_html import write_html
from search.cleanup.select import FolderChoice, select_by_folder
from search.dups.groups import DupReport


class CleanupMethods:
    """Needs from its class: directory, store(), writing(doing), vector_index()."""

    if TYPE_CHECKING:  # what Collection provides (declared for the type checker only)
        directory: Path

        def store(self, create: bool = False) -> Store: ...

        def writing(self, doing: str) -> AbstractContextManager[Any]: ...

        def vector_index(self) -> Any: ...  # search.knn.VectorIndex (above this room)

    def policy(self, text: str | None) -> Policy:
        """A keep policy, checked (a bad one fails before a long dups run)."""
        return parse_policy(text)

    def plan(
        self,
        report: DupReport,
        policy: Policy | str | None = None,
        action: str = DEFAULT_ACTION,
        move_to: str | None = None,
    ) -> Plan:
        """The clean-up plan for a report: the policy's best file of each group is kept."""
        return build_plan(report, self.store(), policy, action, move_to)

    @staticmethod
    def read_plan(path: str) -> Plan:
        """A plan file written by `dups --plan` (its `library` names the library it is for)."""
        return read_plan(path)

    @staticmethod
    def write_review_page(plan: Plan, path: str) -> None:
        """The plan as one self-contained HTML page (thumbnails, the kept file and why)."""
        write_html(plan, path)

    def require_writable(self, doing: str) -> None:
        """Refuse `doing` now (before asking or starting) when the library is read-only."""
        self.store().require_writable(doing)

    def apply(
        self,
        plan: Plan,
        move_to: str | None = None,
        dry_run: bool = False,
        plan_path: str | None = None,
    ) -> Result:
        """Carry out a plan through the journal (resumable); the FAISS file follows the rows."""
        store = self.store()
        editing.check_library(store, plan)  # never through another library (its dry run too)
        if dry_run:
            return apply_plan(store, plan, move_to, dry_run, plan_path)
        store.require_writable("apply")
        with self.writing(f"apply plan {plan.id[:8]}"):
            result = apply_plan(store, plan, move_to, dry_run, plan_path)
            self.vector_index()
        return result

    def check_plan_library(self, plan: Plan) -> None:
        """Refuse (PlanForAnotherLibrary) a plan made for another library than this one."""
        editing.check_library(self.store(), plan)

    def last_plan_id(self) -> str | None:
        """The latest applied plan with something left to undo."""
        return Journal(self.store()).last_plan_id()

    def was_applied(self, plan_id: str) -> bool:
        return Journal(self.store()).was_applied(plan_id)

    def undo(self, plan_id: str | None = None) -> Result:
        """Put back what a plan (default: the last one applied) moved, trashed or linked."""
        store = self.store()
        store.require_writable("undo")
        plan_id = plan_id or self.last_plan_id()
        if not plan_id:
            raise BadQuery(f"no applied plan in {store.directory} to undo")
        with self.writing(f"undo plan {plan_id[:8]}"):
            result = undo_plan(store, plan_id)
            self.vector_index()  # the FAISS file follows the rows now, as after `index`
        return result

    # --- plan editing (the page) ---------------------------------------------------------------

    def unknown_plan_files(self, plan: Plan) -> list[str]:
        """The plan's files this library does not hold as indexed images (nor the plan moved)."""
        return editing.unknown_files(self.store(), plan)

    def plan_file(self, plan_id: str) -> Path:
        """Where plan `plan_id` is kept: the library's plans/ (`dinosearch undo` looks there)."""
        return editing.plan_file(self.directory, plan_id)

    def save_plan(self, plan: Plan) -> None:
        """Keep the plan under plans/ (not on a read-only library); files only, no SQLite."""
        editing.save_plan(self.directory, plan)

    def posted_plan(self, data: dict) -> Plan:
        """A whole (edited) plan from a client, checked like a plan file, for this library."""
        return editing.posted_plan(data, self.directory)

    def set_keeper(self, plan: Plan, group: PlanGroup, path: str) -> None:
        """Keep `path` in `group`; the old kept file gets the plan's action, sidecars follow."""
        editing.set_keeper(plan, group, path)

    def select_by_folder(self, plan: Plan, folder: str, choice: str) -> FolderChoice:
        """Keep (`keep`) or act on (`act`) every file of the plan under `folder`."""
        return select_by_folder(plan, folder, choice)
