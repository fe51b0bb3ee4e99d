"""Vectors -> duplicate groups, in tiers, without chaining; each file in at most one group.

Grouping rule. Identical files come first: files with the same bytes (SHA-256), and files with the
same decoded pixels (a PNG and its lossless WebP), form a *twin set* with one representative (the
largest file). Only representatives take part in the near-duplicate search, by leader clustering:
they are taken in order of how many neighbours they have above the threshold (then resolution,
then id); each one not yet grouped becomes the first member of a new group holding every
still-ungrouped representative within the threshold *of the first member*. So every `copy` member
is within the threshold of its group's first member, and a series of images each close only to
the next cannot merge into one long group. Then every representative brings its twins into its
group (match `exact` or `pixels`, `twin_of` naming the member it is identical to), and a twin set
in no near group is a group of its own (tier `exact`, or `pixels` when not all bytes agree). A
group's tier is its loosest link: exact < pixels < copy < similar. The pairs above the threshold
come from search/dups/pairs.py.
"""

import csv
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.atomic import atomic_open
from indexer.errors import BadQuery
from indexer.paths import under_any

TIERS = ("exact", "pixels", "copy", "similar")


@dataclass
class Library:
    """The rows a duplicate run looks at, aligned by position."""

    ids: np.ndarray
    vectors: np.ndarray
    rows: list[dict] = field(default_factory=list)

    @property
    def hashes(self) -> list[str | None]:
        return [r["hash"] for r in self.rows]

    @property
    def sizes(self) -> list[int]:
        return [r["size"] or 0 for r in self.rows]


def keep_reference(report: "DupReport", folders: tuple[str, ...]) -> "DupReport":
    """--reference: groups made only of reference files are not reported (nothing to do)."""
    report.reference = tuple(os.path.abspath(os.path.expanduser(f)) for f in folders)
    for folder in report.reference:
        if not os.path.isdir(folder):
            raise BadQuery(f"reference folder {folder} is not a folder")
    if report.reference:
        report.groups = [
            g
            for g in report.groups
            if not all(under_any(m.path, report.reference) for m in g.members)
        ]
    return report


@dataclass
class Member:
    id: int
    path: str
    score: float  # raw cosine to the group's first member
    confidence: float | None  # calibrated probability of being a duplicate of the first member
    width: int | None
    height: int | None
    bytes: int | None
    similarity: float | None = None  # score in the calibrated (whitened) space
    match: str = "first"  # how it joined the group: exact/pixels/copy/similar
    twin_of: str | None = None  # exact/pixels: the member whose bytes/pixels it has
    verified: str | None = None  # copy below the threshold confirmed by pixels: "tone" or "crop"
    via: str | None = None  # a verified copy of this member rather than of the first one
    # --rotations: this member is the first one (or `via`) turned in its pixels: rot90 (90
    # degrees anticlockwise), rot180, rot270 or mirror (left-right); None otherwise
    transform: str | None = None

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "score": round(self.score, 6),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "id": self.id,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
            "match": self.match,
            "twin_of": self.twin_of,
            "verified": self.verified,
            "via": self.via,
            "transform": self.transform,
        }


@dataclass
class Group:
    tier: str
    members: list[Member]
    best: str | None = None  # a burst (tier similar): its best shot, the one suggested

    def to_json(self) -> dict:
        out: dict[str, Any] = {"tier": self.tier, "members": [m.to_json() for m in self.members]}
        if self.best:
            out["stack"], out["best"] = True, self.best
        return out


def loosest_tier(members: list[Member]) -> str:
    """A group's tier: the loosest way any member after the first matched."""
    matches = {m.match for m in members[1:]}
    return next((t for t in reversed(TIERS) if t in matches), "exact")


