"""What the `copy` tier means on this library: the rule that admits a pair, and the false pairs it
is expected to let in.

A pair of distinct images is admitted into a `copy` group in one of two ways:

1. **Pixel evidence** (search/dups/evidence.py): the two grey thumbnails are the same picture up
   to tone, or one is a crop of the other; for low-information images, every measure of
   lowinfo.same_picture agrees. Distinct photos, even the nearest look-alikes, do not pass it
   (bench/results/lookalike.md).
2. **Embeddings alone**, for a pair that pixels cannot confirm (a heavy edit, an overlay): only
   where the library's own pairs say such a score is a copy with the target probability.

The second needs the base rate. Most photos in a real library have no copy, so the pairs near
any score are mostly look-alikes; the calibration's synthetic copies tell how copies score but
not how many there are. So the estimate is taken from this library's own candidate pairs:

- `evidence_rate` r: the share of synthetic copies that pixels confirm (calibration);
- `alone_rate(t)`: the share of synthetic copies that pixels do not confirm and score >= t;
- the library's pairs confirmed by pixels, E, estimate its copies: E / r in all;
- of those, E / r * alone_rate(t) are expected among the library's pairs without evidence at
  score >= t, of which there are N(t). The rest, N(t) - E / r * alone_rate(t), are look-alikes.

The embeddings-alone threshold is the lowest score at which the estimated precision of the pairs
at or above it reaches the target, and never below the calibrated threshold (precision on the
calibration's own pairs); a pair's confidence is that estimated precision at its score. Pairs
that a low-information or colourless image is part of never enter on embeddings alone.
"""

from dataclasses import dataclass, field

import numpy as np

NEVER = float("inf")
# Pair precision of pixel evidence on distinct look-alike photos, the probability a member
# confirmed by its pixels is given: 202 of 203 copy pairs right over the look-alike sets of 20 to
# 1,000 files, the one wrong pair two tiles of one nearly flat yellow band (bench/lookalike.py,
# bench/results/lookalike.md); 5,818 of 5,818 on the near-duplicate set.
EVIDENCE_PRECISION = 0.995


@dataclass
class Estimate:
    target: float  # the precision asked for (--precision)
    calibrated_threshold: float  # lowest score reaching the target on the calibration's pairs
    evidence_rate: float  # share of synthetic copies confirmed by pixels
    alone_scores: np.ndarray  # scores of the synthetic copies pixels do not confirm, sorted
    positives: int  # synthetic copies judged (eligible: colour pictures with information)
    observed_evidence: int = 0  # library pairs confirmed by pixels this run
    observed_alone: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    threshold_alone: float = NEVER  # pairs without evidence at this score or above are copies

    def copies_expected(self) -> float:
        """Copy pairs the library is estimated to hold, from those pixels confirmed."""
        return self.observed_evidence / self.evidence_rate if self.evidence_rate > 0 else 0.0

    def precision_alone(self, score: float) -> float:
        """Estimated precision of the pairs without pixel evidence scoring >= score."""
        found = int(np.count_nonzero(self.observed_alone >= score))
        if not found:
            return 1.0
        share = np.count_nonzero(self.alone_scores >= score) / max(self.positives, 1)
        return float(min(1.0, self.copies_expected() * share / found))

    def fit(self, observed_evidence: int, observed_alone: np.ndarray) -> "Estimate":
        """Set the embeddings-alone threshold from this run's candidate pairs."""
        self.observed_evidence = int(observed_evidence)
        self.observed_alone = np.sort(np.asarray(observed_alone, np.float32))[::-1]
        self.threshold_alone = NEVER
        for score in np.unique(self.observed_alone)[::-1]:  # descending
            if score < self.calibrated_threshold:
                break
            if self.precision_alone(float(score)) < self.target:
                break
            self.threshold_alone = float(score)
        return self

    def admits_alone(self, score: float) -> bool:
        return score >= self.threshold_alone

    def expected_false_pairs(self) -> float:
        """Look-alike pairs expected among those admitted on embeddings alone."""
        t = self.threshold_alone
        if t == NEVER:
            return 0.0
        found = int(np.count_nonzero(self.observed_alone >= t))
        return float(found * (1 - self.precision_alone(t)))

    def to_json(self) -> dict:
        t = self.threshold_alone
        alone = int(np.count_nonzero(self.observed_alone >= t)) if t != NEVER else 0
        return {
            "target": self.target,
            "rule": "pixel evidence, or embeddings alone at a score this library's pairs make "
            "a copy with the target probability",
            "threshold_embeddings_alone": None if t == NEVER else round(t, 6),
            "pairs_with_evidence": self.observed_evidence,
            "pairs_embeddings_alone": alone,
            "candidate_pairs_without_evidence": int(len(self.observed_alone)),
            "copies_expected": round(self.copies_expected(), 1),
            "synthetic_copies_confirmed_by_pixels": round(self.evidence_rate, 4),
            "expected_false_pairs": round(self.expected_false_pairs(), 2),
        }


def from_calibration(calibration, target: float) -> Estimate | None:
    """The estimate's copy side, from a calibration that judged its copies' pixels."""
    if calibration is None or not calibration.evidence:
        return None
    ev = calibration.evidence
    return Estimate(
        target=target,
        calibrated_threshold=calibration.threshold,
        evidence_rate=ev["rate"],
        alone_scores=np.sort(np.array(ev["alone_scores"], np.float32)),
        positives=ev["positives"],
    )
