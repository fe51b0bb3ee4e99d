"""Pixel evidence in a duplicate run: identical decoded pixels, low-information images that must
look alike, colourless pictures that must match by pixels, and copies below the threshold that
pixels confirm (search/dups/lowinfo.py, search/dups/verify.py)."""

import numpy as np
from PIL import Image, ImageOps

from indexer.decode import pixel_digest
from search.dups import lowinfo, verify
from search.dups.filecache import per_file_version
from search.dups.groups import Library
from search.dups.pairs import neighbour_pairs

LOWINFO_MAX_IMAGES = 20_000  # images in candidate pairs checked for low information (~10 ms each)
VERIFY_MIN_COSINE = 0.85  # raw cosine of a candidate below the threshold for pixel confirmation


def pixel_pairs(lib: Library, rows, cols, close) -> list[tuple[int, int]]:
    """Close same-size pairs of different content whose decoded pixels are identical (a full
    decode of each candidate, once; byte twins are represented by their first copy)."""
    hashes, first = lib.hashes, {}
    for row, digest in enumerate(hashes):
        first.setdefault(digest or row, row)
    return [
        (int(a), int(b))
        for a, b in zip(rows[close], cols[close], strict=True)
        if hashes[a] != hashes[b]
        and first[hashes[a] or a] == a
        and first[hashes[b] or b] == b
        and same_pixels(lib.rows[a], lib.rows[b])
    ]


def with_pixel_evidence(lib: Library, rows, cols, sims, is_twin):
    """Pairs between representatives, without those where a low-information image (flat colour,
    gradient, pattern, tiny) meets one it does not look like at the pixel level: embeddings of
    such images sit close together whatever they show (search/dups/lowinfo.py). Above
    LOWINFO_MAX_IMAGES images in pairs the check is skipped (a thumbnail decode each)."""
    keep = ~(is_twin[rows] | is_twin[cols])
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    involved = np.unique(np.concatenate([rows, cols]))
    if len(involved) > LOWINFO_MAX_IMAGES:
        return rows, cols, sims
    low = np.zeros(len(lib.ids), bool)
    low[involved] = lowinfo.low_information_flags([lib.rows[i]["path"] for i in involved])
    ok = ~(low[rows] | low[cols])
    for k in np.flatnonzero(~ok):
        ok[k] = lowinfo.look_alike(lib.rows[rows[k]]["path"], lib.rows[cols[k]]["path"])
    return rows[ok], cols[ok], sims[ok]


def grey_pairs_with_evidence(lib: Library, rows, cols, sims, is_twin):
    """Pairs that involve a picture without colour, kept only with pixel evidence (a tone or crop
    match): whitening sets grey pictures apart from colour ones and close to each other, so a
    grey copy of one photo scores like a copy of another (measured: bench/results/)."""
    paths = [r["path"] for r in lib.rows]
    reps = np.flatnonzero(~is_twin)  # pairs are between representatives only
    verify.warm([paths[i] for i in reps])
    grey = np.zeros(len(paths), bool)
    grey[reps] = [verify.is_greyscale(paths[i]) for i in reps]
    ok = ~(grey[rows] | grey[cols])
    for k in np.flatnonzero(~ok):
        ok[k] = verify.confirm(paths[rows[k]], paths[cols[k]]) is not None
    return rows[ok], cols[ok], sims[ok]


def confirmed_pairs(lib: Library, space, linked: set, is_twin, crop_candidates) -> dict:
    """Pairs below the threshold that pixels confirm as copies (search/dups/verify.py), when not
    linked already: a grey or re-toned copy among the pairs whose small grey layouts correlate
    (whitening scatters grey copies; their pixels do not change), a crop among the pairs just
    below the threshold in the whitened space. {(i, j): (similarity, "tone" | "crop")}."""
    reps = np.flatnonzero(~is_twin)
    paths = [r["path"] for r in lib.rows]
    layout, found = verify.descriptors([paths[i] for i in reps])
    a, b, _ = neighbour_pairs(layout, verify.DESCRIPTOR_MIN)
    a, b = reps[found[a]], reps[found[b]]
    todo = {(min(i, j), max(i, j)): False for i, j in zip(a.tolist(), b.tolist(), strict=True)}
    todo.update({pair: True for pair in crop_candidates})  # True: look for a crop too
    out = {}
    for (i, j), crops in todo.items():
        if (i, j) in linked:
            continue
        how = verify.confirm(paths[i], paths[j], crops)
        if how and with_evidence(paths[i], paths[j]):
            out[(i, j)] = (float(space[i] @ space[j]), how)
    return out


def confirmed(a: str, b: str, cosine: float) -> str | None:
    """How pixels confirm a close pair below the threshold as copies ("tone", "crop"), or None."""
    if cosine < VERIFY_MIN_COSINE:
        return None
    how = verify.confirm(a, b)
    return how if how and with_evidence(a, b) else None


def with_evidence(a: str, b: str, grey_too: bool = False) -> bool:
    """A near match is believed unless a low-information image lacks pixel-level evidence (or,
    with grey_too, a colourless picture: see grey_pairs_with_evidence)."""
    if lowinfo.needs_pixel_evidence(a, b) and not lowinfo.look_alike(a, b):
        return False
    if grey_too and (verify.is_greyscale(a) or verify.is_greyscale(b)):
        return verify.confirm(a, b) is not None
    return True


def same_pixels(a: dict, b: dict) -> bool:
    """Identical decoded pixels (checked only for same-size candidates: a full decode each)."""
    if (a["width"], a["height"]) != (b["width"], b["height"]):
        return False
    digest = _digest(a["path"])
    return digest is not None and digest == _digest(b["path"])


_digest = per_file_version(None)(pixel_digest)  # one short string a file: all are kept


def dims(path: str) -> dict:
    """The upright size of an image file, as a library row has it."""
    with Image.open(path) as img:
        w, h = ImageOps.exif_transpose(img).size if img.getexif().get(274, 1) != 1 else img.size
    return {"width": w, "height": h}