@dataclass
class DupReport:
    threshold: float
    calibration: dict | None
    groups: list[Group] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    mode: str = "auto"  # "auto" (calibrated, whitened space) or "cosine" (fixed raw threshold)
    pixel_checks: bool = False  # hard copies confirmed by pixels (dups/verify.py) this run
    checked: list[str] | None = None  # --against / --of: every query file looked up
    skipped: list[dict] = field(default_factory=list)  # --against: {path, error} not readable
    reference: tuple[str, ...] = ()  # --reference folders: their files are never acted on
    rotations: dict | None = None  # --rotations: the turned views looked at (rotations.py)
    estimate: dict | None = None  # what the copy tier means on this library (precision.py)

    def to_json(self) -> dict:
        out = self._to_json()
        if self.reference:  # which members lie in a reference folder (never acted on)
            out["reference"] = list(self.reference)
            for group in out["groups"]:
                for m in group["members"]:
                    m["reference"] = under_any(m["path"], self.reference)
        if self.checked is not None:  # --against / --of: which query files have no duplicate
            grouped = {m.path for g in self.groups for m in g.members}
            out["stats"]["checked"] = len(self.checked)
            out["new"] = [p for p in self.checked if p not in grouped]
            out["skipped"] = self.skipped
        if self.rotations is not None:
            out["stats"]["rotations"] = self.rotations
        if self.estimate is not None:
            out["stats"]["estimate"] = self.estimate
        return out

    def _to_json(self) -> dict:
        return {
            "threshold": round(self.threshold, 6),
            "calibration": self.calibration,
            "groups": [g.to_json() for g in self.groups],
            "stats": {
                "images": self.images,
                "groups": len(self.groups),
                "duplicates": sum(len(g.members) - 1 for g in self.groups),
                "seconds": round(self.seconds, 3),
                "mode": self.mode,
                "pixel_checks": self.pixel_checks,
                "tiers": {t: sum(g.tier == t for g in self.groups) for t in TIERS},
            },
        }

    def write_csv(self, path: str) -> None:
        fields = [
            "group",
            "tier",
            "path",
            "score",
            "confidence",
            "similarity",
            "match",
            "twin_of",
            "verified",
            "via",
            "width",
            "height",
            "bytes",
            "transform",
        ]
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for number, group in enumerate(self.groups, 1):
                for m in group.members:
                    row = m.to_json()
                    writer.writerow(
                        {"group": number, "tier": group.tier, **{k: row[k] for k in fields[2:]}}
                    )


def leader_groups(
    n: int,
    rows: np.ndarray,
    cols: np.ndarray,
    sims: np.ndarray,
    threshold: float,
    priority: np.ndarray,
    taken: np.ndarray | None = None,
) -> list[tuple[int, list[tuple[int, float]]]]:
    """Groups as (representative, [(member, similarity)]) under the leader rule (module doc)."""
    keep = sims >= threshold
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    both_r = np.concatenate([rows, cols])
    both_c = np.concatenate([cols, rows])
    both_s = np.concatenate([sims, sims])
    order = np.argsort(both_r, kind="stable")
    both_r, both_c, both_s = both_r[order], both_c[order], both_s[order]
    starts = np.searchsorted(both_r, np.arange(n + 1))
    degree = np.diff(starts)
    taken = np.zeros(n, bool) if taken is None else taken.copy()
    groups = []
    for leader in np.lexsort((np.arange(n), -priority, -degree)):
        if taken[leader] or degree[leader] == 0:
            continue
        lo, hi = starts[leader], starts[leader + 1]
        members = [
            (int(c), float(s))
            for c, s in zip(both_c[lo:hi], both_s[lo:hi], strict=True)
            if not taken[c]
        ]
        if not members:
            continue
        members.sort(key=lambda m: (-m[1], m[0]))
        taken[leader] = True
        for m, _ in members:
            taken[m] = True
        groups.append((int(leader), members))
    return groups


@dataclass
class TwinUnits:
    """Each row's twin-set representative (rep[i] == i: a representative)."""

    rep: np.ndarray

    def twins_of(self) -> dict[int, list[int]]:
        """Representative -> its other rows, for sets of two or more."""
        out: dict[int, list[int]] = {}
        for row, rep in enumerate(self.rep.tolist()):
            if row != rep:
                out.setdefault(rep, []).append(row)
        return out


def twin_units(
    hashes: list[str | None], pixel_pairs: list[tuple[int, int]], sizes: list[int]
) -> TwinUnits:
    """Union of byte-identical rows and pixel-identical pairs; the largest file (then the first
    row) represents its set."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links = [(rows[0], r) for rows in exact_groups(hashes) for r in rows[1:]]
    for a, b in links + list(pixel_pairs):
        parent[root(b)] = root(a)
    best: dict[int, int] = {}
    for row in range(len(hashes)):
        r, so_far = root(row), best.get(root(row))
        if so_far is None or (sizes[row], -row) > (sizes[so_far], -so_far):
            best[r] = row
    return TwinUnits(np.array([best[root(i)] for i in range(len(hashes))], np.int64))


def exact_groups(hashes: list[str | None]) -> list[list[int]]:
    """Row indices of files with identical bytes, in groups of two or more."""
    by_hash: dict[str, list[int]] = {}
    for row, digest in enumerate(hashes):
        if digest:
            by_hash.setdefault(digest, []).append(row)
    return [rows for rows in by_hash.values() if len(rows) > 1]
