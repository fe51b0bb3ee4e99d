"""The clean-up journal: which plans were applied, and each file action's state.

A row is written *pending* (with the library row it affects) before a file is touched and set
*done* after, so a kill at any moment leaves what `apply` resumes and `undo` restores. The rules
of applying live in search/cleanup/apply.py; this module holds the statements.
"""

import datetime as dt
import json

from indexer.library.store import Store


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Journal:
    def __init__(self, store: Store):
        self.store = store
        self.db = store.db

    def row(self, plan_id: str, path: str) -> dict | None:
        rows = list(
            self.db.query("select * from journal where plan_id = ? and path = ?", [plan_id, path])
        )
        return rows[0] if rows else None

    def write_pending(self, record: dict) -> None:
        """The action's row, before the file is touched; with the library row it affects (so
        undo can put it back) and replacing an earlier attempt at the same file."""
        image = self.store.image_by_path(record["path"])
        vector = image.pop("vector", None) if image else None
        stamp = now()
        record = {
            **record,
            "image": json.dumps(image) if image else None,
            "vector": vector,
            "created": stamp,
            "updated": stamp,
        }
        with self.db.atomic():
            self.db.execute(
                "delete from journal where plan_id = ? and path = ?",
                [record["plan_id"], record["path"]],
            )
            self.db.table("journal").insert(record)

    def set_state(self, plan_id: str, path: str, state: str, **cols) -> None:
        """Within the caller's transaction when there is one (done + library update together)."""
        sets = ", ".join(f"{k} = ?" for k in ["state", "updated", *cols])
        self.db.execute(
            f"update journal set {sets} where plan_id = ? and path = ?",
            [state, now(), *cols.values(), plan_id, path],
        )

    def record_plan(self, plan_id: str, path: str | None, created: str) -> None:
        record = {"id": plan_id, "path": path, "created": created, "applied": now()}
        with self.db.atomic():
            self.db.table("plans").upsert(record, pk="id")

    def last_plan_id(self) -> str | None:
        """The latest applied plan with something left to undo."""
        row = self.db.execute(
            "select p.id from plans p where exists (select 1 from journal j where j.plan_id = p.id "
            "and j.state in ('done', 'pending')) order by p.applied desc, p.rowid desc limit 1"
        ).fetchone()
        return row[0] if row else None

    def was_applied(self, plan_id: str) -> bool:
        query = "select 1 from journal where plan_id = ? limit 1"
        return self.db.execute(query, [plan_id]).fetchone() is not None

    def done_paths(self, plan_id: str) -> set[str]:
        """Files this plan already moved, trashed or linked."""
        query = "select path from journal where plan_id = ? and state = 'done'"
        return {r[0] for r in self.db.execute(query, [plan_id])}

    def undoable(self, plan_id: str) -> list[dict]:
        """Rows to put back, latest first."""
        return list(
            self.db.query(
                "select * from journal where plan_id = ? and state in ('done', 'pending') "
                "order by id desc",
                [plan_id],
            )
        )

    def mark_undone(self, plan_id: str) -> None:
        with self.db.atomic():
            self.db.execute("update plans set undone = ? where id = ?", [now(), plan_id])
