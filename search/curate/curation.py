"""The curation part of the facade (`Collection.curation()`): outliers, clusters, keep-lists and
the default keep set `export` writes. Edges call these through the Collection, never the rooms
below."""

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from indexer.config import DEFAULT_MIN_CLUSTER, DEFAULT_OUTLIERS, DEFAULT_PRECISION
from indexer.errors import BadQuery
from indexer.library.store import Store
from search.curate import gallery, keeplist
from search.curate.clusters import ClusterReport, cluster_library
from search.curate.keeplist import KeepList
from search.curate.outliers import OutlierReport, find_outliers
from search.dups import run
from search.dups.groups import DupReport
from search.dups.run import DupOptions


class Library(Protocol):
    """What curation needs of the Collection (search/collection.py), which it is handed."""

    def store(self, create: bool = False) -> Store: ...

    def duplicates(self, options: DupOptions | None = None, progress=None) -> DupReport: ...

    def plan(self, report: DupReport, policy: Any = None) -> Any: ...

    def flags(self, only: str | None = None, within: str | None = None) -> Any: ...


@dataclass
class Curation:
    coll: Library  # the Collection

    def _scope(self, within: str | None):
        """(ids, vectors) of the ok images, under `within` when given (refused when empty)."""
        store = self.coll.store()
        ids, vectors = store.vectors()
        if within:
            inside = np.isin(ids, store.ids_under(within))
            if not inside.any():
                raise BadQuery(f"--within {within}: no indexed image lies under that folder")
            ids, vectors = ids[inside], vectors[inside]
        return ids, vectors

    def outliers(
        self,
        count: int = DEFAULT_OUTLIERS,
        within: str | None = None,
        progress=None,
        groups=None,
    ) -> OutlierReport:
        """The `count` images least like the rest (search/curate/outliers.py), one per picture:
        the copies of each (`groups` of ids, else copy_groups) folded into its entry."""
        ids, vectors = self._scope(within)
        store = self.coll.store()

        def paths_of(wanted):
            return {i: r["path"] for i, r in store.images_by_ids(wanted, "id, path").items()}

        source = "given"
        if groups is None:
            groups, source = self.copy_groups(ids, within, progress)
        report = find_outliers(ids, vectors, paths_of, count, progress, groups)
        report.stats["copies_from"] = source
        return report

    def copy_groups(self, ids, within: str | None = None, progress=None) -> tuple[list, str]:
        """(groups of ids that are copies of each other, where they come from): the `dups`
        groups at the default settings when the library has its calibration (no model needed),
        else byte-identical files only ("bytes": outliers never load a model to calibrate)."""
        if run.stored_calibration(self.coll) is not None:
            report = self.coll.duplicates(DupOptions(within=within), progress)
            return [[m.id for m in g.members if m.id >= 0] for g in report.groups], "dups"
        by_hash: dict[str, list[int]] = {}
        for i, row in self.coll.store().images_by_ids(ids.tolist(), "id, hash").items():
            if row["hash"]:
                by_hash.setdefault(row["hash"], []).append(int(i))
        return [g for g in by_hash.values() if len(g) > 1], "bytes"

    def clusters(
        self,
        threshold: str | float = "auto",
        precision: float = DEFAULT_PRECISION,
        within: str | None = None,
        min_size: int = DEFAULT_MIN_CLUSTER,
        progress=None,
    ) -> ClusterReport:
        """Every image in one cluster; `dups` groups of the same options never split."""
        if within:
            self._scope(within)  # a clear error for an empty folder
        options = DupOptions(threshold=threshold, precision=precision, within=within)
        lib = run.load_library(self.coll, within)
        if threshold == "auto":
            calibration, whitening = run.ensure_calibration(self.coll, precision, None, progress)
            # whitened: the `similar` level; raw cosines (under 100 images) crowd distinct
            # photos too close to go below the copy threshold (measured: README)
            level = calibration.threshold
            if whitening is not None:
                level = min(calibration.similar_threshold, level)
        else:
            whitening, level = None, _cosine(threshold)
        space = whitening.apply(lib.vectors) if whitening else lib.vectors
        row_of = {int(i): r for r, i in enumerate(lib.ids.tolist())}
        report = self.coll.duplicates(options, progress)  # its groups move whole
        groups = [[row_of[m.id] for m in g.members if m.id in row_of] for g in report.groups]
        out = cluster_library(lib, space, level, groups, min_size, progress)
        out.stats["mode"] = "auto" if threshold == "auto" else "cosine"
        return out

    @staticmethod
    def write_gallery(report: ClusterReport, path: str) -> None:
        """The clusters as one self-contained HTML page of thumbnails."""
        gallery.write_gallery(report, path)

    def keep_list(
        self,
        report,
        policy=None,
        within: str | None = None,
        drop_flags: tuple[str, ...] = (),
        drop_outliers: int = 0,
    ) -> KeepList:
        """The images to train on: every non-duplicate, one kept file per group, less flagged
        images and the top outliers when asked."""
        plan = self.coll.plan(report, policy)
        ids, _ = self._scope(within)
        flagged = self._flagged(drop_flags, within) if drop_flags else {}
        groups = [[m.id for m in g.members if m.id >= 0] for g in report.groups]
        outliers = self.outliers(drop_outliers, within, groups=groups) if drop_outliers else None
        return keeplist.build(self.coll.store(), ids, report, plan, flagged, outliers)

    def require_flags(self, names: tuple[str, ...]) -> None:
        """Refuse --drop-flags now (before a dups run): an unknown flag name, or a version
        without quality flags."""
        if names and not callable(getattr(self.coll, "flags", None)):
            raise BadQuery("--drop-flags needs the quality flags of `dinosearch flags`")
        if names:
            self.coll.flags(only=",".join(names))  # an unknown name is a BadQuery naming the known

    def _flagged(self, names: tuple[str, ...], within: str | None) -> dict[str, list[str]]:
        """path -> the asked-for flags it carries (`dinosearch flags`: Collection.flags)."""
        self.require_flags(names)
        report = self.coll.flags(only=",".join(names), within=within)
        return keeplist.flagged_paths(report, names)

    def default_keep_ids(self) -> tuple[set[int], dict] | None:
        """The keep set `export` writes (dups defaults, default keep policy), from the stored
        calibration; None when the library has none (then no model is loaded for it)."""
        stored = run.stored_calibration(self.coll)
        if stored is None:
            return None
        report = self.coll.duplicates(DupOptions())
        kept = self.keep_list(report)
        return kept.kept_ids, kept.summary()


def _cosine(threshold) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise BadQuery(f"--threshold: 'auto' or a number, not {threshold!r}") from None
    if not -1 <= value <= 1:
        raise BadQuery("--threshold is a cosine between -1 and 1")
    return value
