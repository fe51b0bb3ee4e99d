"""The curation half of the facade (`Collection.curation()`): outliers, clusters, keep-lists and
the default keep set `export` writes. This is where curation is composed with what the other
rooms make: the `dups` groups (outliers fold them, clusters keep them whole), the clean-up plan
and the quality flags (a keep-list drops by them). It asks the Collection for those and hands
the results, with the library's parts, to search/curate/curation.py. Edges call these through
the Collection, never the rooms below."""

from dataclasses import dataclass
from typing import Any, Protocol

from indexer.config import DEFAULT_MIN_CLUSTER, DEFAULT_OUTLIERS, DEFAULT_PRECISION
from indexer.quality import FlagReport
from search.curate import curation, gallery, keeplist
from search.curate.clusters import ClusterReport
from search.curate.keeplist import KeepList
from search.curate.outliers import OutlierReport
from search.dups import run
from search.dups.groups import DupReport
from search.dups.run import DupOptions
from search.parts import Parts


class Composing(Parts, Protocol):
    """The Collection (search/collection.py) as this half uses it: its parts and the
    compositions curation builds on."""

    def duplicates(self, options: DupOptions | None = None, progress=None) -> DupReport: ...

    def plan(self, report: DupReport, policy: Any = None) -> Any: ...  # search/cleanup/plan.py

    def flags(self, only: str | None = None, within: str | None = None) -> FlagReport: ...


@dataclass
class Curation:
    coll: Composing  # the Collection

    def outliers(
        self,
        count: int = DEFAULT_OUTLIERS,
        within: str | None = None,
        progress=None,
        groups=None,
    ) -> OutlierReport:
        """The `count` images least like the rest (search/curate/outliers.py), one per picture:
        the copies of each (`groups` of ids, else copy_groups) folded into its entry."""
        ids, vectors = curation.scope(self.coll, within)
        source = "given"
        if groups is None:
            groups, source = self.copy_groups(ids, within, progress)
        return curation.outliers(self.coll, ids, vectors, groups, source, count, progress)

    def copy_groups(self, ids, within: str | None = None, progress=None) -> tuple[list, str]:
        """(groups of ids that are copies of each other, where they come from): the `dups`
        groups at the default settings when the library has its calibration (no model needed),
        else byte-identical files only ("bytes": outliers never load a model to calibrate)."""
        if run.stored_calibration(self.coll) is not None:
            report = self.coll.duplicates(DupOptions(within=within), progress)
            return curation.groups_of(report), "dups"
        return curation.byte_copies(self.coll, ids), "bytes"

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
            curation.scope(self.coll, within)  # a clear error for an empty folder
        coll, auto = self.coll, threshold == "auto"
        lib, space, level = curation.cluster_space(coll, threshold, precision, within, progress)
        options = DupOptions(threshold=threshold, precision=precision, within=within)
        report = coll.duplicates(options, progress)  # its groups move whole
        return curation.clusters(lib, space, level, report, auto, min_size, progress)

    @staticmethod
    def write_gallery(report: ClusterReport, path: str) -> None:
        """The clusters as one self-contained HTML page of thumbnails."""
        gallery.write_gallery(report, path)

    def keep_list(
        self,
        report: DupReport,
        policy=None,
        within: str | None = None,
        drop_flags: tuple[str, ...] = (),
        drop_outliers: int = 0,
    ) -> KeepList:
        """The images to train on: every non-duplicate, one kept file per group, less flagged
        images and the top outliers when asked."""
        plan = self.coll.plan(report, policy)
        ids, _ = curation.scope(self.coll, within)
        flagged = self._flagged(drop_flags, within) if drop_flags else {}
        groups = curation.groups_of(report)
        outliers = self.outliers(drop_outliers, within, groups=groups) if drop_outliers else None
        return keeplist.build(self.coll.store(), ids, report, plan, flagged, outliers)

    def require_flags(self, names: tuple[str, ...]) -> None:
        """Refuse --drop-flags now (before a dups run) when a flag name is unknown."""
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
        if run.stored_calibration(self.coll) is None:
            return None
        kept = self.keep_list(self.coll.duplicates(DupOptions()))
        return kept.kept_ids, kept.summary()
