""" "Not duplicates" / "keep both" decisions, keyed by content hash so they outlive paths.

A decision names two contents (SHA-256 of the files' bytes), not two paths: it survives renames,
moves and re-indexing, and applies to every copy of either content. Two byte-identical files give
one hash twice: "keep every copy of this content". `respect_decisions` removes decided pairs from
a DupReport: a member decided against the group's first member leaves the group, then a member
decided against an earlier remaining member leaves it too, so no group holds a decided pair.
"""

import os

from indexer.errors import BadQuery
from indexer.files import sha256_file
from indexer.library.decisions import Decisions
from indexer.library.store import Store
from search.dups.groups import DupReport, Group, loosest_tier

KINDS = ("distinct", "keep-both")


def content_hash(store: Store, path: str) -> str:
    """The file's SHA-256: the library's when the file is indexed and unchanged, else computed."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BadQuery(f"cannot read {path}: {exc.strerror or exc}") from None
    row = store.stat_of(path)
    if row and row["hash"] and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
        return row["hash"]
    return sha256_file(path)


def pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def mark(store: Store, a: str, b: str, kind: str = "distinct") -> dict:
    """Record that the files a and b are not to be treated as duplicates of each other."""
    if kind not in KINDS:
        raise BadQuery(f"decision kind: one of {', '.join(KINDS)}, not {kind!r}")
    ha, hb = pair_key(content_hash(store, a), content_hash(store, b))
    Decisions(store).put(ha, hb, kind, [os.path.abspath(a), os.path.abspath(b)])
    return {"a": os.path.abspath(a), "b": os.path.abspath(b), "kind": kind, "hashes": [ha, hb]}


def unmark(store: Store, a: str, b: str) -> bool:
    """Forget the decision about a and b; True if there was one."""
    return Decisions(store).delete(*pair_key(content_hash(store, a), content_hash(store, b)))


def list_decisions(store: Store) -> list[dict]:
    return Decisions(store).all()


def respect_decisions(store: Store, report: DupReport) -> DupReport:
    """The report without decided pairs (see the module doc); groups left with one member go."""
    pairs = Decisions(store).pairs()
    if not pairs:
        return report
    hashes = _member_hashes(store, report)
    kept = []
    for group in report.groups:
        group = _filter_group(group, hashes, pairs)
        if len(group.members) > 1:
            kept.append(group)
    report.groups = kept
    return report


def _filter_group(group: Group, hashes: dict, pairs: set) -> Group:
    members: list = []
    for m in group.members:
        h = hashes.get((m.id, m.path))
        if h and any(pair_key(h, hashes.get((o.id, o.path)) or "") in pairs for o in members):
            continue
        members.append(m)
    kept = {m.path for m in members}  # a member matched through one that left goes with it
    members = [m for m in members if not (m.via or m.twin_of) or (m.via or m.twin_of) in kept]
    return Group(loosest_tier(members) if len(members) > 1 else group.tier, members)


def _member_hashes(store: Store, report: DupReport) -> dict[tuple[int, str], str | None]:
    ids = [m.id for g in report.groups for m in g.members if m.id >= 0]
    rows = store.images_by_ids(ids, "id, hash")
    out: dict[tuple[int, str], str | None] = {}
    for m in (m for g in report.groups for m in g.members):
        if m.id in rows:
            out[(m.id, m.path)] = rows[m.id]["hash"]
        else:  # a file outside the library (--against / --of)
            out[(m.id, m.path)] = sha256_file(m.path) if os.path.isfile(m.path) else None
    return out
