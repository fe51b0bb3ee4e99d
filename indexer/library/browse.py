"""Browsing the library without loading it: its folders with image counts, a capture-date
timeline, and pages of images in a stable order. Pages are keyset-paginated (the cursor is the
last row's sort key), so page 1,000 of a 100k library costs what page 1 does; a folder is a range
of the `path` index (`path >= 'dir/' and path < 'dir0'`: '0' follows the separator)."""

import base64
import binascii
import json
import os
import re
from dataclasses import asdict, dataclass, field

from indexer.errors import BadQuery
from indexer.library.store import Store
from indexer.paths import folder_prefix

SORTS = ("path", "taken")
NO_DATE = "none"  # the timeline's bucket of images without a capture time
MONTH = re.compile(r"^\d{4}(-\d{2})?$")  # 2019 or 2019-05
UNDATED_KEY = "~"  # sorts after every ISO 8601 capture time: images without one come last
COLUMNS = "id, path, size, width, height, format, taken"
MAX_PAGE = 500  # images in one page


@dataclass
class Folder:
    path: str
    name: str
    depth: int  # below the library's top folder
    images: int  # directly in this folder
    total: int  # in it and every folder below


@dataclass
class Page:
    images: list[dict]
    total: int  # images matching the filter, all pages together
    next_cursor: str | None  # give it back for the next page; None: this was the last

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Timeline:
    years: list[dict] = field(default_factory=list)  # {year, images, months: [{month, images}]}
    undated: int = 0  # images without a capture time

    def to_json(self) -> dict:
        return asdict(self)


