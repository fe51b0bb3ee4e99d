"""`dups --keep-list FILE`: the images to train on, one path per line.

Every image in scope that is in no duplicate group, plus one file per group: the keep policy's
choice (the plan's kept file), or a burst's best shot when the group is a stack. Optionally less
the images carrying some quality flags and the top outliers. Written to a temporary file beside
FILE and renamed into place.
"""

from dataclasses import dataclass, field

from indexer.atomic import atomic_open
from indexer.errors import BadQuery


@dataclass
class KeepList:
    kept: list[str]  # paths, sorted
    kept_ids: set[int]
    dropped: dict[str, str] = field(default_factory=dict)  # path -> why

    def summary(self) -> dict:
        why: dict[str, int] = {}
        for reason in self.dropped.values():
            key = reason.split(":")[0]
            why[key] = why.get(key, 0) + 1
        return {"kept": len(self.kept), "dropped": len(self.dropped), "why": why}

    def write(self, path: str) -> None:
        """One path per line (UTF-8, '\\n'), atomically."""
        try:
            with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(p + "\n" for p in self.kept)
        except OSError as exc:
            raise BadQuery(f"cannot write keep-list {path}: {exc.strerror or exc}") from None


def build(store, ids, report, plan, flagged: dict, outliers) -> KeepList:
    """The keep-list over the scope `ids` from a dups report and its plan (same groups, same
    order); `flagged` path -> flags, `outliers` an OutlierReport (or None)."""
    rows = store.images_by_ids(ids.tolist(), "id, path")
    path_id = {r["path"]: i for i, r in rows.items()}
    dropped: dict[str, str] = {}
    for group, planned in zip(report.groups, plan.groups, strict=True):
        keep = group.best or planned.keep
        for m in group.members:
            if m.path != keep:
                dropped.setdefault(m.path, f"duplicate: of {keep}")
    for path, names in flagged.items():
        dropped.setdefault(path, f"flag: {','.join(names)}")
    for o in outliers.outliers if outliers else []:
        dropped.setdefault(o.path, f"outlier: rank {o.rank}")
        for copy in (rows[i]["path"] for i in o.copy_ids if i in rows):  # as unusual: its rank
            dropped.setdefault(copy, f"outlier: rank {o.rank} (a copy of {o.path})")
    kept = sorted(p for p in path_id if p not in dropped)
    return KeepList(kept, {path_id[p] for p in kept}, dropped)


def flagged_paths(flags_report, names: tuple[str, ...]) -> dict[str, list[str]]:
    """path -> which of `names` it carries, from a `flags` report (its JSON shape:
    {"flags": [{"path", "id", "flags": [...], "values": {...}}], "stats": {...}})."""
    out = {}
    for e in flags_report.to_json()["flags"]:
        if hits := [n for n in names if n in e["flags"]]:
            out[e["path"]] = hits
    return out
