"""The calibration judges every known copy by its pixels but embeds only some (METHOD
pixel-evidence/4): the weighted pairs must say what all copies would have said."""

import json
import shutil

import numpy as np
import pytest

from search.dups import calibration as cal
from tests.helpers import copy_photos, invoke


def test_a_weighted_pair_counts_as_that_many_pairs():
    """Weight w on a pair is the same as the pair repeated w times: the threshold, the table
    and the logistic fit agree with the repeated, unweighted pairs."""
    rng = np.random.default_rng(3)
    pos = np.round(rng.uniform(0.5, 1.0, 40), 3)
    neg = np.round(rng.uniform(0.2, 0.8, 90), 3)
    pos_w = rng.integers(1, 5, len(pos)).astype(float)
    neg_w = rng.integers(1, 5, len(neg)).astype(float)
    repeated = np.repeat(pos, pos_w.astype(int)), np.repeat(neg, neg_w.astype(int))
    for target in (0.9, 0.99):
        assert cal.choose_threshold(pos, neg, target, pos_w, neg_w) == pytest.approx(
            cal.choose_threshold(*repeated, target)
        )
    assert cal.precision_recall_table(pos, neg, pos_w=pos_w, neg_w=neg_w) == (
        cal.precision_recall_table(*repeated)
    )
    fit, plain = cal.fit_logistic(pos, neg, pos_w=pos_w, neg_w=neg_w), cal.fit_logistic(*repeated)
    assert fit["a"] == pytest.approx(plain["a"], rel=1e-3)
    assert fit["b"] == pytest.approx(plain["b"], rel=1e-3)
    assert cal.weighted_median(neg, neg_w) == pytest.approx(float(np.median(repeated[1])), abs=0.02)


def test_every_copy_pixels_miss_is_embedded_and_the_rest_stand_for_each_other():
    rng = np.random.default_rng(0)
    for verdicts in (
        [True] * 8,
        [True, False, None, True, False, True, True, None],
        [None] * 8,  # a low-information source: no copy is an embeddings-alone case
        [False] * 8,
        [False, True],
    ):
        pick, weights = cal._to_embed(verdicts, rng, cal.EMBEDDED_PER_SOURCE)
        missed = [i for i, v in enumerate(verdicts) if v is False]
        assert set(missed) <= set(pick)  # their scores are the estimate's alone_scores
        assert len(pick) - len(missed) == min(cal.EMBEDDED_PER_SOURCE, len(verdicts) - len(missed))
        assert len(set(pick)) == len(pick) and len(pick) == len(weights)
        assert weights.sum() == pytest.approx(len(verdicts))  # every copy counted once in all


def test_calibrate_embeds_a_fraction_of_the_copies_it_judges(tmp_path, library):
    """Through the CLI with the tests' model: every copy is judged (positives), fewer are
    embedded, and another --precision re-chooses the threshold from the kept weighted pairs."""
    folder = tmp_path / "photos"
    copy_photos(folder, 8, copy=shutil.copy)
    invoke("index", folder, "--index", library, "--workers", "0")
    result = json.loads(invoke("calibrate", "--index", library, "--sample", "4", "--json").stdout)
    assert result["method"] == cal.METHOD
    assert result["positives"] == 4 * cal.TRANSFORMS_PER_SOURCE
    assert 4 * cal.EMBEDDED_PER_SOURCE <= result["embedded"] < result["positives"]
    missed = len(result["evidence"]["alone_scores"])
    assert result["embedded"] == 4 * cal.EMBEDDED_PER_SOURCE + missed
    strict = json.loads(invoke("dups", "--index", library, "--json").stdout)
    loose = json.loads(invoke("dups", "--index", library, "--json", "--precision", "0.5").stdout)
    assert loose["threshold"] <= strict["threshold"]
    assert loose["calibration"]["embedded"] == result["embedded"]  # nothing embedded again
