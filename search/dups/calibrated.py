"""A library's calibration over its life: when `dups` (re)calibrates, how the known copies are
decoded and embedded as `index` would, and where the result is kept (the library's
`calibration` row, with the pair scores, so another --precision needs no new embeddings).
The calibration itself is search/dups/calibration.py.

A stored calibration is used while it was fitted for the library's model, by the current
METHOD, and the library has not grown or shrunk by REFIT_GROWTH since; otherwise the next
`dups --threshold auto` (or `dinosearch calibrate`) fits a new one.
"""

import json

import numpy as np

from indexer.decode import decode_bytes
from indexer.errors import BadQuery, ImageError
from search.dups import calibration as cal
from search.dups.evidence import Seen
from search.dups.whitening import Whitening, fit_whitening
from search.parts import Parts

REFIT_GROWTH = 2.0  # recalibrate when the library has grown or shrunk by this factor


def stored_calibration(parts: Parts) -> tuple[cal.Calibration, dict, Whitening | None] | None:
    """The library's calibration if still valid for its model and size, else None."""
    store = parts.store()
    row = store.calibration()
    model = store.model()
    if not row or not model or row["model"] != model.id:
        return None
    count = store.counts().get("ok", 0)
    if not count or not (1 / REFIT_GROWTH <= count / max(row["images"], 1) <= REFIT_GROWTH):
        return None
    params = json.loads(row["params"])
    if params["calibration"].get("method") != cal.METHOD:
        return None  # fitted by an older method: refit
    whitening = Whitening.from_bytes(row["whitening"]) if row["whitening"] else None
    return cal.Calibration(**params["calibration"]), params["scores"], whitening


def calibration_due(parts: Parts, options) -> int | None:
    """Known copies the next run with these DupOptions must make and judge to calibrate, or
    None (nothing to do); about a third of them are embedded (calibration.EMBEDDED_PER_SOURCE)."""
    if options.threshold != "auto" or stored_calibration(parts) is not None:
        return None
    images = parts.store().counts().get("ok", 0)
    return (
        None
        if images < 2
        else min(options.sample or cal.sample_for(images), images) * cal.TRANSFORMS_PER_SOURCE
    )


def codec(embedder, recipe) -> cal.Codec:
    """Copies decoded with the library's recipe (as `index` decodes a file: model input and
    pixel evidence) and embedded by its embedder."""

    def decode(data: bytes) -> cal.Decoded | None:
        try:
            decoded = decode_bytes(data, recipe, None)
        except ImageError:
            return None
        return cal.Decoded(decoded.pixels, decoded.evidence, (decoded.width, decoded.height))

    return cal.Codec(decode=decode, embed=embedder.embed)


def run_calibration(
    parts: Parts, precision: float, sample: int | None, progress=None, seed: int = 0
) -> tuple[cal.Calibration, Whitening | None]:
    """Fit whitening on all library vectors and calibrate the threshold; store both."""
    from search.dups.run import load_library  # run imports this module

    lib = load_library(parts)
    if len(lib.ids) < 2:
        raise BadQuery("calibration needs at least two indexed images")
    sample = sample or cal.sample_for(len(lib.ids))
    whitening = fit_whitening(lib.vectors)
    space = whitening.apply(lib.vectors) if whitening else lib.vectors
    embedder = parts.embedder()
    _, codes = np.unique(np.array([h or "" for h in lib.hashes]), return_inverse=True)
    paths = {int(i): r["path"] for i, r in zip(lib.ids, lib.rows, strict=True)}
    scores: dict = {}
    seen = Seen.of_library(parts.store(), lib, progress)
    calibration = cal.calibrate(
        lib.ids,
        space,
        paths,
        codes,
        codec(embedder, embedder.recipe),
        whitening,
        embedder.id,
        precision,
        sample,
        seed=seed,
        progress=progress,
        keep_scores=scores,
        seen=seen,
    )
    parts.store().save_calibration(
        embedder.id,
        len(lib.ids),
        {"calibration": calibration.to_json(), "scores": scores},
        whitening.to_bytes() if whitening else None,
    )
    return calibration, whitening


def ensure_calibration(
    parts: Parts, precision: float, sample: int | None, progress=None, force=False
) -> tuple[cal.Calibration, Whitening | None]:
    """The stored calibration (re-chosen for another --precision from its kept pair scores), or
    a new one fitted and stored now."""
    stored = None if force else stored_calibration(parts)
    if stored is None:
        return run_calibration(parts, precision, sample, progress)
    calibration, scores, whitening = stored
    if calibration.precision_target != precision:  # re-choose from the kept pair scores
        pos, neg = np.array(scores["pos"]), np.array(scores["neg"])
        weights = [np.array(scores[k]) if k in scores else None for k in ("pos_w", "neg_w")]
        t, p, r = cal.choose_threshold(pos, neg, precision, *weights)
        calibration.threshold, calibration.precision, calibration.recall = t, p, r
        calibration.precision_target = precision
    return calibration, whitening
