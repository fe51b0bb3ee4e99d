"""Curation over a library's parts (search/parts.py): the images in scope, the outliers among
them, the byte-identical copies, and the space and level clusters are cut at. What curation
builds on from the other rooms (the `dups` groups that outliers fold and clusters keep whole, the
plan and the flags a keep-list drops by) is composed by the facade, search/curate/facade.py,
and handed in: nothing here calls the Collection back."""

import numpy as np

from indexer.errors import BadQuery
from search.curate.clusters import ClusterReport, cluster_library
from search.curate.outliers import OutlierReport, find_outliers
from search.dups import run
from search.dups.groups import DupReport, Library
from search.parts import Parts


def scope(parts: Parts, within: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the ok images, under `within` when given (refused when empty)."""
    store = parts.store()
    ids, vectors = store.vectors()
    if within:
        inside = np.isin(ids, store.ids_under(within))
        if not inside.any():
            raise BadQuery(f"--within {within}: no indexed image lies under that folder")
        ids, vectors = ids[inside], vectors[inside]
    return ids, vectors


def outliers(
    parts: Parts, ids, vectors, groups: list, source: str, count: int, progress=None
) -> OutlierReport:
    """The `count` images of the scope (ids, vectors) least like the rest, one per picture: the
    copies of each (`groups` of ids, from `source`: "given", "dups" or "bytes") folded in."""
    store = parts.store()

    def paths_of(wanted):
        return {i: r["path"] for i, r in store.images_by_ids(wanted, "id, path").items()}

    report = find_outliers(ids, vectors, paths_of, count, progress, groups)
    report.stats["copies_from"] = source
    return report


def groups_of(report: DupReport) -> list[list[int]]:
    """The ids of each `dups` group (query files from outside the library left out)."""
    return [[m.id for m in g.members if m.id >= 0] for g in report.groups]


def byte_copies(parts: Parts, ids) -> list[list[int]]:
    """Groups of ids whose files are byte-identical (what outliers fold without a calibration:
    they never load a model to calibrate)."""
    by_hash: dict[str, list[int]] = {}
    for i, row in parts.store().images_by_ids(ids.tolist(), "id, hash").items():
        if row["hash"]:
            by_hash.setdefault(row["hash"], []).append(int(i))
    return [g for g in by_hash.values() if len(g) > 1]


def cluster_space(
    parts: Parts, threshold: str | float, precision: float, within: str | None, progress=None
) -> tuple[Library, np.ndarray, float]:
    """(the library in scope, the space clusters are cut in, the level they are cut at): with
    "auto", the calibration's (fitted now when none is stored) whitened space at its `similar`
    level; else the raw vectors at the given cosine."""
    lib = run.load_library(parts, within)
    whitening = None
    if threshold == "auto":
        calibration, whitening = run.ensure_calibration(parts, precision, None, progress)
        # whitened: the `similar` level; raw cosines (under 100 images) crowd distinct
        # photos too close to go below the copy threshold (measured: README)
        level = calibration.threshold
        if whitening is not None:
            level = min(calibration.similar_threshold, level)
    else:
        level = _cosine(threshold)
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    return lib, space, level


def clusters(
    lib: Library,
    space: np.ndarray,
    level: float,
    report: DupReport,
    auto: bool,
    min_size: int,
    progress=None,
) -> ClusterReport:
    """Every image of `lib` in one cluster; the groups of the `dups` report never split."""
    row_of = {int(i): r for r, i in enumerate(lib.ids.tolist())}
    groups = [[row_of[m.id] for m in g.members if m.id in row_of] for g in report.groups]
    out = cluster_library(lib, space, level, groups, min_size, progress)
    out.stats["mode"] = "auto" if auto else "cosine"
    return out


def _cosine(threshold) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise BadQuery(f"--threshold: 'auto' or a number, not {threshold!r}") from None
    if not -1 <= value <= 1:
        raise BadQuery("--threshold is a cosine between -1 and 1")
    return value