class Browse:
    """Read-only queries over the indexed (status ok) images of one library."""

    def __init__(self, store: Store):
        self.db = store.db

    def folders(self) -> tuple[str, list[Folder]]:
        """(top, folders): every folder holding images or folders with images, below the
        deepest folder all of them share, in path order (a parent before its children)."""
        direct = dict(
            self.db.execute(
                "select rtrim(path, replace(path, ?, '')) as folder, count(*) from images "
                "where status = 'ok' group by folder",
                [os.sep],
            ).fetchall()
        )
        direct = {_strip(f): n for f, n in direct.items()}
        if not direct:
            return "", []
        top = os.path.commonpath(list(direct)) if len(direct) > 1 else next(iter(direct))
        totals: dict[str, int] = {}
        for folder, n in direct.items():
            for above in _ancestors(folder, top):
                totals[above] = totals.get(above, 0) + n
        return top, [
            Folder(f, os.path.basename(f) or f, _depth(f, top), direct.get(f, 0), totals[f])
            for f in sorted(totals, key=_path_order)
        ]

    def timeline(self, folder: str | None = None) -> Timeline:
        """Image counts by year and month of capture (EXIF), under `folder` if given."""
        where, params = _in_folder(folder, recursive=True)
        rows = self.db.execute(
            f"select substr(taken, 1, 7) as month, count(*) from images where {where} "
            "group by month order by month",
            params,
        ).fetchall()
        out = Timeline()
        for month, n in rows:
            if month is None:
                out.undated += n
                continue
            year = month[:4]
            if not out.years or out.years[-1]["year"] != year:
                out.years.append({"year": year, "images": 0, "months": []})
            out.years[-1]["images"] += n
            out.years[-1]["months"].append({"month": month, "images": n})
        return out

    def page(
        self,
        folder: str | None = None,
        month: str | None = None,
        recursive: bool = True,
        sort: str = "path",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """One page of images (id, path, size, width, height, format, taken) matching the
        filter, in `sort` order (path; or capture time, undated last, then id)."""
        if sort not in SORTS:
            raise BadQuery(f"sort: one of {', '.join(SORTS)}, not {sort!r}")
        if not 1 <= limit <= MAX_PAGE:
            raise BadQuery(f"limit: 1 to {MAX_PAGE} images a page, not {limit}")
        where, params = _in_folder(folder, recursive)
        more, more_params = _in_month(month)
        where, params = f"{where}{more}", params + more_params
        if cursor:  # the count of the first page rides along: later pages only walk the index
            total, after, after_params = _after(sort, cursor)
        else:
            total, after, after_params = self._count(where, params), "", []
        order = "path" if sort == "path" else f"ifnull(taken, '{UNDATED_KEY}'), id"
        rows = list(
            self.db.query(
                f"select {COLUMNS} from images where {where}{after} order by {order} limit ?",
                [*params, *after_params, limit + 1],
            )
        )
        last = rows[limit - 1] if len(rows) > limit else None
        return Page(rows[:limit], total, None if last is None else _cursor(sort, total, last))

    def _count(self, where: str, params: list) -> int:
        return self.db.execute(f"select count(*) from images where {where}", params).fetchone()[0]


# --- filters -------------------------------------------------------------------------------------


def _in_folder(folder: str | None, recursive: bool) -> tuple[str, list]:
    """The indexed images under `folder` (all of them without one): a range of the path index."""
    if folder is None or folder == "":
        return "status = 'ok'", []
    if not os.path.isabs(folder):
        raise BadQuery(f"folder: an absolute path, as GET /api/folders lists them, not {folder!r}")
    prefix = folder_prefix(os.path.normpath(folder))
    upper = prefix[:-1] + chr(ord(os.sep) + 1)
    where = "status = 'ok' and path >= ? and path < ?"
    if recursive:
        return where, [prefix, upper]
    return f"{where} and instr(substr(path, ?), ?) = 0", [prefix, upper, len(prefix) + 1, os.sep]


def _in_month(month: str | None) -> tuple[str, list]:
    """Images taken in a year (2019) or month (2019-05), or without a capture time ("none")."""
    if month is None or month == "":
        return "", []
    if month == NO_DATE:
        return " and taken is null", []
    if not MONTH.match(month):
        raise BadQuery(f"month: YYYY, YYYY-MM or {NO_DATE!r}, not {month!r}")
    return " and taken >= ? and taken < ?", [month, month + UNDATED_KEY]


def _after(sort: str, cursor: str) -> tuple[int, str, list]:
    """(total, condition, values): the rows after the cursor's row in `sort` order (keyset:
    no OFFSET to walk past)."""
    total, key = _read_cursor(sort, cursor)
    if sort == "path":
        return total, " and path > ?", key
    return total, f" and (ifnull(taken, '{UNDATED_KEY}'), id) > (?, ?)", key


def _cursor(sort: str, total: int, row: dict) -> str:
    key = [row["path"]] if sort == "path" else [row["taken"] or UNDATED_KEY, row["id"]]
    raw = json.dumps([sort, total, *key], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(sort: str, cursor: str) -> tuple[int, list]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        given, total, *key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadQuery("cursor: not one this server gave; start again without it") from None
    size = 1 if sort == "path" else 2
    if given != sort or len(key) != size or not isinstance(total, int):
        raise BadQuery(f"cursor: made for another order than sort={sort}; start without it")
    return total, key


# --- folder paths --------------------------------------------------------------------------------


def _strip(folder: str) -> str:
    """A folder as the SQL gives it (with its trailing separator) as a path; the root stays."""
    return folder.rstrip(os.sep) or os.sep


def _ancestors(folder: str, top: str) -> list[str]:
    """`folder` and each folder above it up to `top`, included."""
    out = [folder]
    while out[-1] != top and os.path.dirname(out[-1]) != out[-1]:
        out.append(os.path.dirname(out[-1]))
    return out


def _depth(folder: str, top: str) -> int:
    return 0 if folder == top else os.path.relpath(folder, top).count(os.sep) + 1


def _path_order(folder: str) -> tuple[str, ...]:
    """Parents before children, siblings by name ('a/b' before 'a-b', unlike plain strings)."""
    return tuple(folder.split(os.sep))
