"""The `quality` table: each content's quality measures (indexer/quality.py), by content hash.

Keyed by hash, the measures follow a file through moves and renames, and a copy of a known
content has them already. Rows of `images` whose content has none (a library from before the
table, or rows embedded on a Ray cluster) are what the next `index` measures.
"""

import os
from collections.abc import Iterable, Iterator

from indexer.library.store import Store
from indexer.paths import folder_prefix
from indexer.quality import MEASURES, Values

COLUMNS = ", ".join(f"q.{m}" for m in MEASURES)


def write(store: Store, measured: Iterable[tuple[str, Values]]) -> None:
    """Store (hash, measures) pairs in one transaction; a hash measured before is replaced."""
    records = [{"hash": h, **{m: values.get(m) for m in MEASURES}} for h, values in measured]
    if not records:
        return
    with store.transaction():
        store.db.table("quality").upsert_all(records, pk="hash", alter=False)


def unmeasured(store: Store, roots: Iterable[str]) -> list[tuple[str, str]]:
    """(path, hash) of the ok rows under roots whose content has no measures, by path."""
    out: list[tuple[str, str]] = []
    query = (
        "select path, hash from images where status = 'ok' and hash is not null "
        "and (path = ? or substr(path, 1, ?) = ?) "
        "and not exists (select 1 from quality q where q.hash = images.hash) order by path"
    )
    for root in roots:
        root = os.path.abspath(root)
        prefix = folder_prefix(root)
        out.extend(store.db.execute(query, [root, len(prefix), prefix]).fetchall())
    return sorted(set(out))


def rows(store: Store, within: str | None = None) -> Iterator[tuple]:
    """(id, path, width, height, measures or None) of every ok row (under `within`), by id."""
    query = (
        f"select i.id, i.path, i.width, i.height, q.hash, {COLUMNS} from images i "
        "left join quality q on q.hash = i.hash where i.status = 'ok'"
    )
    args: list = []
    if within:
        root = os.path.abspath(within)
        prefix = folder_prefix(root)
        query += " and (i.path = ? or substr(i.path, 1, ?) = ?)"
        args = [root, len(prefix), prefix]
    with store.snapshot():
        found = store.db.execute(query + " order by i.id", args).fetchall()
    for image_id, path, width, height, measured, *values in found:
        measures = dict(zip(MEASURES, values, strict=True)) if measured else None
        yield image_id, path, width, height, measures
