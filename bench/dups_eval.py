"""Pair-level duplicate evaluation against groundtruth.json (NumPy only; shared by the benches)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_TRUTH = Path(__file__).parent / "work" / "neardup" / "groundtruth.json"


@dataclass
class TruthSet:
    """One benchmark set: files, their group, transform and source original."""

    name: str
    paths: list[str]
    groups: list[str]
    transforms: list[str]
    sources: list[str]

    def subset(self, keep: set[str]) -> TruthSet:
        """Only the files in `keep` (e.g. those a method could decode)."""
        rows = [i for i, p in enumerate(self.paths) if p in keep]
        pick = lambda xs: [xs[i] for i in rows]  # noqa: E731
        return TruthSet(
            self.name,
            pick(self.paths),
            pick(self.groups),
            pick(self.transforms),
            pick(self.sources),
        )


@dataclass
class PRF:
    """Precision, recall and F1 at one threshold."""

    threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    def row(self) -> dict:
        """Rounded for reports."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def load_sets(path: Path = DEFAULT_TRUTH) -> list[TruthSet]:
    """Read every set of a groundtruth.json."""
    out = []
    for s in json.loads(Path(path).read_text())["sets"]:
        files = [(g["id"], f) for g in s["groups"] for f in g["files"]]
        out.append(
            TruthSet(
                s["name"],
                [f["path"] for _, f in files],
                [g for g, _ in files],
                [f["transform"] for _, f in files],
                [f["source"] for _, f in files],
            )
        )
    return out


def upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays of all pairs i < j."""
    return np.triu_indices(n, k=1)


def pair_labels(ts: TruthSet) -> np.ndarray:
    """True for every pair i < j inside one ground-truth group."""
    g = np.array(ts.groups)
    i, j = upper_pairs(len(g))
    return g[i] == g[j]


def pair_scores(ts: TruthSet, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair i < j of ts.paths: its score in `matrix` (rows and columns in ts.paths order)
    and its label."""
    i, j = upper_pairs(len(ts.paths))
    return matrix[i, j], pair_labels(ts)


def prf(pred: np.ndarray, labels: np.ndarray, threshold: float) -> PRF:
    """Precision/recall/F1 of boolean pair predictions."""
    tp = int(np.sum(pred & labels))
    fp = int(np.sum(pred & ~labels))
    fn = int(np.sum(~pred & labels))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return PRF(float(threshold), p, r, f1, tp, fp, fn)


def at_threshold(scores: np.ndarray, labels: np.ndarray, t: float) -> PRF:
    """Pairs with score >= t are predicted duplicates."""
    return prf(scores >= t, labels, t)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> PRF:
    """Hindsight: the score cut with the highest pair F1."""
    order = np.argsort(-scores, kind="stable")
    s, lab = scores[order], labels[order]
    tp = np.cumsum(lab)
    k = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a cut can only fall between distinct scores
    f1 = np.where(last_of_tie, 2 * tp / (k + lab.sum()), -1)
    best = int(np.argmax(f1))
    return at_threshold(scores, labels, float(s[best]))


def transform_recall(ts: TruthSet, matrix: np.ndarray, t: float) -> dict[str, float]:
    """Share of (source original, copy) pairs scoring >= t, per transform."""
    index = {p: i for i, p in enumerate(ts.paths)}
    original_of = {
        s: index[p]
        for p, s, tr in zip(ts.paths, ts.sources, ts.transforms, strict=True)
        if tr == "original"
    }
    hits: dict[str, list[bool]] = {}
    for row, (src, tr) in enumerate(zip(ts.sources, ts.transforms, strict=True)):
        if tr != "original" and src in original_of:
            hits.setdefault(tr, []).append(bool(matrix[original_of[src], row] >= t))
    return {tr: round(float(np.mean(v)), 4) for tr, v in sorted(hits.items())}


if __name__ == "__main__":  # a module the duplicate benches import: `--help` says so
    print(__doc__.strip())
