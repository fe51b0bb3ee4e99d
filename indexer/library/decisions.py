"""The user's "not a duplicate" / "keep both" decisions, keyed by the pair's content hashes (so a
decision follows the files through renames and re-indexing). What a decision does to a report is
search/dups/decisions.py's; this module holds the statements."""

import datetime as dt
import json

from indexer.library.store import Store


class Decisions:
    def __init__(self, store: Store):
        self.db = store.db

    def put(self, hash_a: str, hash_b: str, kind: str, paths: list[str]) -> None:
        """Record (or replace) the decision about the pair; hashes in sorted order."""
        record = {
            "hash_a": hash_a,
            "hash_b": hash_b,
            "kind": kind,
            "paths": json.dumps(paths),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        with self.db.atomic():
            self.db.execute(
                "delete from decisions where hash_a = ? and hash_b = ?", [hash_a, hash_b]
            )
            self.db.table("decisions").insert(record)

    def delete(self, hash_a: str, hash_b: str) -> bool:
        """Forget the pair's decision; True if there was one."""
        with self.db.atomic():
            cur = self.db.execute(
                "delete from decisions where hash_a = ? and hash_b = ?", [hash_a, hash_b]
            )
        return cur.rowcount > 0

    def pairs(self) -> set[tuple[str, str]]:
        return {(r[0], r[1]) for r in self.db.execute("select hash_a, hash_b from decisions")}

    def all(self) -> list[dict]:
        query = "select hash_a, hash_b, kind, paths, created from decisions order by id"
        rows = self.db.query(query)
        return [{**r, "paths": json.loads(r["paths"])} for r in rows]
